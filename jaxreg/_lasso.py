r"""Numerical kernels of :mod:`jaxreg.solvers`: the elastic net, n-scaled,

.. math::
    \min_w \tfrac12\|y - Xw\|_2^2 + a\|w\|_1 + \tfrac12 b\|w\|_2^2
    \qquad (a = n\alpha\rho,\ b = n\alpha(1-\rho)),

by two algorithms, each for the regime where it wins:

- :func:`fista`: FISTA with adaptive restart on every strength at once (the iterate is a
  matrix ``[p, n_alphas]``, so an iteration is one matrix product), on the Gram matrix
  ``XᵀX``. For ``n >= p`` with few features: forming ``XᵀX`` once costs ``n·p²`` and
  every iteration after it ``p²·n_alphas``, independent of ``n``.
- :func:`working_set_path`: the strengths in decreasing order (a ``lax.scan``), each warm
  started from the previous solution, by coordinate descent on a *working set*: the
  features that are nonzero plus those closest to violating the optimality conditions
  (celer's rule, Massias et al. 2018), never the ones that gap-safe screening proves to
  be zero (Ndiaye et al. 2017). The working set grows until the duality gap of the full
  problem is below the tolerance. Coordinate descent runs on the working set's Gram
  block (Anderson-accelerated, Bertrand & Massias 2021), kept in fixed "slots" and
  updated one block of new features at a time, so the full ``p×p`` Gram matrix is never
  formed; a round costs one product ``rᵀX`` with the full design. For ``p ≫ n``, or ``p``
  too large for ``p²`` work.

This module holds the data term, the duality gap, FISTA and gap-safe screening;
:mod:`jaxreg._lasso_path` the paths, :mod:`jaxreg._coordinate_descent` the inner
solver on a working set and :mod:`jaxreg._newton` its Newton steps.

Both stop on scikit-learn's duality gap (``_cd_fast.pyx``): ``gap <= tol·‖y‖²``.

Compiler-specific choices (tuned on jaxlib 0.10.2, XLA:CPU; each is pinned by a test in
``tests/test_solvers.py``):

1. Every product with ``Xᵀ`` is written ``r @ X`` (a row vector or ``Mᵀ`` on the left),
   never ``X.T @ r``: for the latter XLA:CPU copies the transpose of the whole design
   into a new buffer on every call (33 ms instead of 1.5 ms for a 2000×2000 float64
   ``X``; 8.6 ms instead of 1.6 ms for ``Xᵀy`` at 20000×200). Test:
   ``test_no_transpose_of_the_design_in_the_compiled_solver`` (no ``transpose`` of an
   ``[n, p]`` operand in the optimized HLO).
2. No sort of a length-``p`` array inside the path: XLA:CPU sorts at ~0.2 µs per
   element (1 ms for ``p = 5000``, as much as a full product with ``X``), so the working
   set's new features are chosen by a threshold found by bisection on counts, and index
   lists are compacted with a cumulative sum and a scatter (0.08 ms). Test: the same HLO
   check finds no ``sort`` over ``p`` elements.
3. The working set lives in ``K`` fixed slots (static shapes): a feature keeps its slot,
   and its Gram row, for as long as it stays in the working set, so a new working set
   costs the Gram rows of its *new* features only (``B`` at a time, one ``[B, n]·[n, K]``
   product); freed slots are reused. Coordinate descent loops over the used slots only
   (a ``fori_loop`` with a traced trip count), at ~0.5–1 µs per coordinate of loop
   overhead on XLA:CPU, which is why the Gram block (a ``K``-vector update per
   coordinate) beats updating an ``n``-vector residual.
5. No LAPACK: the Newton systems are solved with :func:`cholesky_inverse`, recursive
   halving into matrix products down to 64×64 leaves, all XLA's own kernels. jaxlib's
   CPU Cholesky calls OpenBLAS, whose threads spin-wait: with one other busy process on
   a two-core machine a 384×384 factorization took 500 ms instead of 1.4 ms. Test:
   the HLO check finds no LAPACK custom call; ``test_cholesky_inverse``.
4. The Gram matrix is ``Xt @ Xt.T`` with ``Xt = optimization_barrier(X.T)``: written
   ``X.T @ X``, XLA:CPU runs a dot with a transposed operand at half the speed of a plain
   one (540 ms against 290 ms including the 20 ms transpose, for a 2000×2000 float64
   ``X``); without the barrier it folds the transpose back into the dot. Test: the same
   HLO check finds the barrier.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg.proximal import soft_threshold

__all__ = [
    "Quadratic",
    "gram",
    "quadratic",
    "duality_gap",
    "below",
    "fista",
    "screened",
]

# --------------------------------------------------------------------------- the data term


class Quadratic(NamedTuple):
    """The data term ``½‖y - Xw‖²``, with ``X`` kept or replaced by its Gram matrix."""

    X: jax.Array | None  # [n, p], or None when ``gram`` is used
    y: jax.Array | None  # [n]
    gram: jax.Array | None  # [p, p] = XᵀX
    Xty: jax.Array  # [p]
    yty: jax.Array  # scalar


def gram(X: jax.Array) -> jax.Array:
    """``XᵀX``, as the product of the materialized transpose with its own transpose
    (choice 4)."""
    Xt = lax.optimization_barrier(X.T)
    return Xt @ Xt.T


def quadratic(X: jax.Array, y: jax.Array, use_gram: bool) -> Quadratic:
    """The data term of centered ``X``, ``y``; with ``use_gram`` the Gram matrix is formed."""
    Xty = y @ X  # (choice 1: not X.T @ y)
    if use_gram:
        return Quadratic(None, None, gram(X), Xty, jnp.dot(y, y))
    return Quadratic(X, y, None, Xty, jnp.dot(y, y))


def _gram_times(q: Quadratic, W: jax.Array) -> jax.Array:
    """``XᵀX·W`` for ``W`` ``[p, k]``."""
    if q.gram is not None:
        return q.gram @ W
    assert q.X is not None
    return ((q.X @ W).T @ q.X).T  # (choice 1)


#: Power iterations for the largest eigenvalue of ``XᵀX``, and the safety factor on it.
POWER_ITERATIONS = 30
LIPSCHITZ_MARGIN = 1.05


def _top_eigenvalue(q: Quadratic, p: int, dtype: Any) -> jax.Array:
    """``λ_max(XᵀX)`` by power iteration, times a small safety margin (never below the
    Rayleigh quotient reached, which bounds it from below)."""
    v = 1 + jnp.arange(p, dtype=dtype) / p  # not orthogonal to a nonnegative eigenvector

    def power(_, v):
        w = _gram_times(q, v[:, None])[:, 0]
        norm = jnp.sqrt(jnp.dot(w, w))
        # Guards on == 0, so a NaN norm (NaN data) takes the dividing branch.
        return jnp.where(norm == 0, v, w / jnp.where(norm == 0, 1, norm))

    v = lax.fori_loop(0, POWER_ITERATIONS, power, v / jnp.sqrt(jnp.dot(v, v)))
    return LIPSCHITZ_MARGIN * jnp.dot(v, _gram_times(q, v[:, None])[:, 0])


def _residual_terms(q: Quadratic, W: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``XᵀR`` ``[p, k]``, ``‖R‖²`` and ``R·y`` ``[k]`` for residuals ``R = y - XW``."""
    Xty_W = q.Xty @ W
    if q.gram is not None:
        GW = q.gram @ W
        # ‖y - Xw‖² = yᵀy - 2·(Xᵀy)ᵀw + wᵀ(XᵀX)w, as scikit-learn's Gram solver.
        r2 = q.yty - 2 * Xty_W + jnp.sum(W * GW, axis=0)
        return q.Xty[:, None] - GW, r2, q.yty - Xty_W
    assert q.X is not None and q.y is not None
    R = q.y[:, None] - q.X @ W
    return (R.T @ q.X).T, jnp.sum(R * R, axis=0), q.y @ R  # (choice 1)


