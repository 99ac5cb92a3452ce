"""The vector-norm kernel of :mod:`jaxreg.norms` (private): every ``ord`` of several arrays
taken together, the p-norms exactly scaled and with one custom JVP.

:func:`vector_norm_parts` serves ``vector_norm``, ``global_norm`` (the leaves of a tree as
one vector) and the Frobenius norm of ``matrix_norm``; the argument checks and the empty
and masked cases stay in :mod:`jaxreg.norms`. Here is the arithmetic that makes a p-norm
right over the whole float range (the scaling by exact powers of two of
:mod:`jaxreg._scaling`: the 2-norm only when a cheap check on the plain sum of squares
asks for it, every other ``p`` always) and its derivative rule, which is 0 at a zero
norm and never forms a reciprocal outside the normal range.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg import _numerics, _scaling

__all__ = ["reduced_size", "vector_norm_parts"]

Axes = tuple[int, ...]


def reduced_size(parts: Sequence[jax.Array], axes: Axes) -> int:
    """The number of entries each norm reduces over (static: from the shapes)."""
    return sum(math.prod(x.shape[a] for a in axes) for x in parts)


def _sum(terms: Sequence[jax.Array], axes: Axes, keepdims: bool) -> jax.Array:
    """``Σ`` over ``axes`` of every array in ``terms``, added together."""
    return functools.reduce(jnp.add, [jnp.sum(t, axis=axes, keepdims=keepdims) for t in terms])


def _max_abs(parts: Sequence[jax.Array], axes: Axes, keepdims: bool) -> jax.Array:
    """``max |x|`` (NaN if any entry is NaN), with the subgradient of :func:`safe_abs`."""
    return functools.reduce(
        jnp.maximum, [jnp.max(_numerics.safe_abs(x), axis=axes, keepdims=keepdims) for x in parts]
    )


# --- p-norms, p > 0 and p != 1: one custom JVP --------------------------------------


def _power(x: jax.Array, p: float) -> jax.Array:
    # |x|^p; values only (the custom JVP below gives the derivative): 0^p = 0, NaN stays.
    return x * x if p == 2.0 else jnp.abs(x) ** p


def _root(s: jax.Array, p: float) -> jax.Array:
    return jnp.sqrt(s) if p == 2.0 else s ** (1.0 / p)


def _scaled_p_norm(parts: Sequence[jax.Array], p: float, axes: Axes, keepdims: bool) -> jax.Array:
    """``2^e·‖x·2^-e‖_p`` with ``2^e`` near the magnitude ``m`` that dominates (exact scaling).

    ``m`` is the largest magnitude for ``p > 0`` and the smallest for ``p < 0`` (where
    ``|x|^p`` is largest for the smallest ``|x|``). The 2-norm sums the squares of
    ``x·2^-e`` (at most 4 in magnitude) as they are. For other ``p`` the scaled entries
    are further divided by ``t = m·2^-e`` (in ``[0.5, 4)``, so its reciprocal is
    normal), making the largest term ``|x/m|^p = 1``: no power can overflow or
    underflow harmfully, whatever ``p``. An infinite ``m`` keeps ``t = 1`` (``inf/inf``
    would be NaN); a NaN ``m`` passes through. For ``p < 0`` a zero entry gives
    ``|0|^p = inf``, so the sum is ``inf`` and the norm exactly 0 (torch's and NumPy's
    value), with no special case.
    """
    extreme = (jnp.max, jnp.maximum) if p > 0 else (jnp.min, jnp.minimum)
    m = functools.reduce(
        extreme[1], [extreme[0](jnp.abs(x), axis=axes, keepdims=True) for x in parts]
    )
    down, up = _scaling.power_of_two_scale(m)
    if p == 2.0:
        scale = up
        scaled = [x * down for x in parts]
    else:
        top = m * down  # exact: a power-of-two scaling of a normal number
        t = jnp.where((top == 0) | jnp.isinf(top), jnp.ones_like(top), top)
        scale = t * up  # = m (exact) where m is normal: t and up are the one reciprocal pair
        scaled = [x * down / t for x in parts]
    root = _root(_sum([_power(z, p) for z in scaled], axes, keepdims), p)
    return root * (scale if keepdims else jnp.squeeze(scale, axes))


def _two_norm_value(parts: Sequence[jax.Array], axes: Axes, keepdims: bool) -> jax.Array:
    s = _sum([x * x for x in parts], axes, keepdims)
    # The cheap check, on the sum of squares only: one that overflowed (inf), or that is
    # below n·tiny/eps, where the squares lost to underflow (each below tiny) could have
    # changed it by more than eps; this includes 0, which an all-zero input also gives
    # and for which the rescaled branch returns 0 too. A NaN sum fails both tests and
    # stays on the plain branch: sqrt(NaN) = NaN.
    finfo = jnp.finfo(s.dtype)
    threshold = reduced_size(parts, axes) * float(finfo.tiny) / float(finfo.eps)
    needs = jnp.any(jnp.isinf(s) | (s < threshold))
    rescaled, plain = _two_norm_branches(axes, keepdims)
    return lax.cond(needs, rescaled, plain, list(parts), s)


@functools.cache
def _two_norm_branches(axes: Axes, keepdims: bool):
    """The two branches of the 2-norm's check, made once per (axes, keepdims).

    ``lax.cond`` caches its traced branches by function identity: fresh lambdas on
    every call would retrace and recompile each eager call.
    """

    def rescaled(parts: list[jax.Array], s: jax.Array) -> jax.Array:
        return _scaled_p_norm(parts, 2.0, axes, keepdims)

    def plain(parts: list[jax.Array], s: jax.Array) -> jax.Array:
        return jnp.sqrt(s)

    return rescaled, plain


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _p_norm(parts: list[jax.Array], p: float, axes: Axes, keepdims: bool) -> jax.Array:
    """``(Σ|x|^p)^(1/p)`` over ``parts`` (reduced over the same non-empty ``axes``)."""
    if p == 2.0:
        return _two_norm_value(parts, axes, keepdims)
    return _scaled_p_norm(parts, p, axes, keepdims)


def _dual(u: jax.Array, p: float) -> jax.Array:
    """``sign(u)·|u|^(p-1)``, 0 at ``u == 0`` for every ``p`` (torch's rule for p < 1)."""
    if p == 2.0:
        return u
    nonzero = u != 0  # the double where: NaN != 0, so NaN takes the computing branch
    a = jnp.abs(jnp.where(nonzero, u, jnp.ones_like(u)))
    return jnp.where(nonzero, jnp.sign(u) * a ** (p - 1.0), jnp.zeros_like(u))


@_p_norm.defjvp
def _p_norm_jvp(p, axes, keepdims, primals, tangents):
    (parts,), (dparts,) = primals, tangents
    n = _p_norm(parts, p, axes, keepdims)
    n_b = n if keepdims else jnp.expand_dims(n, axes)
    # d‖x‖_p = Σ sign(x)·(|x|/‖x‖)^(p-1)·dx. The ratio u = x/‖x‖ lies in [-1, 1]; it is
    # formed as (x·2^-e)/(‖x‖·2^-e) so that no reciprocal leaves the normal range (1/‖x‖
    # is subnormal above 2^126 in float32). At ‖x‖ = 0 it is 0 (the double where; a NaN
    # norm fails `== 0` and takes the computing branch).
    zero = n_b == 0
    if p < 0:
        # p < 0 over entries that are all infinite (where= fills masked-out entries with
        # inf) has the norm inf and gradient 0 too: inf/inf would be NaN.
        zero = zero | jnp.isinf(n_b)
    down, _ = _scaling.power_of_two_scale(lax.stop_gradient(n_b))
    denom = jnp.where(zero, jnp.ones_like(n_b), n_b * down)
    return n, _sum(
        [
            _p_norm_partial(x, down, denom, zero, p) * dx
            for x, dx in zip(parts, dparts, strict=True)
        ],
        axes,
        keepdims,
    )


def _p_norm_partial(
    x: jax.Array, down: jax.Array, denom: jax.Array, zero: jax.Array, p: float
) -> jax.Array:
    """``∂‖x‖/∂x = sign(x)·|x/‖x‖|^(p-1)``, 0 where ``zero`` (the norm is 0, or for ``p < 0``
    infinite).

    For ``p < 0`` an infinite entry (``where=`` fills masked-out entries with ``inf``)
    takes no part and its partial is 0; it is held out of the ratio with a double where,
    so that the derivative of this rule (second order) has no ``inf·0`` either.
    """
    if p < 0:
        infinite = jnp.isinf(x)
        x = jnp.where(infinite, jnp.zeros_like(x), x)
        zero = zero | infinite
    return jnp.where(zero, jnp.zeros_like(x), _dual(x * down / denom, p))


def vector_norm_parts(parts: Sequence[jax.Array], ord: float, axes: Axes, keepdims: bool):
    """The ``ord`` vector norm of ``parts`` taken together (the reduction is non-empty)."""
    if ord == math.inf:
        return _max_abs(parts, axes, keepdims)
    if ord == -math.inf:
        return functools.reduce(
            jnp.minimum,
            [jnp.min(_numerics.safe_abs(x), axis=axes, keepdims=keepdims) for x in parts],
        )
    if ord == 0:
        # The number of non-zero entries (NaN if one is NaN); piecewise constant, so its
        # gradient is 0.
        counts = [jnp.where(jnp.isnan(x), x, (x != 0).astype(x.dtype)) for x in parts]
        return _sum(counts, axes, keepdims)
    if ord == 1:
        return _sum([_numerics.safe_abs(x) for x in parts], axes, keepdims)
    return _p_norm(list(parts), ord, axes, keepdims)
