"""Exact power-of-two scaling for the norms (BLAS ``nrm2`` / LAPACK ``dnrm2`` style).

A norm is homogeneous, ``‖x‖ = 2^e·‖2^-e·x‖``, and multiplying by a power of two that
is a normal number is exact (no rounding) as long as the product stays normal. So a
reduction whose sum of powers would overflow or underflow is computed on ``2^-e·x``,
with ``2^e`` close to the largest magnitude, and scaled back at the end.

Why not ``x / m`` with ``m`` the largest magnitude: XLA:CPU rewrites a division by a
broadcast divisor as a multiplication by its reciprocal, and for ``m > 2^126``
(float32) or ``m > 2^1022`` (float64) ``1/m`` is subnormal, which XLA:CPU flushes to
zero (FTZ/DAZ): ``x / m`` became 0 and ``‖[1e38, 1e38]‖`` came out as 0. Here both
``2^-e`` and ``2^e`` are normal by construction (``|e| <= bias - 1``), so neither they
nor their reciprocals leave the normal range on any backend. (Tuned on jaxlib 0.10.x;
``tests/test_norms.py::test_extreme_magnitudes`` fails if this regresses.)

Subnormal inputs: XLA:CPU treats subnormal operands as zero (DAZ) and flushes
subnormal results to zero (FTZ), so on CPU a norm whose entries or result are
subnormal is 0; backends that keep subnormals (XLA:GPU by default) get them right,
since the scaled values are normal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["power_of_two_scale"]

_INT_OF_WIDTH = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def power_of_two_scale(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``(2^-e, 2^e)`` for magnitudes ``m >= 0``, with ``e`` the binary exponent of ``m``.

    .. math::
        2^{e-1} \le m < 2^e, \quad\text{clamped to}\quad |e| \le \mathrm{bias} - 1

    so both factors are normal numbers (``e`` in ``[-126, 126]`` for float32,
    ``[-1022, 1022]`` for float64) and ``m·2^-e`` lies in ``[0.5, 1)`` for normal
    ``m`` below ``2^126`` (``[0.5, 4)`` at the clamp; below 1 for subnormal ``m``).
    Built from the exponent bits: a few integer operations on ``m`` (one value per
    reduced row), no ``log``, no division. ``m = 0`` gives ``2^-e = 2^126`` (finite),
    ``m = inf`` or NaN gives ``2^-e = 2^-126``: the caller's arithmetic carries the
    inf or NaN on.

    Args:
      m: non-negative magnitudes (NaN allowed), any shape, a real floating dtype.

    Returns:
      ``(down, up)``: ``2^-e`` and ``2^e``, shape and dtype of ``m``.

    Example:
      >>> down, up = power_of_two_scale(jnp.array([3.0, 1e38], jnp.float32))
      >>> print(up)
      [4.000000e+00 8.507059e+37]
    """
    m = lax.stop_gradient(m)  # a scale is a constant: the identity is exact
    finfo = jnp.finfo(m.dtype)
    bits_dtype = _INT_OF_WIDTH[jnp.dtype(m.dtype).itemsize]
    bias = int(finfo.maxexp) - 1  # 127 (float32), 1023 (float64)
    nmant = int(finfo.nmant)  # stored significand bits: 23, 52
    bits = lax.bitcast_convert_type(m, bits_dtype)
    biased = (bits >> nmant) & (2 * bias + 1)  # the exponent field (sign bit masked off)
    # m in [2^(E-bias), 2^(E-bias+1)) for a normal m: e = E - bias + 1.
    e = jnp.clip(biased - (bias - 1), -(bias - 1), bias - 1)
    down = lax.bitcast_convert_type((bias - e) << nmant, m.dtype)
    up = lax.bitcast_convert_type((bias + e) << nmant, m.dtype)
    return down, up
