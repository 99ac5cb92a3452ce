r"""Ridge, lasso, elastic net and their regularization paths: the solution space, in JAX.

The objectives are scikit-learn's, and the intercept is never penalized (the data are
centered, the intercept recovered as ``ȳ - x̄·w``):

.. math::
    \text{ridge:}\quad \|y - Xw\|_2^2 + \alpha\|w\|_2^2

    \text{elastic net:}\quad \frac{1}{2n}\|y - Xw\|_2^2 + \alpha\rho\|w\|_1
    + \tfrac12\alpha(1-\rho)\|w\|_2^2 \qquad (\text{lasso: } \rho = 1)

:func:`ridge` is a closed form (a Cholesky solve of the primal when ``n >= p``, of the
dual when ``n < p``). :func:`lasso`, :func:`elastic_net` and :func:`regularization_path`
stop on scikit-learn's duality gap: the gap of the ``n``-scaled objective must fall to
``tol·‖y‖²`` (the same ``tol`` as ``sklearn.linear_model.Lasso``). Coefficients that
are zero at the solution are exactly zero. The algorithm depends on the shape (all of
them jit-compiled JAX programs, chosen at trace time):

- ``n >= p`` and ``p <= 512`` (tall): FISTA with adaptive restart (O'Donoghue & Candès,
  2015) on the Gram matrix ``XᵀX``, formed once, every ``α`` at once (the coefficients
  are a matrix ``[n_features, n_alphas]``, so an iteration is one matrix product).
- ``n >= p`` and ``p > 512`` (square): coordinate descent on the Gram matrix, the
  strengths in decreasing order, each warm-started from the previous solutions.
- ``n < p`` (wide): gap-safe screening (a screened feature is provably zero) and working
  sets grown from the features closest to violating the optimality conditions (celer's
  rule); coordinate descent with Anderson extrapolation and Newton steps on the working
  set's Gram block only, so the ``p×p`` Gram matrix is never formed; warm starts along
  the path. A support too large for the working set falls back to FISTA on ``X``.

An iterative solve can end without converging (``max_iter`` too small, NaN in the data):
with ``return_info=True`` the solvers also return a :class:`SolverInfo` (scikit-learn's
``n_iter_`` and ``dual_gap_``, and whether the gap test held). NaN in ``X``, ``y`` or
``α`` gives NaN coefficients, a NaN gap and ``converged=False``, and stops the solve
(a NaN ``α`` spoils only its own column of a path).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg import _lasso, _lasso_path, _numerics

__all__ = ["ridge", "lasso", "elastic_net", "regularization_path", "SolverInfo"]

# --------------------------------------------------------------------------- inputs


def _check_data(X: ArrayLike, y: ArrayLike) -> tuple[jax.Array, jax.Array, Any]:
    """``X`` ``[n, p]`` and ``y`` ``[n]`` in their compute dtype, and the dtype to return."""
    X = _numerics.as_float_array(X, "X")
    y = _numerics.as_float_array(y, "y")
    if X.ndim != 2:
        raise ValueError(f"`X` must be a matrix [n_samples, n_features], got shape {X.shape}.")
    if y.ndim != 1:
        raise ValueError(
            f"`y` must be a vector [n_samples], got shape {y.shape}; fit one target at a time."
        )
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"`X` and `y` must have the same number of rows (samples), got X {X.shape} and "
            f"y {y.shape}."
        )
    dtype = jnp.promote_types(X.dtype, y.dtype)
    work = _numerics.compute_dtype(dtype)  # bf16/fp16 are solved in float32
    return X.astype(work), y.astype(work), dtype


def _check_alphas(alphas: Any, name: str) -> None:
    if _numerics.is_concrete(alphas) and np.any(np.asarray(alphas) < 0):
        raise ValueError(f"`{name}` must be non-negative, got {np.asarray(alphas)}.")


def _center(X: jax.Array, y: jax.Array, fit_intercept: bool):
    """Centered data and the means (zeros without an intercept)."""
    if not fit_intercept:
        return X, y, jnp.zeros(X.shape[1], X.dtype), jnp.zeros((), y.dtype)
    x_mean, y_mean = jnp.mean(X, axis=0), jnp.mean(y)
    return X - x_mean[None, :], y - y_mean, x_mean, y_mean


def _intercept(coef: jax.Array, x_mean: jax.Array, y_mean: jax.Array) -> jax.Array:
    """``ȳ - x̄·w`` for each column of ``coef`` (``[p]`` or ``[p, k]``)."""
    return y_mean - jnp.tensordot(x_mean, coef, axes=1)


# --------------------------------------------------------------------------- ridge


def ridge(
    X: ArrayLike, y: ArrayLike, alpha: ArrayLike, *, fit_intercept: bool = True
) -> tuple[jax.Array, jax.Array]:
    r"""Ridge regression in closed form (``sklearn.linear_model.Ridge``).

    .. math::
        \hat w = \arg\min_w \|y - Xw\|_2^2 + \alpha\|w\|_2^2
        = (X^\top X + \alpha I)^{-1} X^\top y = X^\top (X X^\top + \alpha I)^{-1} y

    The primal system is solved when ``n >= p``, the dual one otherwise (both by
    Cholesky); ``alpha = 0`` needs ``XᵀX`` (or ``XXᵀ``) to be invertible.

    Args:
      X: design matrix ``[n_samples, n_features]``.
      y: targets ``[n_samples]``.
      alpha: ``α >= 0`` (a scalar).
      fit_intercept: center the data and fit an unpenalized intercept.

    Returns:
      ``(coef, intercept)``: ``[n_features]`` and a scalar.

    Example:
      >>> X = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
      >>> coef, intercept = ridge(X, X @ jnp.array([2.0, -1.0]) + 3.0, 0.0)
      >>> print(jnp.round(coef, 4), jnp.round(intercept, 4))
      [ 2. -1.] 3.0
    """
    X, y, dtype = _check_data(X, y)
    _check_alphas(alpha, "alpha")
    coef, intercept = _ridge(X, y, jnp.asarray(alpha, X.dtype), fit_intercept=fit_intercept)
    return coef.astype(dtype), intercept.astype(dtype)


@functools.partial(jax.jit, static_argnames=("fit_intercept",))
def _ridge(X: jax.Array, y: jax.Array, alpha: jax.Array, *, fit_intercept: bool):
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    n, p = Xc.shape
    if n >= p:
        A = Xc.T @ Xc + alpha * jnp.eye(p, dtype=X.dtype)
        coef = jax.scipy.linalg.solve(A, Xc.T @ yc, assume_a="pos")
    else:
        K = Xc @ Xc.T + alpha * jnp.eye(n, dtype=X.dtype)
        coef = Xc.T @ jax.scipy.linalg.solve(K, yc, assume_a="pos")
    return coef, _intercept(coef, x_mean, y_mean)


# --------------------------------------------------------------------------- lasso and elastic net


class SolverInfo(NamedTuple):
    """How an iterative solve ended: scikit-learn's ``n_iter_`` and ``dual_gap_``.

    Scalars for :func:`lasso` and :func:`elastic_net`, ``[n_alphas]`` arrays for
    :func:`regularization_path`.

    Attributes:
      n_iter: the iterations run (int32), at most ``max_iter``: coordinate-descent epochs
        over the working set (as scikit-learn's ``n_iter_``), or FISTA steps on the Gram
        matrix (see ``precompute``).
      dual_gap: the duality gap at the returned coefficients, of the objective as written
        (with its ``1/(2n)``), i.e. scikit-learn's ``dual_gap_``: the gap of the
        ``n``-scaled objective divided by ``n``. An upper bound on the excess objective.
        NaN when ``X``, ``y`` or ``α`` holds a NaN.
      converged: ``dual_gap <= tol·‖y‖²/n`` (``y`` centered when ``fit_intercept``), the
        test that stops the solver; False when the gap is NaN or infinite.
    """

    n_iter: jax.Array
    dual_gap: jax.Array
    converged: jax.Array


#: With the Gram matrix and at most this many features, FISTA on every strength at once
#: (one matrix product per iteration for the whole path) beats a warm-started sequence.
FISTA_MAX_FEATURES = 512


def _solve(
    X: jax.Array,
    y: jax.Array,
    l1: jax.Array,
    l2: jax.Array,
    tol: jax.Array,
    *,
    max_iter: int,
    precompute: bool | str,
) -> tuple[jax.Array, SolverInfo]:
    """Minimizes ``1/(2n)‖y - Xw‖² + l1_k‖w‖₁ + ½l2_k‖w‖²`` for every column ``k``:
    ``[p, k]`` and the :class:`SolverInfo` of each column."""
    n, p = X.shape
    use_gram = n >= p if precompute == "auto" else bool(precompute)
    if use_gram and p <= FISTA_MAX_FEATURES:
        q = _lasso.quadratic(X, y, use_gram=True)
        W, n_iter, gap = _lasso.fista(q, n, l1, l2, tol, max_iter=max_iter)
    elif use_gram:
        W, n_iter, gap = _lasso_path.gram_path(X, y, l1, l2, tol, max_iter=max_iter)
    else:
        W, n_iter, gap = _lasso_path.working_set_path(X, y, l1, l2, tol, max_iter=max_iter)
    # scikit-learn reports the gap of the objective as written: the n-scaled gap over n.
    converged = gap <= tol * jnp.dot(y, y)
    return W, SolverInfo(n_iter, gap / n, converged)


def _penalized(
    X: ArrayLike,
    y: ArrayLike,
    alphas: Any,
    l1_ratio: Any,
    *,
    fit_intercept: bool,
    tol: Any,
    max_iter: int,
    precompute: bool | str,
    return_info: bool,
) -> tuple[jax.Array, ...]:
    """Elastic-net solutions: ``([p], scalar)`` for a scalar ``alphas``, else ``([p, k], [k])``,
    then the :class:`SolverInfo` when ``return_info``."""
    X, y, dtype = _check_data(X, y)
    _numerics.check_in_unit_interval(l1_ratio, "l1_ratio")
    _numerics.check_nonnegative(tol, "tol")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive int, got {max_iter!r}.")
    if precompute not in ("auto", True, False):
        raise ValueError(f"`precompute` must be 'auto', True or False, got {precompute!r}.")
    args = [jnp.asarray(a, X.dtype) for a in (alphas, l1_ratio, tol)]
    static = dict(fit_intercept=fit_intercept, max_iter=max_iter, precompute=precompute)
    W, b, info = _fit(X, y, *args, **static)
    W, b = W.astype(dtype), b.astype(dtype)
    if not return_info:
        return W, b
    return W, b, info._replace(dual_gap=info.dual_gap.astype(dtype))


_STATIC = ("fit_intercept", "max_iter", "precompute")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _fit(X, y, alphas, l1_ratio, tol, *, fit_intercept, max_iter, precompute):
    """Centering, the solve and the intercepts, compiled once per configuration. A scalar
    ``alphas`` gives ``([p], scalar, SolverInfo of scalars)``, a vector ``([p, k], [k],
    SolverInfo of [k])``."""
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    a = jnp.reshape(alphas, (-1,))
    l1, l2 = a * l1_ratio, a * (1 - l1_ratio)
    W, info = _solve(Xc, yc, l1, l2, tol, max_iter=max_iter, precompute=precompute)
    b = _intercept(W, x_mean, y_mean)
    if alphas.ndim == 0:
        return W[:, 0], b[0], jax.tree.map(lambda v: v[0], info)
    return W, b, info


def elastic_net(
    X: ArrayLike,
    y: ArrayLike,
    alpha: ArrayLike,
    *,
    l1_ratio: ArrayLike = 0.5,
    fit_intercept: bool = True,
    tol: ArrayLike = 1e-8,
    max_iter: int = 10_000,
    precompute: bool | str = "auto",
    return_info: bool = False,
) -> tuple[jax.Array, ...]:
    r"""Elastic net (``sklearn.linear_model.ElasticNet``), solved to a duality gap.

    .. math::
        \hat w = \arg\min_w \frac{1}{2n}\|y - Xw\|_2^2 + \alpha\rho\|w\|_1
        + \tfrac12\alpha(1-\rho)\|w\|_2^2

    Stops when scikit-learn's duality gap (of the objective times ``n``) is at most
    ``tol·‖y‖²`` (``y`` centered when ``fit_intercept``), or after ``max_iter`` iterations.
    In float32 the gap cannot fall much below ``1e-6·‖y‖²``.

    The coefficients alone do not say whether the solve converged: pass
    ``return_info=True`` and check ``info.converged`` (``info.dual_gap <= tol·‖y‖²/n``, the
    stopping test; False after ``max_iter`` iterations short of it, or on NaN input). NaN in
    ``X``, ``y`` or ``alpha`` gives NaN coefficients and ``converged=False``.

    ``alpha``, ``l1_ratio`` and ``tol`` may be traced (``jax.jit``, ``jax.vmap``): a new
    value does not recompile. ``max_iter``, ``fit_intercept``, ``precompute`` and
    ``return_info`` are static.

    Args:
      X: design matrix ``[n_samples, n_features]``.
      y: targets ``[n_samples]``.
      alpha: ``α >= 0`` (a scalar).
      l1_ratio: ``ρ`` in [0, 1] (1: lasso, 0: ridge with the ``1/(2n)`` scaling).
      fit_intercept: center the data and fit an unpenalized intercept.
      tol: relative duality-gap tolerance (scikit-learn's ``tol``); 0 runs exactly
        ``max_iter`` iterations (a gap at its rounding floor can read 0 early).
      max_iter: largest number of iterations (coordinate-descent epochs, or FISTA steps
        for a tall problem: see the module's description).
      precompute: use the Gram matrix ``XᵀX``: ``"auto"`` (when ``n >= p``), True, False.
      return_info: also return a :class:`SolverInfo` (a Python bool).

    Returns:
      ``(coef, intercept)``: ``[n_features]`` (with exact zeros) and a scalar;
      ``(coef, intercept, info)`` with ``return_info=True``, ``info`` a :class:`SolverInfo`
      of scalars.

    Example:
      >>> X = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [0.5, -1.0]])
      >>> y = X @ jnp.array([2.0, -1.0]) + jnp.array([0.13, -0.07, 0.02, 0.04, 0.1])
      >>> coef, b = elastic_net(X, y, 0.2, l1_ratio=0.5)
      >>> print(jnp.round(coef, 3), jnp.round(b, 3))
      [ 1.389 -0.668] 0.461
      >>> _, _, info = elastic_net(X, y, 0.2, l1_ratio=0.5, max_iter=3, return_info=True)
      >>> print(int(info.n_iter), info.converged)
      3 False
    """
    _check_alphas(alpha, "alpha")
    if jnp.ndim(alpha) != 0:
        raise ValueError(
            f"`alpha` must be a scalar, got shape {jnp.shape(alpha)}; for many strengths use "
            "`regularization_path` (or `jax.vmap`)."
        )
    return _penalized(
        X,
        y,
        alpha,
        l1_ratio,
        fit_intercept=fit_intercept,
        tol=tol,
        max_iter=max_iter,
        precompute=precompute,
        return_info=return_info,
    )


def lasso(
    X: ArrayLike,
    y: ArrayLike,
    alpha: ArrayLike,
    *,
    fit_intercept: bool = True,
    tol: ArrayLike = 1e-8,
    max_iter: int = 10_000,
    precompute: bool | str = "auto",
    return_info: bool = False,
) -> tuple[jax.Array, ...]:
    r"""Lasso (``sklearn.linear_model.Lasso``): :func:`elastic_net` with ``l1_ratio=1``.

    .. math::
        \hat w = \arg\min_w \frac{1}{2n}\|y - Xw\|_2^2 + \alpha\|w\|_1

    Args:
      X: design matrix ``[n_samples, n_features]``.
      y: targets ``[n_samples]``.
      alpha: ``α >= 0`` (a scalar).
      fit_intercept, tol, max_iter, precompute, return_info: as :func:`elastic_net`.

    Returns:
      ``(coef, intercept)``: ``[n_features]`` (exact zeros off the support) and a scalar;
      ``(coef, intercept, info)`` with ``return_info=True``: check ``info.converged``
      (a :class:`SolverInfo`; see :func:`elastic_net`).

    Example:
      >>> X = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [0.5, -1.0]])
      >>> y = X @ jnp.array([2.0, -1.0]) + jnp.array([0.13, -0.07, 0.02, 0.04, 0.1])
      >>> coef, b, info = lasso(X, y, 0.2, return_info=True)
      >>> print(jnp.round(coef, 3), jnp.round(b, 3), info.converged)
      [ 1.466 -0.633] 0.378 True
    """
    return elastic_net(
        X,
        y,
        alpha,
        l1_ratio=1.0,
        fit_intercept=fit_intercept,
        tol=tol,
        max_iter=max_iter,
        precompute=precompute,
        return_info=return_info,
    )


def regularization_path(
    X: ArrayLike,
    y: ArrayLike,
    alphas: ArrayLike,
    *,
    l1_ratio: ArrayLike = 1.0,
    fit_intercept: bool = True,
    tol: ArrayLike = 1e-8,
    max_iter: int = 10_000,
    precompute: bool | str = "auto",
    return_info: bool = False,
) -> tuple[jax.Array, ...]:
    r"""Elastic-net solutions for many ``α`` at once (``lasso_path`` / ``enet_path``).

    All ``α`` are solved together: the iterate is a matrix ``[n_features, n_alphas]``,
    so every iteration is one matrix product (with the Gram matrix when ``n >= p``); each
    column stops moving once its own duality gap is below ``tol·‖y‖²``. With
    ``return_info=True``, check ``info.converged`` (one flag per ``α``; see
    :func:`elastic_net`).

    Args:
      X: design matrix ``[n_samples, n_features]``.
      y: targets ``[n_samples]``.
      alphas: ``[n_alphas]`` non-negative strengths, in any order.
      l1_ratio: ``ρ`` in [0, 1] (1: the lasso path).
      fit_intercept, tol, max_iter, precompute, return_info: as :func:`elastic_net`.

    Returns:
      ``(coefs, intercepts)``: ``[n_alphas, n_features]`` and ``[n_alphas]``;
      ``(coefs, intercepts, info)`` with ``return_info=True``, ``info`` a
      :class:`SolverInfo` of ``[n_alphas]`` arrays.

    Example:
      >>> X = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [0.5, -1.0]])
      >>> y = X @ jnp.array([2.0, -1.0]) + jnp.array([0.13, -0.07, 0.02, 0.04, 0.1])
      >>> coefs, _ = regularization_path(X, y, jnp.array([1.0, 0.3, 0.01]))
      >>> print(jnp.round(coefs, 3))
      [[ 0.     0.   ]
       [ 1.168 -0.411]
       [ 2.031 -1.053]]
    """
    alphas = _numerics.as_float_array(alphas, "alphas")
    if alphas.ndim != 1:
        raise ValueError(f"`alphas` must be a vector [n_alphas], got shape {alphas.shape}.")
    _check_alphas(alphas, "alphas")
    W, b, *info = _penalized(
        X,
        y,
        alphas,
        l1_ratio,
        fit_intercept=fit_intercept,
        tol=tol,
        max_iter=max_iter,
        precompute=precompute,
        return_info=return_info,
    )
    return (W.T, b, *info)
