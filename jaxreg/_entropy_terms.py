"""The pointwise ``p·log q`` terms of the entropies and divergences (private), with the
``0·log 0 = 0`` convention in their values *and* derivatives.

Plain autodiff of ``p·log q`` gives ``0·(-inf)`` or ``0/0`` (NaN) where ``p = 0``. The
``jax.custom_jvp`` rules here hold such points constant with the "double where" and
compute only the derivatives that are asked for (``symbolic_zeros``), so a gradient in
``q`` alone needs no logarithm; :func:`rel_entr_log_log`, all in log space, needs no rule
(plain autodiff with the special points held constant). A NaN in either argument stays
NaN (a zero is not a NaN filter).
:mod:`jaxreg.information` builds every entropy, cross-entropy and divergence on them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxreg import _numerics

__all__ = ["rel_entr", "rel_entr_log", "rel_entr_log_log", "safe_xlogy", "xlogx"]


@jax.custom_jvp
def xlogx(p: jax.Array) -> jax.Array:
    """``p·log p`` with ``0·log 0 = 0``; NaN where ``p`` is NaN or negative.

    Written without a comparison or a select: ``max(log p, log tiny)`` is ``log p`` for
    every normal ``p`` and ``log p`` stays NaN for a negative or NaN ``p`` (the maximum
    propagates NaN), while at ``p = 0`` it gives ``0·log(tiny) = 0``. XLA:CPU fuses
    these three operations into the reduction that follows (a select or a comparison
    would not fuse, and the ``[..., C]`` terms would be written to memory and read back:
    the entropy takes about 0.65× the time of ``-Σ xlogy(p, p)``). A subnormal ``p``
    (kept on GPU; zero on CPU) counts as ``tiny`` inside the log: an absolute error
    below ``tiny``, 1.2e-38 in float32.
    """
    log_tiny = math.log(float(jnp.finfo(p.dtype).tiny))
    return p * jnp.maximum(jnp.log(p), log_tiny)


def _d_xlogx(p: jax.Array) -> jax.Array:
    """``∂(p·log p) = log p + 1`` where ``p > 0``; 0 at ``p = 0`` (the convention) and
    outside the domain (negative or NaN ``p``, where the value is NaN): the double where."""
    positive = p > 0
    log_p = jnp.log(jnp.where(positive, p, jnp.ones_like(p)))
    return jnp.where(positive, log_p + 1.0, jnp.zeros_like(p))


@xlogx.defjvp
def _xlogx_jvp(primals, tangents):
    (p,), (p_dot,) = primals, tangents
    return xlogx(p), p_dot * _d_xlogx(p)


@jax.custom_jvp
def safe_xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x·log y`` with ``0·log y = 0`` (see :func:`jaxreg.xlogy`), on arrays of one shape and
    dtype."""
    zero = x == 0
    # 0·log y = 0 for every y >= 0, but a NaN y stays NaN (a zero is not a NaN filter).
    at_zero = jnp.where(jnp.isnan(y), y, jnp.zeros_like(x))
    return jnp.where(zero, at_zero, x * jnp.log(jnp.where(zero, jnp.ones_like(y), y)))


def _safe_xlogy_jvp(primals, tangents):
    x, y = primals
    x_dot, y_dot = tangents
    out = safe_xlogy(x, y)
    positive = y > 0
    y_safe = jnp.where(positive, y, jnp.ones_like(y))
    terms = []
    # Only the derivatives that are asked for are computed (symbolic zeros). Where y is
    # not positive (0, and outside the domain: negative or NaN, where the value is
    # NaN) the derivatives are 0, never NaN.
    if not _numerics.is_symbolic_zero(x_dot):
        terms.append(x_dot * jnp.where(positive, jnp.log(y_safe), jnp.zeros_like(y)))
    if not _numerics.is_symbolic_zero(y_dot):
        terms.append(y_dot * jnp.where(positive, x / y_safe, jnp.zeros_like(x)))
    return out, _numerics.sum_terms(terms, out)


safe_xlogy.defjvp(_safe_xlogy_jvp, symbolic_zeros=True)


