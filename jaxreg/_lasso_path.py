"""The lasso and elastic-net paths (see :mod:`jaxreg._lasso`): strengths in decreasing
order with warm starts, on the Gram matrix (:func:`gram_path`) or on growing working sets
with gap-safe screening (:func:`working_set_path`)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._coordinate_descent import Data, Slots, coordinate_descent
from jaxreg._lasso import below, duality_gap, fista, gram, quadratic, screened
from jaxreg._newton import compact

__all__ = ["gram_path", "working_set_path", "slot_count"]

#: Features added to the working set on top of the nonzero ones: at least ``P0``, and as
#: many as there are nonzero ones (the working set doubles, celer's rule).
P0 = 10
#: New features whose Gram rows are computed in one matrix product.
BLOCK = 16
#: Bisection steps of the threshold that picks the new features.
BISECTIONS = 30
#: The slot count ``K``: the largest working set (and support) handled without falling
#: back to FISTA on the full problem.
MIN_SLOTS, MAX_SLOTS = 256, 4096


def slot_count(n: int, p: int) -> int:
    """``K`` for a design ``[n, p]``: room for a lasso support (at most ``min(n, p)``
    features, generically) twice over, within ``[MIN_SLOTS, MAX_SLOTS]`` and at most ``p``."""
    return int(min(p, max(MIN_SLOTS, min(2 * min(n, p), MAX_SLOTS))))


def _weights(slots: Slots, p: int) -> jax.Array:
    """The full coefficient vector ``[p]`` (empty slots point past the end: dropped)."""
    return jnp.zeros((p,), slots.v.dtype).at[slots.feature].set(slots.v, mode="drop")


def _full_gap(
    data: Data, slots: Slots, r: jax.Array, c: jax.Array, a: jax.Array, b: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The n-scaled duality gap at the slots' coefficients, given ``r = y - Xw`` and
    ``c = Xᵀr``; also ``w`` ``[p]``, ``xta = c - b·w`` and its largest magnitude."""
    w = _weights(slots, c.shape[0])
    xta = c - b * w
    gap = duality_gap(
        w[:, None], c[:, None], jnp.dot(r, r)[None], jnp.dot(r, data.y)[None], a[None], b[None]
    )
    return gap[0], w, xta, jnp.max(jnp.abs(xta))


