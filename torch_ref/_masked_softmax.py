"""The softmax machinery of :mod:`torch_ref.information` (private): ``where=`` masks and
``logsumexp``'s derivative rule.

torch has no ``where=``: :func:`broadcast_where` broadcasts a boolean mask to the input (with
jaxreg's errors), and :func:`masked_logits` sets masked entries to ``-inf`` and holds the
rows with no entry left at 0, where torch's softmax would be NaN. :class:`LogSumExp` is
``torch.logsumexp`` whose derivative is the softmax ``exp(x - max) / Σ exp(x - max)``
(:func:`softmax_weights`): 0 on an all ``-inf`` row (torch: NaN) and ``[½, ½]`` at
``[1e30, 1e30]`` (torch: ``[1, 1]``, from ``exp(x - lse)``), as jaxreg's.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LogSumExp", "broadcast_where", "masked_logits", "softmax_weights"]


def broadcast_where(where: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A boolean ``where`` mask broadcast to ``x``'s shape."""
    if where is None:
        return None
    where = torch.as_tensor(where, device=x.device)
    if where.dtype != torch.bool:
        raise TypeError(f"`where` must be a boolean mask, got dtype {where.dtype}.")
    try:
        return torch.broadcast_to(where, x.shape)
    except RuntimeError:
        raise ValueError(
            f"`where` of shape {tuple(where.shape)} does not broadcast to the input's "
            f"shape {tuple(x.shape)}."
        ) from None


def masked_logits(
    x: torch.Tensor, mask: torch.Tensor | None, axis: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with masked entries at ``-inf`` and empty rows at 0 (held constant).

    Also returns the non-empty rows: those with an entry that is neither masked nor
    ``-inf``. On the others torch's softmax is NaN; jaxreg's is 0.
    """
    if mask is not None:
        x = x.masked_fill(~mask, -math.inf)
    rows = (x > -math.inf).any(dim=axis, keepdim=True)
    return x.masked_fill(~rows, 0.0), rows


def softmax_weights(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """``exp(x - max) / Σ exp(x - max)`` over ``axes``; 0 on rows of ``-inf`` only."""
    m = torch.amax(x, dim=axes, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(x - m)
    s = e.sum(dim=axes, keepdim=True)
    return e / torch.where(s > 0, s, torch.ones_like(s))


class LogSumExp(torch.autograd.Function):
    """``torch.logsumexp`` with the softmax weights as its derivative (differentiable
    again, since the backward is written in differentiable torch operations)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, axes: tuple[int, ...], keepdims: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.axes, ctx.keepdims = axes, keepdims
        return torch.logsumexp(x, dim=axes, keepdim=keepdims)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        if not ctx.keepdims:
            for a in ctx.axes:
                grad = grad.unsqueeze(a)
        return grad * softmax_weights(x, ctx.axes), None, None
