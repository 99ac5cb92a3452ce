r"""torch twin of :mod:`jaxreg.solvers`: ridge, lasso, elastic net and their paths.

torch has no such solvers, so these follow jaxreg's algorithms step for step in torch
primitives: ridge by ``torch.linalg.cholesky`` / ``torch.cholesky_solve`` (primal when
``n >= p``, dual otherwise), the elastic net by FISTA with adaptive restart on all
``α`` at once, stopping on scikit-learn's duality gap (``tol·‖y‖²``). The objectives are
scikit-learn's, with an unpenalized intercept:

.. math::
    \|y - Xw\|_2^2 + \alpha\|w\|_2^2, \qquad
    \frac{1}{2n}\|y - Xw\|_2^2 + \alpha\rho\|w\|_1 + \tfrac12\alpha(1-\rho)\|w\|_2^2.

With ``return_info=True`` the iterative solvers also return a :class:`SolverInfo`
(iterations, scikit-learn's ``dual_gap_``, whether the gap test held), as jaxreg.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

__all__ = ["ridge", "lasso", "elastic_net", "regularization_path", "SolverInfo"]

CHECK_EVERY = 10
POWER_ITERATIONS = 30
LIPSCHITZ_MARGIN = 1.05


class SolverInfo(NamedTuple):
    """How an iterative solve ended; mirrors :class:`jaxreg.solvers.SolverInfo`.

    Attributes:
      n_iter: FISTA iterations run (int32), at most ``max_iter``.
      dual_gap: scikit-learn's ``dual_gap_`` (the gap of the ``n``-scaled objective over
        ``n``) at the returned coefficients; NaN on NaN input.
      converged: ``dual_gap <= tol·‖y‖²/n``; False when the gap is NaN or infinite.
    """

    n_iter: torch.Tensor
    dual_gap: torch.Tensor
    converged: torch.Tensor


def _check_data(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("X", X), ("y", y)):
        if not torch.is_floating_point(t):
            raise TypeError(f"`{name}` must be a real floating tensor, got dtype {t.dtype}.")
    if X.ndim != 2 or y.ndim != 1:
        raise ValueError(f"`X` must be [n, p] and `y` [n], got {tuple(X.shape)}, {tuple(y.shape)}.")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"`X` and `y` must have the same number of rows, got X {tuple(X.shape)} and "
            f"y {tuple(y.shape)}."
        )
    dtype = torch.promote_types(X.dtype, y.dtype)
    return X.to(dtype), y.to(dtype)


def _check_nonnegative(value: Any, name: str) -> None:
    if bool(torch.any(torch.as_tensor(value) < 0)):
        raise ValueError(f"`{name}` must be non-negative, got {value}.")


def _center(X: torch.Tensor, y: torch.Tensor, fit_intercept: bool):
    if not fit_intercept:
        return X, y, torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros((), dtype=y.dtype)
    x_mean, y_mean = X.mean(dim=0), y.mean()
    return X - x_mean, y - y_mean, x_mean, y_mean


def ridge(
    X: torch.Tensor, y: torch.Tensor, alpha: float, *, fit_intercept: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge; mirrors :func:`jaxreg.solvers.ridge`.

    Example:
      >>> import torch
      >>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
      >>> coef, intercept = ridge(X, X @ torch.tensor([2.0, -1.0]) + 3.0, 0.0)
      >>> print(coef.numpy().round(4), round(intercept.item(), 4))
      [ 2. -1.] 3.0
    """
    X, y = _check_data(X, y)
    _check_nonnegative(alpha, "alpha")
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    n, p = Xc.shape
    if n >= p:
        A = Xc.T @ Xc + alpha * torch.eye(p, dtype=X.dtype)
        coef = torch.cholesky_solve((Xc.T @ yc)[:, None], torch.linalg.cholesky(A))[:, 0]
    else:
        K = Xc @ Xc.T + alpha * torch.eye(n, dtype=X.dtype)
        coef = Xc.T @ torch.cholesky_solve(yc[:, None], torch.linalg.cholesky(K))[:, 0]
    return coef, y_mean - x_mean @ coef


class _Quadratic(NamedTuple):
    X: torch.Tensor | None
    y: torch.Tensor | None
    gram: torch.Tensor | None
    Xty: torch.Tensor
    yty: torch.Tensor


