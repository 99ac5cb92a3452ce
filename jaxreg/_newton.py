r"""Newton steps of the lasso on a working set's Gram block (see :mod:`jaxreg._lasso`,
choice 5: no LAPACK), and the helpers the coordinate descent shares with them.

The objective on the working set is ``½vᵀ(G + bI)v - qᵀv + a‖v‖₁`` (``G`` the Gram block,
``q = Xᵀy`` on the block); on the orthant face of the current signs it is a quadratic,
whose minimizer :func:`newton_step` solves for by :func:`cholesky_inverse`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

__all__ = ["compact", "objective", "bucket_sizes", "cholesky_inverse", "newton_step"]


def compact(mask: jax.Array, size: int) -> jax.Array:
    """The indices where ``mask`` is True, increasing, in an int32 array of ``size``
    entries padded with ``len(mask)`` (a cumulative sum and a scatter: choice 2)."""
    m = mask.shape[0]
    pos = jnp.cumsum(mask.astype(jnp.int32)) - 1
    target = jnp.where(mask, pos, size)
    out = jnp.full((size,), m, jnp.int32)
    return out.at[target].set(jnp.arange(m, dtype=jnp.int32), mode="drop")


def objective(v, g, q, a):
    """``½vᵀ(G + bI)v - qᵀv + a‖v‖₁`` from the gradient ``g = (G + bI)v - q``."""
    return 0.5 * jnp.dot(v, g) - 0.5 * jnp.dot(q, v) + a * jnp.sum(jnp.abs(v))


#: Newton systems: sizes 32, 64, 128, ... (powers of two), at most ``NEWTON_MAX``.
NEWTON_MAX = 2048
#: Newton: bordered re-solves holding at 0 the coordinates that changed sign, and the
#: most coordinates held at once.
DROPS, DROP_MAX = 4, 32
#: Leaves of the recursive Cholesky inverse (choice 5), and the relative size of a
#: pivot below which a column counts as dependent on the previous ones.
LEAF, DEPENDENT = 128, 1e-12


def bucket_sizes(K: int) -> tuple[int, ...]:
    """The static sizes of the Newton system for ``K`` slots: powers of two from 32 up to
    the first that holds ``min(K, NEWTON_MAX)``."""
    sizes = [32]
    while sizes[-1] < min(K, NEWTON_MAX):
        sizes.append(2 * sizes[-1])
    return tuple(sizes)


def _leaf_inverse(A: jax.Array, floor: jax.Array) -> jax.Array:
    """``L⁻¹`` for ``A = LLᵀ`` (``A`` small): column ``j`` of ``L`` and row ``j`` of
    ``L⁻¹`` (forward substitution) in one loop. A pivot ``≤ floor`` marks a column that
    depends on the previous ones: its row of ``L⁻¹`` is 0 (the coordinate is held at 0)."""
    n, dtype = A.shape[0], A.dtype
    ar = jnp.arange(n)
    zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)

    def step(j, LI):
        L, Linv = LI
        lj = jnp.where(ar < j, L[j], zero)  # L[j, :j]
        pivot = A[j, j] - jnp.dot(lj, lj)
        # A dependent column: an infinite pivot zeroes its column of L and row of L⁻¹.
        # (A NaN pivot is not <= floor: it stays NaN.)
        ljj = jnp.where(pivot <= floor, jnp.inf, jnp.sqrt(jnp.where(pivot <= floor, one, pivot)))
        col = (A[:, j] - L @ lj) / ljj
        L = L.at[:, j].set(jnp.where(ar > j, col, jnp.where(ar == j, ljj, zero)))
        Linv = Linv.at[j].set((jnp.where(ar == j, one, zero) - lj @ Linv) / ljj)
        return L, Linv

    empty = jnp.zeros((n, n), dtype)
    return lax.fori_loop(0, n, step, (empty, empty))[1]


def cholesky_inverse(A: jax.Array, floor: ArrayLike | None = None) -> jax.Array:
    """``L⁻¹`` for a symmetric positive semi-definite ``A = LLᵀ`` (size ``LEAF·2ᵏ`` or at
    most ``LEAF``), by recursive halving: with ``L₁₁⁻¹`` of the leading block,
    ``L₂₁ = A₂₁L₁₁⁻ᵀ``, ``L₂₂⁻¹`` of the Schur complement ``A₂₂ - L₂₁L₂₁ᵀ`` and
    ``(L⁻¹)₂₁ = -L₂₂⁻¹L₂₁L₁₁⁻¹``: matrix products (XLA's own kernels) down to
    ``LEAF``-sized leaves (choice 5).

    A pivot at most ``floor`` (default ``DEPENDENT·max(diag A)``) is a column that
    depends on the previous ones (duplicated features): its row of ``L⁻¹`` is zero, so
    ``L⁻ᵀL⁻¹b`` solves the system with that coordinate held at 0. NaN in, NaN out."""
    if floor is None:
        floor = DEPENDENT * jnp.max(jnp.diagonal(A))
    floor = jnp.asarray(floor, A.dtype)
    S = A.shape[0]
    if S <= LEAF:
        return _leaf_inverse(A, floor)
    h = S // 2
    I11 = cholesky_inverse(A[:h, :h], floor)
    L21 = A[h:, :h] @ I11.T
    I22 = cholesky_inverse(A[h:, h:] - L21 @ L21.T, floor)
    I21 = -(I22 @ (L21 @ I11))
    return jnp.block([[I11, jnp.zeros((h, S - h), A.dtype)], [I21, I22]])


def newton_step(G, q, v, g, used, a, b):
    """A Newton step on the orthant face of ``v``, and its gradient.

    On the face (support ``A``, signs ``s``) the objective is the quadratic whose
    minimizer solves ``(G_AA + bI)u_A = q_A - a·s_A`` (:func:`cholesky_inverse` on the
    smallest bucket that holds ``A``; the caller makes sure one does). Two candidates:

    - the step from ``v`` towards ``u`` up to the first coordinate that changes sign (set
      to exactly 0), along which the objective decreases: ``f(v) + gᵀd·(t - t²/2)`` with
      ``d = u - v`` and ``g`` the face gradient at ``v``;
    - the active-set point: the coordinates ``D`` that change sign are held at 0 and the
      system solved again, up to ``DROPS`` times, until ``u`` keeps the signs. With
      ``H⁻¹ = L⁻ᵀL⁻¹`` at hand that is a bordered solve,
      ``u' = u - H⁻¹E_D(E_DᵀH⁻¹E_D)⁻¹u_D``, of ``O(size²·|D|)`` (at most ``DROP_MAX``
      coordinates); its objective is ``-½qᵀu + ½a·sᵀu`` (from the normal equations).

    The better one is returned with its gradient ``(G + bI)u - q`` (one product with
    ``G``) and True if its objective is below ``v``'s; otherwise ``v``, ``g`` and False
    (a singular system, a non-finite ``u``, always)."""
    K, dtype = v.shape[0], v.dtype
    support = used & (v != 0)
    s = jnp.sign(v)
    sizes = bucket_sizes(K)
    zero = jnp.zeros((), dtype)

    n_drop = min(DROP_MAX, K)

    def solver(size):
        def solve(_):
            idx = compact(support, size)  # padded with K
            valid = idx < K
            safe = jnp.where(valid, idx, 0)
            eye = jnp.eye(size, dtype=dtype)
            H = jnp.where(valid[:, None] & valid[None, :], G[safe][:, safe] + b * eye, eye)
            rhs = jnp.where(valid, (q - a * s)[safe], zero)
            Linv = cholesky_inverse(H)
            u0 = (Linv @ rhs) @ Linv  # H⁻¹·rhs = L⁻ᵀL⁻¹·rhs
            # The columns of H⁻¹ at the coordinates closest to changing sign (smallest
            # s·u), for the bordered solves.
            _, cand = lax.top_k(jnp.where(valid, -s[safe] * u0, -jnp.inf), min(n_drop, size))
            cols = (Linv[:, cand].T @ Linv).T  # [size, n_drop] = H⁻¹[:, cand]
            back = jnp.zeros((K, cols.shape[1]), dtype).at[idx].set(cols, mode="drop")
            pad = n_drop - cols.shape[1]
            return (
                jnp.zeros((K,), dtype).at[idx].set(u0, mode="drop"),
                jnp.pad(back, ((0, 0), (0, pad))),
                jnp.pad(jnp.where(valid[cand], idx[cand], K), (0, pad), constant_values=K),
            )

        return solve

    m = jnp.sum(support, dtype=jnp.int32)
    bucket = jnp.sum(m > jnp.asarray(sizes[:-1], jnp.int32), dtype=jnp.int32)
    first, Hc, cand = lax.switch(bucket, [solver(size) for size in sizes], None)
    ok = cand < K
    safe_cand = jnp.where(ok, cand, 0)

    def drop(state):
        held, u, _, i = state  # held: [n_drop] over the candidates
        held = held | (ok & (s[safe_cand] * u[safe_cand] <= 0))
        M = jnp.where(held[:, None] & held[None, :], Hc[safe_cand], jnp.eye(n_drop, dtype=dtype))
        Minv = cholesky_inverse(M)
        lam = (Minv @ jnp.where(held, first[safe_cand], zero)) @ Minv
        u = first - Hc @ lam
        u = u.at[safe_cand].set(jnp.where(held, zero, u[safe_cand]))
        return held, u, jnp.zeros((), bool), i + 1

    def more(state):
        held, u, _, i = state
        crossing = support & (s * u <= 0)
        new_cand = ok & ~held & (s[safe_cand] * u[safe_cand] <= 0)
        return (
            (i < DROPS)
            & jnp.any(new_cand)
            & (jnp.sum(crossing) == jnp.sum(held) + jnp.sum(new_cand))
        )

    held0 = jnp.zeros((n_drop,), bool)
    _, u, _, _ = lax.while_loop(more, drop, (held0, first, jnp.zeros((), bool), 0))
    consistent = ~jnp.any(support & (u != 0) & (s * u <= 0)) & ~jnp.any(~support & (u != 0))

    f_v = objective(v, g, q, a)
    # The first sign change along v + t·d: t_j = v_j / (v_j - u_j) where s_j·u_j <= 0.
    d = first - v
    crosses = support & (s * first <= 0)
    t_j = jnp.where(crosses, v / jnp.where(crosses, -d, jnp.ones((), dtype)), jnp.inf)
    t = jnp.minimum(1, jnp.min(t_j))
    step = jnp.where(crosses & (t_j <= t), zero, v + t * d)
    slope = jnp.dot(jnp.where(support, g + a * s, zero), d)
    f_step = f_v + slope * (t - t * t / 2)

    f_u = jnp.where(consistent, -0.5 * jnp.dot(q, u) + 0.5 * a * jnp.dot(s, u), jnp.inf)
    x = jnp.where(f_u <= f_step, u, step)
    # The formulas assume an exact solve; on a nearly singular face they can be far off,
    # so the point is kept only if its true objective (with the exact gradient) is lower.
    g_x = G @ x - q + b * x
    improves = objective(x, g_x, q, a) < f_v  # NaN: False
    return jnp.where(improves, x, v), jnp.where(improves, g_x, g), improves