@jax.custom_jvp
def rel_entr(p: jax.Array, q: jax.Array) -> jax.Array:
    """``p·log(p/q)``: 0 where ``p = 0`` (NaN if ``q`` is), ``+inf`` where ``p > 0 = q``.

    One log, not two.

    Its derivative is that of ``xlogy(p, p) - xlogy(p, q)``, with the same conventions.
    """
    zero = p == 0
    ratio = jnp.where(zero, jnp.ones_like(p), p) / jnp.where(zero, jnp.ones_like(q), q)
    at_zero = jnp.where(jnp.isnan(q), q, jnp.zeros_like(p))  # a NaN q stays NaN
    return jnp.where(zero, at_zero, p * jnp.log(ratio))


def _rel_entr_jvp(primals, tangents):
    p, q = primals
    p_dot, q_dot = tangents
    out = rel_entr(p, q)
    q_pos = q > 0
    q_safe = jnp.where(q_pos, q, jnp.ones_like(q))
    terms = []
    # ∂p = (log p + 1)·[p > 0] - log q·[q > 0];  ∂q = -(p / q)·[q > 0]. Only the
    # derivatives that are asked for are computed (symbolic zeros): the gradient in q
    # alone needs no logarithm.
    if not _numerics.is_symbolic_zero(p_dot):
        d_p = _d_xlogx(p) - jnp.where(q_pos, jnp.log(q_safe), jnp.zeros_like(q))
        terms.append(p_dot * d_p)
    if not _numerics.is_symbolic_zero(q_dot):
        terms.append(q_dot * jnp.where(q_pos, -p / q_safe, jnp.zeros_like(q)))
    return out, _numerics.sum_terms(terms, out)


rel_entr.defjvp(_rel_entr_jvp, symbolic_zeros=True)


@jax.custom_jvp
def rel_entr_log(p: jax.Array, log_q: jax.Array) -> jax.Array:
    """``p·(log p - log_q)`` with :func:`rel_entr`'s conventions, ``q`` given as its log.

    0 where ``p = 0`` (also at ``log_q = -inf``; NaN if ``log_q`` is NaN), ``+inf``
    where ``p > 0`` and ``log_q = -inf``. No ``exp(log_q)`` is formed: a very negative
    ``log_q`` (a ``q`` below the smallest float) still gives the finite, exact value.
    """
    zero = p == 0
    p_safe = jnp.where(zero, jnp.ones_like(p), p)
    log_q_safe = jnp.where(zero, jnp.zeros_like(log_q), log_q)
    at_zero = jnp.where(jnp.isnan(log_q), log_q, jnp.zeros_like(p))  # a NaN log_q stays NaN
    return jnp.where(zero, at_zero, p * (jnp.log(p_safe) - log_q_safe))


def _rel_entr_log_jvp(primals, tangents):
    p, log_q = primals
    p_dot, log_q_dot = tangents
    out = rel_entr_log(p, log_q)
    terms = []
    # ∂p = (log p + 1)·[p > 0] - log_q·[log_q > -inf] (at p = 0: -log q, the derivative of
    # -p·log q, as kl_divergence); ∂log_q = -p.
    if not _numerics.is_symbolic_zero(p_dot):
        finite = log_q > -jnp.inf
        d_p = _d_xlogx(p) - jnp.where(finite, log_q, jnp.zeros_like(log_q))
        terms.append(p_dot * d_p)
    if not _numerics.is_symbolic_zero(log_q_dot):
        terms.append(-(log_q_dot * p))
    return out, _numerics.sum_terms(terms, out)


rel_entr_log.defjvp(_rel_entr_log_jvp, symbolic_zeros=True)


def rel_entr_log_log(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """``exp(log_p)·(log_p - log_q)``: 0 where ``log_p = -inf`` (NaN if ``log_q`` is NaN),
    ``+inf`` where ``log_p > -inf = log_q``; both held constant (gradient 0), which is
    the limit of the derivative at ``log_p -> -inf``. Plain autodiff elsewhere."""
    zero = log_p == -jnp.inf
    infinite = (log_q == -jnp.inf) & (log_p > -jnp.inf)  # a NaN log_p computes: NaN
    held = zero | infinite
    lp = jnp.where(held, jnp.zeros_like(log_p), log_p)
    lq = jnp.where(held, jnp.zeros_like(log_q), log_q)
    at_zero = jnp.where(jnp.isnan(log_q), log_q, jnp.zeros_like(log_p))
    special = jnp.where(zero, at_zero, jnp.full_like(log_p, jnp.inf))
    return jnp.where(held, special, jnp.exp(lp) * (lp - lq))
