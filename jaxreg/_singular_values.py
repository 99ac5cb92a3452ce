"""The singular-value norms of :mod:`jaxreg.norms` (private): nuclear, ``2`` and ``-2``.

Each is a ``jax.custom_jvp`` over matrices ``x[..., m, n]``: the SVD runs on the matrix
scaled by an exact power of two (:mod:`jaxreg._scaling`), so it neither overflows nor
underflows where the norm is representable, and an all-zero or non-finite matrix is
swapped for a stand-in whose SVD and its derivative have no NaN; the rule gives the
``U Vᵀ``-style subgradients torch uses, and gradient 0 at an all-zero matrix.
:func:`jaxreg.norms.matrix_norm` checks the arguments and moves the axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg import _scaling

__all__ = ["SINGULAR_VALUE_NORMS"]


def _scaled_for_svd(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(x·2^-e, 2^e, m)`` per matrix of ``x[..., r, c]``, ``m`` its largest magnitude.

    Singular values are homogeneous, so the SVD runs on the exactly scaled matrix
    (largest magnitude in ``[0.5, 4)``: no overflow or underflow inside the solver on
    any backend). An all-zero or non-finite matrix is replaced by a stand-in with
    distinct singular values ``1, 2, ...``: its SVD and that SVD's derivative (the
    Hessian's path) have no NaN; :func:`_singular_value_result` replaces its value.
    """
    m = lax.stop_gradient(jnp.max(jnp.abs(x), axis=(-2, -1), keepdims=True))
    down, up = _scaling.power_of_two_scale(m)
    rows, cols = x.shape[-2:]
    stand_in = jnp.eye(rows, cols, dtype=x.dtype) * jnp.arange(1, cols + 1, dtype=x.dtype)[None, :]
    special = (m == 0) | ~jnp.isfinite(m)
    x_safe = jnp.where(special, jnp.broadcast_to(stand_in, x.shape), x * down)
    return x_safe, up[..., 0, 0], m[..., 0, 0]


def _singular_value_result(s: jax.Array, up: jax.Array, m: jax.Array, which: str) -> jax.Array:
    """``Σσ``, ``max σ`` or ``min σ`` from the scaled singular values ``s``.

    At a special matrix: 0 (all zeros), NaN (a NaN entry: NaN in, NaN out, on every
    backend, whatever its SVD does with NaN), ``inf`` (an infinite entry makes ``Σσ``
    and ``max σ >= max|x|`` infinite; ``min σ`` is then undefined: NaN).
    """
    value = _pick(s, which) * up
    inf_value = jnp.nan if which == "min" else jnp.inf
    special = jnp.where(jnp.isinf(m), inf_value, m)  # m is 0, NaN or inf where it is used
    return jnp.where((m == 0) | ~jnp.isfinite(m), special, value)


def _pick(s: jax.Array, which: str) -> jax.Array:
    if which == "nuc":
        return jnp.sum(s, axis=-1)
    return s[..., 0] if which == "max" else s[..., -1]


def _make_singular_value_norm(which: str):
    @jax.custom_jvp
    def norm(x: jax.Array) -> jax.Array:
        x_safe, up, m = _scaled_for_svd(x)
        return _singular_value_result(jnp.linalg.svd(x_safe, compute_uv=False), up, m, which)

    @norm.defjvp
    def norm_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        x_safe, up, m = _scaled_for_svd(x)
        u, s, vh = jnp.linalg.svd(x_safe, full_matrices=False)
        # d σ_k = u_kᵀ dX v_k (for Σσ: trace(Uᵀ dX V), torch's U Vᵀ subgradient); the
        # singular vectors of x·2^-e are those of x.
        dsigma = jnp.einsum("...ik,...ij,...kj->...k", u, dx, vh)
        if which == "nuc":
            tangent = jnp.sum(dsigma, axis=-1)
        else:
            tangent = dsigma[..., 0] if which == "max" else dsigma[..., -1]
        # At an all-zero matrix the tangent is 0 (the stand-in's is discarded).
        tangent = jnp.where(m == 0, jnp.zeros_like(tangent), tangent)
        return _singular_value_result(s, up, m, which), tangent

    return norm


#: ``"nuc"``, ``2`` and ``-2`` of ``x[..., m, n]``.
SINGULAR_VALUE_NORMS = {w: _make_singular_value_norm(w) for w in ("nuc", "max", "min")}
