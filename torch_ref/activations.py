"""PyTorch twin of :mod:`jaxreg.activations`: the same names, arguments and conventions.

Built on ``torch.nn.functional``; only ``swish`` with a slope (torch has ``F.silu``
alone) and ``swiglu`` (no torch function) are written from torch primitives.
``prelu`` takes its channels on ``axis`` (the *last* one by default, like jaxreg);
torch's ``F.prelu`` wants them on dim 1, so the axis is moved here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "elu",
    "glu",
    "leaky_relu",
    "prelu",
    "relu",
    "sigmoid",
    "silu",
    "swiglu",
    "swish",
    "tanh",
]


def _halves(x: torch.Tensor, axis: int, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and second halves of ``x`` along ``axis``; the size must be even."""
    if x.shape[axis] % 2:
        raise ValueError(
            f"{fn}: `x` must have an even size along `axis={axis}` to split it in two halves, "
            f"got shape {tuple(x.shape)}."
        )
    a, b = torch.chunk(x, 2, dim=axis)
    return a, b


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.sigmoid` (``torch.sigmoid``)."""
    return torch.sigmoid(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.tanh` (``torch.tanh``)."""
    return torch.tanh(x)


def relu(x: torch.Tensor) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.relu` (``F.relu``; derivative 0 at 0)."""
    return F.relu(x)


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.leaky_relu` (``F.leaky_relu``; slope at 0)."""
    return F.leaky_relu(x, float(negative_slope))


def prelu(x: torch.Tensor, weight: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.prelu`: channels on ``axis`` of ``x`` (default last).

    ``F.prelu`` reads the channels from dim 1, so for a per-channel ``weight`` the
    channel axis is moved there (``axis=1`` is ``F.prelu`` itself); a 1-D ``x`` is
    viewed as ``[1, C]``.

    Args:
      x: ``[..., C, ...]`` with the channels on ``axis``.
      weight: a scalar, shape ``[1]`` or ``[C]``.
      axis: the channel axis of ``x``.
    """
    weight = torch.as_tensor(weight, dtype=x.dtype, device=x.device)
    if weight.numel() == 1:
        return F.prelu(x, weight.reshape(1))
    if x.ndim == 1:
        return F.prelu(x.reshape(1, -1), weight.reshape(-1)).reshape(x.shape)
    moved = x.movedim(axis, 1)
    return F.prelu(moved, weight.reshape(-1)).movedim(1, axis)


def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.elu` (``F.elu``; derivative ``alpha`` at 0)."""
    return F.elu(x, float(alpha))


def glu(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.glu` (``F.glu``: ``a * sigmoid(b)`` of the two halves)."""
    _halves(x, axis, "glu")
    return F.glu(x, dim=axis)


def swish(x: torch.Tensor, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.swish`: ``x * sigmoid(beta * x)`` (torch has no slope)."""
    return x * torch.sigmoid(beta * x)


def silu(x: torch.Tensor) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.silu` (``F.silu``)."""
    return F.silu(x)


def swiglu(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activations.swiglu`: ``silu(a) * b`` of the two halves of ``axis``."""
    a, b = _halves(x, axis, "swiglu")
    return F.silu(a) * b