def duality_gap(
    W: jax.Array, xtr: jax.Array, r2: jax.Array, ry: jax.Array, a: jax.Array, b: jax.Array
) -> jax.Array:
    """scikit-learn's duality gap of ``½‖y - Xw‖² + a‖w‖₁ + ½b‖w‖²``, for each column of
    ``W`` ``[p, k]`` (``xtr = XᵀR`` ``[p, k]``, ``r2 = ‖R‖²``, ``ry = R·y``, ``a, b`` ``[k]``).

    ``a > 0``: formulation A (rescaled dual point); ``a = 0 < b``: formulation B (ridge);
    ``a = b = 0``: the first-order condition ``‖XᵀR‖²``.
    """
    l1 = jnp.sum(jnp.abs(W), axis=0)
    l2 = jnp.sum(W * W, axis=0)
    xta = xtr - b[None, :] * W
    dual_norm = jnp.max(jnp.abs(xta), axis=0)
    # Double where: the rescaling divides only where the dual norm exceeds a. Every guard
    # lets NaN through to the computing branch (NaN data or strengths give a NaN gap).
    inside = dual_norm <= a
    scale = jnp.where(inside, jnp.ones_like(a), a / jnp.where(inside, jnp.ones_like(a), dual_norm))
    sq = r2 + b * l2
    gap_a = 0.5 * sq + a * l1 - (-0.5 * scale * scale * sq + scale * ry)
    xtr2 = jnp.sum(xtr * xtr, axis=0)
    safe_b = jnp.where(b == 0, jnp.ones_like(b), b)
    gap_b = r2 + 0.5 * b * l2 - ry + xtr2 / (2 * safe_b)
    return jnp.where(a == 0, jnp.where(b == 0, xtr2, gap_b), gap_a)