def _choose(
    data: Data,
    slots: Slots,
    w: jax.Array,
    xta: jax.Array,
    dual_norm: jax.Array,
    gap: jax.Array,
    a: jax.Array,
    b: jax.Array,
) -> Slots:
    """The next working set: every nonzero feature, then the features closest to violating
    the optimality conditions (never a screened one), as many again as are nonzero (at
    least ``P0``), within the ``K`` slots. New features take free slots; their Gram rows
    are computed ``BLOCK`` at a time."""
    K, p = slots.v.shape[0], w.shape[0]
    dtype = w.dtype
    active = w != 0
    excluded = screened(xta, dual_norm, gap, data.norm2, a, b) | (data.norm2 == 0)
    # celer's priority: distance of the feature's dual constraint to its boundary.
    scale = jnp.maximum(a, dual_norm)
    scale = jnp.where(scale == 0, jnp.ones_like(scale), scale)
    d = (1 - jnp.abs(xta) / scale) / jnp.sqrt(data.norm2 + b)
    eligible = ~active & ~excluded
    nnz = jnp.sum(active, dtype=jnp.int32)
    size = jnp.minimum(jnp.maximum(P0, 2 * nnz), K)
    wanted = jnp.minimum(size - nnz, jnp.sum(eligible, dtype=jnp.int32))

    # The threshold: the smallest τ with #{eligible, d ≤ τ} ≥ wanted (choice 2: no sort).
    d_lo = jnp.min(jnp.where(eligible, d, jnp.inf))
    d_hi = jnp.max(jnp.where(eligible, d, -jnp.inf))

    def bisect(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) / 2
        enough = jnp.sum(eligible & (d <= mid), dtype=jnp.int32) >= wanted
        return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

    _, tau = lax.fori_loop(0, BISECTIONS, bisect, (d_lo, d_hi))
    chosen = active | (eligible & (d <= tau) & (wanted > 0))

    # Slots whose feature is chosen stay (or come back) in the working set: every nonzero
    # feature does. New features take empty slots first, then slots of features that
    # left the working set.
    in_slot = jnp.zeros((p + 1,), bool).at[slots.feature].set(True)[:p]
    member = jnp.concatenate([chosen, jnp.zeros((1,), bool)])[slots.feature]
    new = compact(chosen & ~in_slot, K)  # new features, padded with p
    empty = slots.feature == p
    n_empty = jnp.sum(empty, dtype=jnp.int32)
    free_empty, free_left = compact(empty, K), compact(~member & ~empty, K)
    i = jnp.arange(K, dtype=jnp.int32)
    free = jnp.where(i < n_empty, free_empty, free_left[jnp.maximum(i - n_empty, 0)])
    n_new = jnp.minimum(jnp.sum(new < p, dtype=jnp.int32), jnp.sum(~member, dtype=jnp.int32))
    target = jnp.where(i < n_new, free, K)  # K: dropped
    feature = slots.feature.at[target].set(new, mode="drop")
    member = member.at[target].set(True, mode="drop")
    v = jnp.where(member, slots.v, jnp.zeros((), dtype))

    B = min(BLOCK, K)

    def add_block(i_block, s):
        rows, gram, xty, gv = s
        at = lax.dynamic_slice(target, (i_block * B,), (B,))
        feats = lax.dynamic_slice(new, (i_block * B,), (B,))
        valid = at < K
        safe = jnp.where(valid, feats, 0)
        cols = jnp.take(data.X, safe, axis=1).T  # [BLOCK, n]
        cols = jnp.where(valid[:, None], cols, jnp.zeros((), dtype))
        rows = rows.at[at].set(cols, mode="drop")
        block = cols @ rows.T  # [BLOCK, K]
        gram = gram.at[at].set(block, mode="drop").at[:, at].set(block.T, mode="drop")
        xty = xty.at[at].set(cols @ data.y, mode="drop")
        return rows, gram, xty, gv.at[at].set(block @ v, mode="drop")  # (v = 0 at new slots)

    # A later block rewrites its columns, fixing the entries an earlier block computed
    # against rows not yet filled. (dynamic_slice clamps the last block into range: it
    # recomputes a few rows of the previous one, harmlessly.)
    n_blocks = (n_new + B - 1) // B
    rows, gram, xty, gv = lax.fori_loop(
        0, n_blocks, add_block, (slots.rows, slots.gram, slots.xty, slots.gv)
    )
    return Slots(feature, member, rows, gram, xty, v, gv)


class _Round(NamedTuple):
    slots: Slots
    r: jax.Array  # [n] y - Xw
    c: jax.Array  # [p] Xᵀr
    gap: jax.Array  # n-scaled duality gap of the full problem at w
    w: jax.Array  # [p]
    xta: jax.Array  # [p] c - b·w
    dual_norm: jax.Array
    epochs: jax.Array  # int32
    done: jax.Array
    rounds: jax.Array  # int32


def _decreasing(solve, init, l1, l2, n):
    """``lax.scan`` of ``solve(carry, (a, b)) -> (carry, outputs)`` over the n-scaled
    strengths in decreasing order (a NaN one sorts last: it cannot spoil a warm start);
    the outputs come back in the input order."""
    order = jnp.argsort(-(l1 + l2))
    _, out = lax.scan(solve, init, (n * l1[order], n * l2[order]))
    undo = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))
    return jax.tree.map(lambda x: x[undo], out)


def _along_the_path(v, gv, v_prev, gv_prev, strength, new_strength):
    """The warm start extrapolated along the path: on a fixed support the lasso solution
    is affine in α (the elastic net's nearly so), so the secant through the last two
    solutions, ``v + τ(v - v_prev)`` with ``τ = (α_new - α)/(α - α_prev)``, is exact
    until the support changes. ``G·v`` is affine in ``v`` and extrapolates alike."""
    before, now = strength[0], strength[1]
    same = now == before  # a repeated strength: no secant (none yet: NaN, rejected)
    tau = jnp.where(
        same, jnp.zeros_like(now), (new_strength - now) / jnp.where(same, 1, now - before)
    )
    guess = v + tau * (v - v_prev)
    return guess, None if gv is None else gv + tau * (gv - gv_prev)