def _quadratic(X: torch.Tensor, y: torch.Tensor, precompute: bool | str) -> _Quadratic:
    n, p = X.shape
    if n >= p if precompute == "auto" else bool(precompute):
        return _Quadratic(None, None, X.T @ X, X.T @ y, y @ y)
    return _Quadratic(X, y, None, X.T @ y, y @ y)


def _gram_times(q: _Quadratic, W: torch.Tensor) -> torch.Tensor:
    if q.gram is not None:
        return q.gram @ W
    assert q.X is not None
    return q.X.T @ (q.X @ W)


def _top_eigenvalue(q: _Quadratic, p: int, dtype: torch.dtype) -> torch.Tensor:
    v = 1 + torch.arange(p, dtype=dtype) / p
    v = v / torch.sqrt(v @ v)
    for _ in range(POWER_ITERATIONS):
        w = _gram_times(q, v[:, None])[:, 0]
        norm = torch.sqrt(w @ w)
        v = v if norm == 0 else w / norm  # a NaN norm (NaN data) divides
    return LIPSCHITZ_MARGIN * (v @ _gram_times(q, v[:, None])[:, 0])


def _residual_terms(q: _Quadratic, W: torch.Tensor):
    Xty_W = q.Xty @ W
    if q.gram is not None:
        GW = q.gram @ W
        r2 = q.yty - 2 * Xty_W + torch.sum(W * GW, dim=0)
        return q.Xty[:, None] - GW, r2, q.yty - Xty_W
    assert q.X is not None and q.y is not None
    R = q.y[:, None] - q.X @ W
    return q.X.T @ R, torch.sum(R * R, dim=0), q.y @ R


def _duality_gap(W, xtr, r2, ry, a, b) -> torch.Tensor:
    """scikit-learn's duality gap (formulations A, B and the first-order condition)."""
    l1 = torch.sum(torch.abs(W), dim=0)
    l2 = torch.sum(W * W, dim=0)
    dual_norm = torch.amax(torch.abs(xtr - b[None, :] * W), dim=0)
    # Guards that let NaN through to the computing branch, as jaxreg.
    inside = dual_norm <= a
    ones = torch.ones_like(a)
    scale = torch.where(inside, ones, a / torch.where(inside, ones, dual_norm))
    sq = r2 + b * l2
    gap_a = 0.5 * sq + a * l1 - (-0.5 * scale * scale * sq + scale * ry)
    xtr2 = torch.sum(xtr * xtr, dim=0)
    gap_b = r2 + 0.5 * b * l2 - ry + xtr2 / (2 * torch.where(b == 0, ones, b))
    return torch.where(a == 0, torch.where(b == 0, xtr2, gap_b), gap_a)


