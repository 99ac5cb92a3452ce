"""Coordinate descent on a working set of the lasso (see :mod:`jaxreg._lasso`): cyclic
sweeps over the coordinates that would move, Anderson extrapolation between them
(Bertrand & Massias 2021), and Newton steps on the support where they pay."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg._lasso import below, duality_gap
from jaxreg._newton import bucket_sizes, cholesky_inverse, compact, newton_step, objective
from jaxreg.proximal import soft_threshold

__all__ = ["Slots", "Data", "coordinate_descent", "ANDERSON", "ANDERSON_MAX_GAIN"]

#: Anderson acceleration: extrapolate from the last ``ANDERSON + 1`` epochs; with
#: coefficients of total magnitude above ``ANDERSON_MAX_GAIN``, the gradient at the
#: extrapolated point is recomputed rather than combined.
ANDERSON, ANDERSON_MAX_GAIN = 5, 1e3


class Slots(NamedTuple):
    """The working set: ``K`` slots, each empty or holding one feature. A feature that
    leaves the working set keeps its slot (and Gram row) until the slot is needed, so
    that coming back costs nothing."""

    feature: jax.Array  # [K] int32: the feature in each slot; p for an empty slot
    member: jax.Array  # [K] bool: the slot's feature is in the working set
    rows: jax.Array  # [K, n] the feature's column of X (zero in empty slots)
    gram: jax.Array  # [K, K] xᵢᵀxⱼ between the slots' features
    xty: jax.Array  # [K] xᵢᵀy
    v: jax.Array  # [K] the coefficients (0 outside the working set)
    gv: jax.Array  # [K] gram @ v (kept up to date for every slot with a feature)


class Data(NamedTuple):
    """What every round of every strength reads."""

    X: jax.Array  # [n, p]
    y: jax.Array  # [n]
    norm2: jax.Array  # [p] ‖xⱼ‖²
    yty: jax.Array  # scalar


#: Cost model of a Newton step against more coordinate-descent sweeps, in nanoseconds of
#: XLA:CPU float64 (measured on jaxlib 0.10.2, one thread): a sweep over ``count``
#: coordinates costs ``count·(SWEEP_NS_PER_SLOT·K + SWEEP_NS)`` (the gradient row update
#: is ``K`` long), a Newton step ``CHOLESKY_NS·size³ + MATVEC_NS·K² + NEWTON_NS`` (the
#: Cholesky solve of the bucket, a product with the Gram block, fixed costs).
SWEEP_NS_PER_SLOT, SWEEP_NS = 0.8, 300
CHOLESKY_NS, MATVEC_NS, NEWTON_NS = 0.04, 1.2, 2e5
#: Sweeps assumed still needed when the last one did not shrink the gap.
STALLED_SWEEPS = 20


def coordinate_descent(
    slots: Slots,
    data: Data,
    a: jax.Array,
    b: jax.Array,
    tol: jax.Array,
    tol_in: jax.Array,
    budget: jax.Array,
    *,
    at_least_one: bool = True,
    guess: tuple[jax.Array, jax.Array | None] | None = None,
) -> tuple[Slots, jax.Array, jax.Array]:
    """Cyclic coordinate descent on the working set until its own (restricted) duality
    gap is at most ``tol_in`` (``below``): at most ``budget`` epochs, at least one if
    ``at_least_one`` (a round of working sets must make progress). ``guess``: another
    starting point and its ``G·v`` (None: computed), taken instead of the slots' ``v``
    if its objective is lower.

    A sweep visits only the coordinates it would move (the nonzero ones and those that
    violate their optimality condition; the gradient is kept for the whole working set).
    Between sweeps, a Newton step on the support where it costs less than the sweeps
    it saves (the cost model above), Anderson extrapolation otherwise. Returns the slots
    with new coefficients, the sweeps run and the final gap."""
    K = slots.v.shape[0]
    used = slots.member
    G, q = slots.gram, slots.xty
    h = jnp.diagonal(G) + b
    zero_h = h == 0
    safe_h = jnp.where(zero_h, jnp.ones_like(h), h)
    dtype = h.dtype
    zero = jnp.zeros((), dtype)
    sizes = jnp.asarray(bucket_sizes(K), dtype)

    def gap_in(v, g):
        """The duality gap restricted to the working set (O(K))."""
        xta = jnp.where(used, -g, zero)  # XᵀR - bw = -g there
        qv = jnp.dot(q, v)
        r2 = data.yty - 2 * qv + jnp.dot(v, g + q - b * v)
        gap = duality_gap(
            v[:, None], (xta + b * v)[:, None], r2[None], (data.yty - qv)[None], a[None], b[None]
        )
        return gap[0]

    def coordinate(i, state):
        v, g, todo = state
        j = todo[i]
        vj = v[j]
        z = vj - g[j] / safe_h[j]
        new = jnp.where(zero_h[j], zero, soft_threshold(z, a / safe_h[j]))
        delta = new - vj
        g = (g + delta * G[j]).at[j].add(b * delta)
        return v.at[j].set(new), g, todo

    def newton_pays(m, count, gap, last_gap):
        """Whether a Newton step costs less than the sweeps coordinate descent still
        needs at its current linear rate."""
        size = sizes[jnp.minimum(jnp.sum(m.astype(dtype) > sizes, dtype=jnp.int32), len(sizes) - 1)]
        rate = gap / last_gap
        contracting = rate < 1
        needed = jnp.where(
            contracting,
            jnp.log(tol_in / gap) / jnp.log(jnp.where(contracting, rate, 0.5)),
            STALLED_SWEEPS,
        )
        sweep = count.astype(dtype) * (SWEEP_NS_PER_SLOT * K + SWEEP_NS)
        newton = CHOLESKY_NS * size**3 + MATVEC_NS * K * K + NEWTON_NS
        return (m > 0) & (m.astype(dtype) <= sizes[-1]) & (newton < needed * sweep)

    def epoch(s):
        v, g, hist_v, hist_g, e, gap, wait, backoff = s
        # The coordinates a sweep would move: the nonzero ones and those whose optimality
        # condition fails (|g_j| > a at v_j = 0). g is exact for every slot, so the others
        # are skipped without changing the sweep's result.
        moves = used & ((v != 0) | (jnp.abs(v - g / safe_h) > a / safe_h)) & ~zero_h
        todo, count = compact(moves, K), jnp.sum(moves, dtype=jnp.int32)
        v, g, _ = lax.fori_loop(0, count, coordinate, (v, g, todo))
        e = e + 1
        slot = e % (ANDERSON + 1)
        hist_v, hist_g = hist_v.at[slot].set(v), hist_g.at[slot].set(g)
        new_gap = gap_in(v, g)

        def extrapolate(vg):
            # Anderson: the affine combination of the last iterates that minimizes the
            # combined step; the gradient is affine in v, so it combines alike.
            v, g = vg
            U = hist_v[1:] - hist_v[:-1]  # [ANDERSON, K]
            Linv = cholesky_inverse(U @ U.T)  # singular: NaN, and no step is taken
            z = jnp.sum(Linv, axis=0) @ Linv  # (UUᵀ)⁻¹·1
            c = z / jnp.sum(z)
            v_acc = c @ hist_v[1:]
            # Large alternating coefficients (a slow drift, extrapolated far) amplify the
            # rounding of the stored gradients by Σ|c|: beyond ANDERSON_MAX_GAIN the
            # gradient is recomputed instead of combined.
            tame = jnp.sum(jnp.abs(c)) <= ANDERSON_MAX_GAIN
            g_acc = lax.cond(tame, lambda: c @ hist_g[1:], lambda: G @ v_acc - q + b * v_acc)
            better = objective(v_acc, g_acc, q, a) < objective(v, g, q, a)  # NaN: False
            return jnp.where(better, v_acc, v), jnp.where(better, g_acc, g)

        m = jnp.sum(used & (v != 0), dtype=jnp.int32)
        pays = ~below(new_gap, tol_in, tol) & newton_pays(m, count, new_gap, gap)
        use_newton = pays & (wait == 0)
        newton = lambda vg: newton_step(G, q, *vg, used, a, b)  # noqa: E731
        v, g, improved = lax.cond(use_newton, newton, lambda vg: (*vg, jnp.ones((), bool)), (v, g))
        v, g = lax.cond(~use_newton & (slot == ANDERSON), extrapolate, lambda vg: vg, (v, g))
        # After a Newton step that did not help, wait 1, 3, 7, ... sweeps before the next
        # (a nearly singular face: coordinate descent has to move the support first).
        backoff = jnp.where(
            improved, jnp.where(use_newton, 0, backoff), jnp.minimum(2 * backoff + 1, 255)
        )
        wait = jnp.where(improved, jnp.maximum(wait - 1, 0), backoff)
        return v, g, hist_v, hist_g, e, gap_in(v, g), wait, backoff

    def cond(s):
        e, gap = s[4], s[5]
        more = ~below(gap, tol_in, tol) & jnp.isfinite(gap)
        return (e < budget) & (more | ((e == 0) & at_least_one))

    v0, g0 = slots.v, slots.gv - q + b * slots.v
    if guess is not None:
        v_guess, gv_guess = guess
        gv_guess = G @ v_guess if gv_guess is None else gv_guess
        g_guess = gv_guess - q + b * v_guess
        better = objective(v_guess, g_guess, q, a) < objective(v0, g0, q, a)  # NaN: False
        v0, g0 = jnp.where(better, v_guess, v0), jnp.where(better, g_guess, g0)
    hist_v = jnp.zeros((ANDERSON + 1, K), dtype).at[0].set(v0)
    hist_g = jnp.zeros((ANDERSON + 1, K), dtype).at[0].set(g0)
    izero = jnp.zeros((), jnp.int32)
    init = (v0, g0, hist_v, hist_g, izero, gap_in(v0, g0), izero, izero)
    v, g, _, _, e, gap, _, _ = lax.while_loop(cond, epoch, init)
    return slots._replace(v=v, gv=g + q - b * v), e, gap
