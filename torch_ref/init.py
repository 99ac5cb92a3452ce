"""PyTorch twin of :mod:`jaxreg.init`: the same factories, built on ``torch.nn.init``.

torch's initializers read the fans from a fixed layout, ``(out, in, *receptive)``.
jaxreg names the axes instead (default ``(in, out)`` = ``(-2, -1)``), so here the
requested shape is permuted to torch's layout, filled by ``torch.nn.init``, and
permuted back. The returned factories follow jaxreg's protocol with a
``torch.Generator`` for the key: ``init(generator, shape, dtype=None)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "fan_in_and_fan_out",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
]

Initializer = Callable[..., torch.Tensor]


def _torch_order(ndim: int, in_axis: int, out_axis: int) -> list[int]:
    """The permutation taking a jaxreg layout to torch's ``(out, in, *rest)``."""
    if ndim < 2:
        raise ValueError(f"fan_in_and_fan_out: `shape` must have at least 2 axes, got {ndim}.")
    i, o = in_axis % ndim, out_axis % ndim
    if i == o:
        raise ValueError(f"`in_axis={in_axis}` and `out_axis={out_axis}` name the same axis.")
    return [o, i, *(k for k in range(ndim) if k not in (i, o))]


def fan_in_and_fan_out(
    shape: Sequence[int], *, in_axis: int = -2, out_axis: int = -1
) -> tuple[int, int]:
    """Mirrors :func:`jaxreg.init.fan_in_and_fan_out`.

    Built on torch's ``nn.init._calculate_fan_in_and_fan_out`` after moving the
    axes to torch's ``(out, in, *receptive)`` layout.
    """
    order = _torch_order(len(shape), in_axis, out_axis)
    meta = torch.empty([int(shape[k]) for k in order], device="meta")
    return nn.init._calculate_fan_in_and_fan_out(meta)


def _factory(
    fill: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor],
    in_axis: int,
    out_axis: int,
) -> Initializer:
    """An initializer that fills torch's layout with ``fill`` and permutes to the requested one."""

    def init(
        generator: torch.Generator | None, shape: Sequence[int], dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        order = _torch_order(len(shape), in_axis, out_axis)
        weight = torch.empty([int(shape[k]) for k in order], dtype=dtype)
        with torch.no_grad():
            fill(weight, generator)
        inverse = [order.index(k) for k in range(len(shape))]
        return weight.permute(inverse).contiguous()

    return init


def xavier_uniform(gain: float = 1.0, *, in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """Mirrors :func:`jaxreg.init.xavier_uniform` (``nn.init.xavier_uniform_``)."""
    return _factory(lambda w, g: nn.init.xavier_uniform_(w, gain, generator=g), in_axis, out_axis)


def xavier_normal(gain: float = 1.0, *, in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """Mirrors :func:`jaxreg.init.xavier_normal` (``nn.init.xavier_normal_``, untruncated)."""
    return _factory(lambda w, g: nn.init.xavier_normal_(w, gain, generator=g), in_axis, out_axis)


def _kaiming(
    fill_: Callable[..., torch.Tensor], gain: float, mode: str
) -> Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]:
    # nonlinearity="linear" has gain 1; the requested gain multiplies the draw.
    def fill(w: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        return fill_(w, mode=mode, nonlinearity="linear", generator=g).mul_(gain)

    return fill


def kaiming_uniform(
    gain: float = math.sqrt(2.0), *, mode: str = "fan_in", in_axis: int = -2, out_axis: int = -1
) -> Initializer:
    """Mirrors :func:`jaxreg.init.kaiming_uniform` (``nn.init.kaiming_uniform_``).

    The default ``gain = √2`` equals torch's default ``a=0, nonlinearity='leaky_relu'``.
    """
    return _factory(_kaiming(nn.init.kaiming_uniform_, gain, mode), in_axis, out_axis)


def kaiming_normal(
    gain: float = math.sqrt(2.0), *, mode: str = "fan_in", in_axis: int = -2, out_axis: int = -1
) -> Initializer:
    """Mirrors :func:`jaxreg.init.kaiming_normal` (``nn.init.kaiming_normal_``, untruncated)."""
    return _factory(_kaiming(nn.init.kaiming_normal_, gain, mode), in_axis, out_axis)