def gram_path(
    X: jax.Array, y: jax.Array, l1: jax.Array, l2: jax.Array, tol: jax.Array, *, max_iter: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimizes ``1/(2n)‖y - Xw‖² + l1_k‖w‖₁ + ½l2_k‖w‖²`` for each strength ``k`` on
    the Gram matrix (formed once), every feature in the working set, in decreasing order
    of ``l1_k + l2_k`` with warm starts.

    Returns ``W`` ``[p, k]`` (NaN columns where the gap is NaN), the coordinate-descent
    epochs of each column ``[k]`` (at most ``max_iter``) and the n-scaled gaps ``[k]``.
    """
    n, p = X.shape
    dtype = X.dtype
    G = gram(X)
    data = Data(X, y, jnp.diagonal(G), jnp.dot(y, y))
    gap_tol = tol * data.yty
    zeros = jnp.zeros((p,), dtype)
    everything = Slots(
        jnp.arange(p, dtype=jnp.int32),
        jnp.ones((p,), bool),
        jnp.zeros((p, 0), dtype),
        G,
        y @ X,
        zeros,
        zeros,
    )

    def solve(carry, ab):
        slots, v_prev, gv_prev, strength = carry
        a, b = ab
        guess = _along_the_path(slots.v, slots.gv, v_prev, gv_prev, strength, a + b)
        new, e, gap = coordinate_descent(
            slots, data, a, b, tol, gap_tol, max_iter, at_least_one=False, guess=guess
        )
        # A NaN strength or NaN data: NaN coefficients, and no new warm start.
        bad = jnp.isnan(gap)
        w = jnp.where(bad, jnp.full_like(new.v, jnp.nan), new.v)
        kept = slots._replace(v=jnp.where(bad, slots.v, new.v), gv=jnp.where(bad, slots.gv, new.gv))
        prev = jnp.where(bad, v_prev, slots.v), jnp.where(bad, gv_prev, slots.gv)
        strength = jnp.where(bad, strength, jnp.stack([strength[1], a + b]))
        return (kept, *prev, strength), (w, e, gap)

    init = (everything, zeros, zeros, jnp.full((2,), jnp.nan, dtype))  # NaN: no secant yet
    W, n_iter, gap = _decreasing(solve, init, l1, l2, jnp.asarray(n, dtype))
    return W.T, n_iter, gap


def working_set_path(
    X: jax.Array, y: jax.Array, l1: jax.Array, l2: jax.Array, tol: jax.Array, *, max_iter: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimizes ``1/(2n)‖y - Xw‖² + l1_k‖w‖₁ + ½l2_k‖w‖²`` for each strength ``k``
    by growing working sets, in decreasing order of ``l1_k + l2_k`` with warm starts.

    Returns ``W`` ``[p, k]`` (NaN columns where the gap is NaN), the coordinate-descent
    epochs of each column ``[k]`` (at most ``max_iter``) and the n-scaled gaps ``[k]``.
    """
    n, p = X.shape
    dtype = X.dtype
    K = slot_count(n, p)
    data = Data(X, y, jnp.sum(X * X, axis=0), jnp.dot(y, y))
    gap_tol = tol * data.yty

    def solve(carry, ab):
        slots, r, c, v_prev, feature_prev, strength, overflow, w_full = carry
        overflow_before = overflow
        a, b = ab
        gap, w, xta, dual_norm = _full_gap(data, slots, r, c, a, b)
        # Once the support has outgrown the slots, every smaller strength goes to FISTA.
        done = below(gap, gap_tol, tol) | ~jnp.isfinite(gap) | overflow
        zero = jnp.zeros((), jnp.int32)
        start = _Round(slots, r, c, gap, w, xta, dual_norm, zero, done, zero)
        v_now = slots.v

        def round_(s: _Round) -> _Round:
            slots = _choose(data, s.slots, s.w, s.xta, s.dual_norm, s.gap, a, b)
            # The first round starts from the path's secant if it is better; slots whose
            # feature changed since the previous strength extrapolate nothing.
            same = (slots.feature == feature_prev) & slots.member
            v_old = jnp.where(same, v_prev, slots.v)
            v_guess, _ = _along_the_path(slots.v, None, v_old, None, strength, a + b)
            v_guess = jnp.where((s.rounds == 0) & slots.member, v_guess, slots.v)
            slots, e, _ = coordinate_descent(
                slots, data, a, b, tol, gap_tol, max_iter - s.epochs, guess=(v_guess, None)
            )
            r = data.y - slots.v @ slots.rows
            c = r @ data.X  # (choice 1)
            gap, w, xta, dual_norm = _full_gap(data, slots, r, c, a, b)
            done = below(gap, gap_tol, tol) | ~jnp.isfinite(gap)
            return _Round(
                slots,
                r,
                c,
                gap,
                w,
                xta,
                dual_norm,
                s.epochs + e,
                done,
                s.rounds + 1,
            )

        def progress(s: _Round) -> jax.Array:
            # Stuck: every slot holds a nonzero coefficient, so no feature can enter.
            full = jnp.sum(s.slots.member & (s.slots.v != 0)) >= K
            return ~s.done & (s.epochs < max_iter) & ~(full & (s.rounds > 0))

        s = lax.while_loop(progress, round_, start)
        overflow = overflow | (~s.done & (s.epochs < max_iter))

        def fallback(_):
            # The support does not fit the slots: FISTA on the whole problem, from the
            # best point known (this strength's, or the previous one's full vector).
            w0 = jnp.where(overflow_before, w_full, s.w)
            q = quadratic(data.X, data.y, use_gram=False)
            W, it, gap = fista(
                q, n, a[None] / n, b[None] / n, tol, max_iter=max_iter - s.epochs, W0=w0[:, None]
            )
            return W[:, 0], s.epochs + it[0], gap[0]

        w_out, epochs, gap = lax.cond(overflow, fallback, lambda _: (s.w, s.epochs, s.gap), None)
        s = s._replace(w=w_out, epochs=epochs, gap=gap)
        # A NaN strength (or NaN data) gives NaN coefficients, and its column does not
        # become the next warm start: the previous coefficients are kept where their
        # slot still holds the same feature, and the residuals recomputed (only then).
        bad = jnp.isnan(s.gap)

        def restore(state):
            slots, _, _ = state
            v = jnp.where(slots.feature == carry[0].feature, carry[0].v, jnp.zeros((), dtype))
            r = data.y - v @ slots.rows
            return slots._replace(v=v, gv=slots.gram @ v), r, r @ data.X

        new = lax.cond(bad, restore, lambda state: state, (s.slots, s.r, s.c))
        w = jnp.where(bad, jnp.full_like(s.w, jnp.nan), s.w)
        prev = (
            jnp.where(bad, v_prev, v_now),
            jnp.where(bad, feature_prev, slots.feature),
            jnp.where(bad, strength, jnp.stack([strength[1], a + b])),
            overflow & ~bad,
            jnp.where(bad, w_full, s.w),
        )
        return (*new, *prev), (w, s.epochs, s.gap)

    zeros = jnp.zeros((K,), dtype)
    empty = Slots(
        jnp.full((K,), p, jnp.int32),
        jnp.zeros((K,), bool),
        jnp.zeros((K, n), dtype),
        jnp.zeros((K, K), dtype),
        zeros,
        zeros,
        zeros,
    )
    init = (
        empty,
        y,
        y @ X,
        zeros,
        empty.feature,
        jnp.full((2,), jnp.nan, dtype),
        jnp.zeros((), bool),
        jnp.zeros((p,), dtype),
    )
    W, n_iter, gap = _decreasing(solve, init, l1, l2, jnp.asarray(n, dtype))
    return W.T, n_iter, gap
