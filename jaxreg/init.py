"""Xavier (Glorot) and Kaiming (He) initializers with explicit fan axes.

Each factory returns an initializer in jax's protocol, ``init(key, shape,
dtype=None)`` (``None``: the default float dtype), usable wherever
``jax.nn.initializers`` are (flax ``kernel_init``, ``jax.vmap`` over keys).

Fans come from explicit axes: ``fan_in = shape[in_axis] · r`` and
``fan_out = shape[out_axis] · r``, where the receptive field ``r`` is the product
of every other axis. The default ``(in_axis, out_axis) = (-2, -1)`` is jaxreg's
and flax's ``(in, out)`` kernel layout (flax convolutions: ``(kh, kw, in, out)``).
torch's layouts are ``(out, in)`` for ``nn.Linear`` (``in_axis=-1, out_axis=-2``)
and ``(out, in, kh, kw)`` for convolutions (``in_axis=1, out_axis=0``).

The distributions are torch's (:mod:`torch.nn.init`), all centred:

=====================  =================================================
``xavier_uniform``     ``U(-a, a)``, ``a = gain·√(6 / (fan_in + fan_out))``
``xavier_normal``      ``N(0, std²)``, ``std = gain·√(2 / (fan_in + fan_out))`` (untruncated)
``kaiming_uniform``    ``U(-a, a)``, ``a = gain·√(3 / fan)``
``kaiming_normal``     ``N(0, std²)``, ``std = gain / √fan`` (untruncated)
=====================  =================================================

with ``fan`` the fan of ``mode``. The Kaiming default ``gain = √2`` is torch's
default (``nonlinearity='leaky_relu', a=0``), variance ``2 / fan_in``.

References:
  Glorot & Bengio, *Understanding the difficulty of training deep feedforward
  neural networks*, AISTATS 2010.
  He et al., *Delving Deep into Rectifiers*, ICCV 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxreg import _numerics

__all__ = [
    "fan_in_and_fan_out",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
]

#: ``init(key, shape, dtype=None) -> Array``, jax's initializer protocol.
Initializer = Callable[..., jax.Array]

_MODES = ("fan_in", "fan_out")


def _axes(in_axis: int, out_axis: int) -> dict[str, int]:
    return {"in_axis": int(in_axis), "out_axis": int(out_axis)}


def _kaiming_mode(mode: str, fn: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"{fn}: `mode` must be one of {_MODES}, got {mode!r}.")
    return mode


def fan_in_and_fan_out(
    shape: Sequence[int], *, in_axis: int = -2, out_axis: int = -1
) -> tuple[int, int]:
    r"""The fans of a weight of ``shape``, with explicit input and output axes.

    .. math::
      \mathrm{fan\_in} = n_{\mathrm{in}}\, r, \qquad \mathrm{fan\_out} = n_{\mathrm{out}}\, r,
      \qquad r = \prod_{k \ne \mathrm{in}, \mathrm{out}} \mathrm{shape}_k

    Args:
      shape: the weight's shape, at least 2-D.
      in_axis: the input-feature axis (``-1`` for torch ``nn.Linear``, ``1`` for torch conv).
      out_axis: the output-feature axis (``-2`` for torch ``nn.Linear``, ``0`` for torch conv).

    Returns:
      ``(fan_in, fan_out)`` as Python ints.

    Raises:
      ValueError: if ``shape`` has fewer than 2 axes, an axis is out of range, or
        both axes are the same.

    Example:
      >>> fan_in_and_fan_out((3, 3, 16, 32))  # flax conv kernel (kh, kw, in, out)
      (144, 288)
      >>> fan_in_and_fan_out((32, 16, 3, 3), in_axis=1, out_axis=0)  # torch conv
      (144, 288)
    """
    shape = tuple(int(d) for d in shape)
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(
            f"fan_in_and_fan_out: `shape` must have at least 2 axes (inputs and outputs), got "
            f"{shape}; a bias or 1-D weight has no fans: initialize it with zeros or a constant."
        )
    axes = {}
    for name, axis in (("in_axis", in_axis), ("out_axis", out_axis)):
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"fan_in_and_fan_out: `{name}={axis}` is out of range for shape {shape}."
            )
        axes[name] = axis % ndim
    if axes["in_axis"] == axes["out_axis"]:
        raise ValueError(
            f"fan_in_and_fan_out: `in_axis={in_axis}` and `out_axis={out_axis}` name the same "
            f"axis of shape {shape}; they must differ."
        )
    receptive_field = math.prod(
        d for k, d in enumerate(shape) if k not in (axes["in_axis"], axes["out_axis"])
    )
    return shape[axes["in_axis"]] * receptive_field, shape[axes["out_axis"]] * receptive_field


def _variance_scaling(
    fn: str, gain: float, mode: str, distribution: str, axes: dict[str, int]
) -> Initializer:
    """Variance ``gain² / fan`` with ``fan`` the ``mode`` of ``jax.nn.initializers``.

    ``variance_scaling``'s ``"uniform"`` is ``U(-√(3·var), √(3·var))`` and its
    ``"normal"`` is untruncated: torch's distributions. ``"fan_avg"`` divides by
    ``(fan_in + fan_out) / 2``, Xavier's denominator.
    """
    if _numerics.is_concrete(gain):  # a traced gain (e.g. swept under jit) is not checked
        value = float(gain)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{fn}: `gain` must be finite and non-negative, got {value}.")
    # (`mode` and `distribution` are the literals variance_scaling expects, checked above)
    initializer = jax.nn.initializers.variance_scaling(
        gain**2, cast(Any, mode), cast(Any, distribution), **axes
    )

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike | None = None) -> jax.Array:
        if dtype is not None and not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
            raise TypeError(f"{fn}: `dtype` must be a floating dtype, got {jnp.dtype(dtype)}.")
        fan_in_and_fan_out(shape, **axes)  # validates the shape and the axes
        if math.prod(shape) == 0:
            return jnp.zeros(shape, dtype)  # nothing to draw (torch warns and returns)
        return initializer(key, shape, dtype)

    return init


def xavier_uniform(gain: float = 1.0, *, in_axis: int = -2, out_axis: int = -1) -> Initializer:
    r"""Xavier/Glorot uniform initializer (torch's ``nn.init.xavier_uniform_``).

    .. math::
      W \sim U(-a, a), \qquad
      a = \mathrm{gain}\sqrt{\frac{6}{\mathrm{fan\_in} + \mathrm{fan\_out}}}, \qquad
      \mathrm{Var}[W] = \frac{2\,\mathrm{gain}^2}{\mathrm{fan\_in} + \mathrm{fan\_out}}

    Args:
      gain: multiplies the standard deviation (torch's ``calculate_gain``: 5/3 for tanh).
      in_axis: the input axis of the weight, see :func:`fan_in_and_fan_out`.
      out_axis: the output axis of the weight.

    Returns:
      ``init(key, shape, dtype=None)`` returning an array of ``shape`` and ``dtype``.

    Example:
      >>> w = xavier_uniform()(jax.random.key(0), (300, 400), jnp.float32)
      >>> print(w.shape, w.dtype, bool(jnp.max(jnp.abs(w)) <= (6 / 700) ** 0.5))
      (300, 400) float32 True
    """
    return _variance_scaling("xavier_uniform", gain, "fan_avg", "uniform", _axes(in_axis, out_axis))


def xavier_normal(gain: float = 1.0, *, in_axis: int = -2, out_axis: int = -1) -> Initializer:
    r"""Xavier/Glorot normal initializer, untruncated (torch's ``nn.init.xavier_normal_``).

    .. math::
      W \sim \mathcal{N}(0, \sigma^2), \qquad
      \sigma = \mathrm{gain}\sqrt{\frac{2}{\mathrm{fan\_in} + \mathrm{fan\_out}}}

    Args:
      gain: multiplies the standard deviation.
      in_axis: the input axis of the weight, see :func:`fan_in_and_fan_out`.
      out_axis: the output axis of the weight.

    Returns:
      ``init(key, shape, dtype=None)`` returning an array of ``shape`` and ``dtype``.

    Example:
      >>> w = xavier_normal()(jax.random.key(0), (300, 400), jnp.float32)
      >>> print(round(float(jnp.std(w)) / (2 / 700) ** 0.5, 1))
      1.0
    """
    return _variance_scaling("xavier_normal", gain, "fan_avg", "normal", _axes(in_axis, out_axis))


def kaiming_uniform(
    gain: float = math.sqrt(2.0), *, mode: str = "fan_in", in_axis: int = -2, out_axis: int = -1
) -> Initializer:
    r"""Kaiming/He uniform initializer (torch's ``nn.init.kaiming_uniform_``).

    .. math::
      W \sim U(-a, a), \qquad a = \mathrm{gain}\sqrt{\frac{3}{\mathrm{fan}}},
      \qquad \mathrm{Var}[W] = \frac{\mathrm{gain}^2}{\mathrm{fan}}

    The default ``gain = √2`` (ReLU) with ``mode="fan_in"`` is torch's default,
    variance ``2 / fan_in``; torch's ``a`` for leaky ReLU is ``gain = √(2 / (1 + a²))``.

    Args:
      gain: multiplies the standard deviation.
      mode: ``"fan_in"`` (preserves the forward variance) or ``"fan_out"`` (the backward).
      in_axis: the input axis of the weight, see :func:`fan_in_and_fan_out`.
      out_axis: the output axis of the weight.

    Returns:
      ``init(key, shape, dtype=None)`` returning an array of ``shape`` and ``dtype``.

    Example:
      >>> w = kaiming_uniform()(jax.random.key(0), (300, 400), jnp.float32)
      >>> print(bool(jnp.max(jnp.abs(w)) <= (6 / 300) ** 0.5))
      True
    """
    return _variance_scaling(
        "kaiming_uniform",
        gain,
        _kaiming_mode(mode, "kaiming_uniform"),
        "uniform",
        _axes(in_axis, out_axis),
    )


def kaiming_normal(
    gain: float = math.sqrt(2.0), *, mode: str = "fan_in", in_axis: int = -2, out_axis: int = -1
) -> Initializer:
    r"""Kaiming/He normal initializer, untruncated (torch's ``nn.init.kaiming_normal_``).

    .. math::
      W \sim \mathcal{N}(0, \sigma^2), \qquad \sigma = \frac{\mathrm{gain}}{\sqrt{\mathrm{fan}}}

    Args:
      gain: multiplies the standard deviation (default √2, torch's default).
      mode: ``"fan_in"`` or ``"fan_out"``.
      in_axis: the input axis of the weight, see :func:`fan_in_and_fan_out`.
      out_axis: the output axis of the weight.

    Returns:
      ``init(key, shape, dtype=None)`` returning an array of ``shape`` and ``dtype``.

    Example:
      >>> w = kaiming_normal(mode="fan_out")(jax.random.key(0), (300, 400), jnp.float32)
      >>> print(round(float(jnp.std(w)) / (2 / 400) ** 0.5, 1))
      1.0
    """
    return _variance_scaling(
        "kaiming_normal",
        gain,
        _kaiming_mode(mode, "kaiming_normal"),
        "normal",
        _axes(in_axis, out_axis),
    )