def _soft_threshold(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``z - clip(z, -t, t)``: ``softshrink`` with a per-column threshold."""
    t = t.expand_as(z)
    return z - torch.clamp(z, -t, t)


@torch.no_grad()
def _solve(
    X, y, l1, l2, tol, *, max_iter: int, precompute: bool | str
) -> tuple[torch.Tensor, SolverInfo]:
    """``[p, k]`` solutions and their :class:`SolverInfo`; mirrors jaxreg's ``_solve``."""
    q = _quadratic(X, y, precompute)
    dtype = X.dtype
    n = torch.tensor(float(X.shape[0]), dtype=dtype)
    top = _top_eigenvalue(q, X.shape[1], dtype)
    step = n / (torch.ones((), dtype=dtype) if top <= 0 else top)
    threshold = step * l1
    gap_tol = tol * q.yty

    def gap_of(W):
        xtr, r2, ry = _residual_terms(q, W)
        return _duality_gap(W, xtr, r2, ry, n * l1, n * l2)

    def below_tol(gap):
        return (gap <= gap_tol) & (tol > 0)

    W = torch.zeros(X.shape[1], l1.shape[0], dtype=dtype)
    V, t, n_iter = W, torch.ones_like(l1), 0
    gap = gap_of(W)
    done = below_tol(gap)
    col_iter = torch.zeros(l1.shape, dtype=torch.int32)
    while n_iter < max_iter and not bool(torch.all(done)):
        for _ in range(CHECK_EVERY):
            z = V + (step / n) * (q.Xty[:, None] - _gram_times(q, V))
            W_new = _soft_threshold(z, threshold[None, :]) / (1 + step * l2)[None, :]
            restart = torch.sum((V - W_new) * (W_new - W), dim=0) > 0
            t_new = torch.where(restart, torch.ones_like(t), (1 + torch.sqrt(1 + 4 * t * t)) / 2)
            beta = torch.where(restart, torch.zeros_like(t_new), (t - 1) / t_new)
            V_new = W_new + beta[None, :] * (W_new - W)
            frozen = done | (n_iter >= max_iter)
            keep = frozen[None, :]
            W, V, t = (
                torch.where(keep, W, W_new),
                torch.where(keep, V, V_new),
                torch.where(frozen, t, t_new),
            )
            n_iter += 1
        gap = torch.where(done, gap, gap_of(W))
        col_iter = torch.where(done, col_iter, min(n_iter, max_iter))
        done = done | below_tol(gap) | ~torch.isfinite(gap)
    return W, SolverInfo(col_iter, gap / n, gap <= gap_tol)


def _penalized(X, y, alphas, l1_ratio, *, fit_intercept, tol, max_iter, precompute, return_info):
    X, y = _check_data(X, y)
    if not 0.0 <= float(l1_ratio) <= 1.0:
        raise ValueError(f"`l1_ratio` must lie in [0, 1], got {l1_ratio}.")
    _check_nonnegative(tol, "tol")
    Xc, yc, x_mean, y_mean = _center(X, y, fit_intercept)
    alphas = torch.as_tensor(alphas, dtype=X.dtype)
    rho = torch.as_tensor(l1_ratio, dtype=X.dtype)
    tol = torch.as_tensor(tol, dtype=X.dtype)
    W, info = _solve(
        Xc, yc, alphas * rho, alphas * (1 - rho), tol, max_iter=max_iter, precompute=precompute
    )
    return (W, y_mean - x_mean @ W, info) if return_info else (W, y_mean - x_mean @ W)


def elastic_net(
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    *,
    l1_ratio: float = 0.5,
    fit_intercept: bool = True,
    tol: float = 1e-8,
    max_iter: int = 10_000,
    precompute: bool | str = "auto",
    return_info: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Elastic net by FISTA to a duality gap; mirrors :func:`jaxreg.solvers.elastic_net`.

    With ``return_info=True`` returns ``(coef, intercept, info)``; check ``info.converged``
    (``info.dual_gap <= tol·‖y‖²/n``, the stopping test): the coefficients alone do not say.

    Example:
      >>> import torch
      >>> X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [0.5, -1.0]])
      >>> y = X @ torch.tensor([2.0, -1.0]) + torch.tensor([0.13, -0.07, 0.02, 0.04, 0.1])
      >>> coef, b = elastic_net(X.double(), y.double(), 0.2, l1_ratio=0.5)
      >>> print(coef.numpy().round(3), round(b.item(), 3))
      [ 1.389 -0.668] 0.461
    """
    _check_nonnegative(alpha, "alpha")
    W, b, *info = _penalized(
        X,
        y,
        torch.as_tensor(alpha).reshape(1),
        l1_ratio,
        fit_intercept=fit_intercept,
        tol=tol,
        max_iter=max_iter,
        precompute=precompute,
        return_info=return_info,
    )
    info = [SolverInfo(*(v[0] for v in i)) for i in info]
    return (W[:, 0], b[0], *info)


def lasso(
    X: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    *,
    fit_intercept: bool = True,
    tol: float = 1e-8,
    max_iter: int = 10_000,
    precompute: bool | str = "auto",
    return_info: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Lasso: :func:`elastic_net` with ``l1_ratio=1``; mirrors :func:`jaxreg.solvers.lasso`."""
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
    X: torch.Tensor,
    y: torch.Tensor,
    alphas: torch.Tensor,
    *,
    l1_ratio: float = 1.0,
    fit_intercept: bool = True,
    tol: float = 1e-8,
    max_iter: int = 10_000,
    precompute: bool | str = "auto",
    return_info: bool = False,
) -> tuple[torch.Tensor, ...]:
    """All ``α`` at once; mirrors :func:`jaxreg.solvers.regularization_path`.

    Returns:
      ``(coefs, intercepts)``: ``[n_alphas, n_features]`` and ``[n_alphas]``; then a
      :class:`SolverInfo` of ``[n_alphas]`` tensors with ``return_info=True``.
    """
    alphas = torch.as_tensor(alphas)
    if alphas.ndim != 1:
        raise ValueError(f"`alphas` must be a vector [n_alphas], got shape {tuple(alphas.shape)}.")
    _check_nonnegative(alphas, "alphas")
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