def below(gap: jax.Array, gap_tol: jax.Array, tol: jax.Array) -> jax.Array:
    """The stopping test. ``tol = 0`` never stops early: a gap at its rounding floor can
    read ``<= 0`` well before the iterate itself stops moving."""
    return (gap <= gap_tol) & (tol > 0)


# --------------------------------------------------------------------------- FISTA

#: FISTA iterations between two duality-gap checks.
CHECK_EVERY = 10


class _FistaState(NamedTuple):
    W: jax.Array  # [p, k] the iterate (the prox output: exact zeros)
    V: jax.Array  # [p, k] the extrapolated point
    t: jax.Array  # [k] momentum parameter
    gap: jax.Array  # [k] duality gap (objective times n) at W, from the last check
    done: jax.Array  # [k] stopped: gap below tolerance, or not finite
    n_iter: jax.Array  # iterations of the loop
    col_iter: jax.Array  # [k] iterations each column has run


def fista(
    q: Quadratic,
    n: int,
    l1: jax.Array,
    l2: jax.Array,
    tol: jax.Array,
    *,
    max_iter: int | jax.Array,
    W0: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimizes ``1/(2n)‖y - Xw‖² + l1_k‖w‖₁ + ½l2_k‖w‖²`` for every column ``k`` by
    FISTA with adaptive restart (O'Donoghue & Candès, 2015) from ``W0`` (default 0).

    Returns ``W`` ``[p, k]``, the iterations of each column ``[k]`` and the n-scaled gaps.
    """
    p, dtype = q.Xty.shape[0], q.Xty.dtype
    nf = jnp.asarray(n, dtype)
    top = _top_eigenvalue(q, p, dtype)
    # The data term's gradient is Lipschitz with constant λ_max(XᵀX)/n; step = 1/L.
    step = nf / jnp.where(top <= 0, jnp.ones((), dtype), top)
    threshold = step * l1
    gap_tol = tol * q.yty

    def fista_step(s: _FistaState) -> _FistaState:
        # Gradient of 1/(2n)‖y - Xv‖² is -XᵀR/n; then the prox of the penalty.
        z = s.V + (step / nf) * (q.Xty[:, None] - _gram_times(q, s.V))
        W = soft_threshold(z, threshold[None, :]) / (1 + step * l2)[None, :]
        # Adaptive restart: drop the momentum when it points uphill.
        restart = jnp.sum((s.V - W) * (W - s.W), axis=0) > 0
        t = jnp.where(restart, jnp.ones_like(s.t), (1 + jnp.sqrt(1 + 4 * s.t * s.t)) / 2)
        beta = jnp.where(restart, jnp.zeros_like(t), (s.t - 1) / t)
        V = W + beta[None, :] * (W - s.W)
        # Stopped columns, and every column past max_iter (the last block may overrun it).
        frozen = s.done | (s.n_iter >= max_iter)
        keep = frozen[None, :]
        return s._replace(
            W=jnp.where(keep, s.W, W),
            V=jnp.where(keep, s.V, V),
            t=jnp.where(frozen, s.t, t),
            n_iter=s.n_iter + 1,
        )

    def gap_of(W: jax.Array) -> jax.Array:
        xtr, r2, ry = _residual_terms(q, W)
        return duality_gap(W, xtr, r2, ry, nf * l1, nf * l2)

    def body(s: _FistaState) -> _FistaState:
        s = lax.fori_loop(0, CHECK_EVERY, lambda _, s: fista_step(s), s)
        # Stopped columns keep the gap (and count) they stopped with. A NaN or infinite
        # gap (NaN in the data or in α) stops its column: more iterations cannot help.
        gap = jnp.where(s.done, s.gap, gap_of(s.W))
        col_iter = jnp.where(s.done, s.col_iter, jnp.minimum(s.n_iter, max_iter))
        done = s.done | below(gap, gap_tol, tol) | ~jnp.isfinite(gap)
        return s._replace(gap=gap, done=done, col_iter=col_iter)

    def cond(s: _FistaState) -> jax.Array:
        return (s.n_iter < max_iter) & ~jnp.all(s.done)

    W0 = jnp.zeros((p, l1.shape[0]), dtype) if W0 is None else W0
    gap0 = gap_of(W0)
    # The first check only stops columns already solved by W0 (NaN data runs one block,
    # so that its coefficients come out NaN, not zero).
    n_iter, col_iter = jnp.zeros((), jnp.int32), jnp.zeros(l1.shape, jnp.int32)
    init = _FistaState(W0, W0, jnp.ones_like(l1), gap0, below(gap0, gap_tol, tol), n_iter, col_iter)
    s = lax.while_loop(cond, body, init)
    return s.W, s.col_iter, s.gap


# --------------------------------------------------------------------------- screening


def screened(
    xta: jax.Array, dual_norm: jax.Array, gap: jax.Array, norm2: jax.Array, a: Any, b: Any
) -> jax.Array:
    r"""Gap-safe screening (Fercoq, Gramfort & Salmon 2015; Ndiaye et al. 2017, as
    scikit-learn's ``_cd_fast.pyx``): True for the features that are provably zero in
    every solution.

    .. math::
        \frac{1 - |x_j^\top\theta|}{\sqrt{\|x_j\|^2 + b}} > \frac{\sqrt{2\,\mathrm{gap}}}{a},
        \qquad x_j^\top\theta = \frac{x_j^\top r - b w_j}{\max(a, \|X^\top r - bw\|_\infty)}

    ``xta`` ``[p]`` is ``Xᵀr - b·w`` at the point whose (n-scaled) duality ``gap`` is
    given, ``norm2`` ``[p]`` the squared column norms. Nothing is screened when ``a = 0``
    (no ℓ1 term), and a NaN anywhere screens nothing.
    """
    a = jnp.asarray(a, xta.dtype)
    scale = jnp.maximum(a, dual_norm)
    zero_scale, safe_scale = scale == 0, jnp.where(scale == 0, 1, scale)
    d = (1 - jnp.abs(xta) / safe_scale) / jnp.sqrt(norm2 + b)
    zero_a = a == 0
    radius = jnp.sqrt(2 * jnp.maximum(gap, 0)) / jnp.where(zero_a, 1, a)
    return (d > radius) & ~zero_a & ~zero_scale & (norm2 > 0)
