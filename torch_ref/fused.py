"""PyTorch twin of :mod:`jaxreg.fused`: linear cross-entropy and vocab-parallel CE.

:func:`fused_linear_cross_entropy` is torch 2.13's own ``F.linear_cross_entropy`` wherever
torch supports the options (class ``weight``, ``ignore_index``, label smoothing,
probability targets, bias): its chunked path (``options=LinearCrossEntropyOptions()``,
batch chunks, no ``[N, V]`` logits) for integer targets without smoothing, its reference
path otherwise (torch falls back to full logits there too). torch has no z-loss, no
soft-capping, no token weights, no padded vocabulary and no auxiliary outputs: with any
of them the loss is the straightforward one, full logits and then the formula, the
same arithmetic as jaxreg's (per-row statistics, then the reduction).

jaxreg's conventions are kept: every label ignored gives 0 with gradient 0 (torch:
NaN), bf16/fp16 inputs are multiplied and reduced in float32 and the loss returned in
``out_dtype`` (default: ``hidden``'s dtype).

The vocab-parallel functions use ``torch.distributed`` as Megatron-LM does: one
all-reduce of the row maxima (``MAX``) and one of the stacked sums (``SUM``). Their
``axis_name`` is a process group (``None``: the default group), where jaxreg's is a
mesh axis; without an initialized process group they run as a single shard.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from torch_ref import _numerics
from torch_ref._fused_checks import (
    Options,
    check_linear,
    check_options,
    check_row_weights,
    check_soft_options,
    check_targets,
)
from torch_ref._fused_loss import CopyToShards, group_rank_and_size, head_loss

__all__ = [
    "CrossEntropyAux",
    "fused_linear_cross_entropy",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_fused_linear_cross_entropy",
]


class CrossEntropyAux(NamedTuple):
    """Mirror of :class:`jaxreg.fused.CrossEntropyAux`: per-token logsumexp, the z-loss
    term (reduced like the loss), and the ``int32`` count of correct argmax predictions."""

    logsumexp: torch.Tensor
    z_loss: torch.Tensor
    num_correct: torch.Tensor


def _torch_supports(opts: Options, token_weight: Any) -> bool:
    """Whether ``F.linear_cross_entropy`` has every option asked for."""
    return (
        token_weight is None
        and opts.z_loss == 0
        and opts.softcap is None
        and opts.num_valid_classes is None
        and not opts.return_aux
    )


def _f_linear_cross_entropy(hidden, linear_weight, labels, bias, weight, opts):
    """torch's own ``F.linear_cross_entropy`` in the compute dtype; its chunked path where
    it has one (integer targets, no smoothing)."""
    acc = _numerics.compute_dtype(hidden.dtype)
    batch_shape = hidden.shape[:-1]
    h = hidden.reshape(-1, hidden.shape[-1]).to(acc)
    soft = labels.is_floating_point()
    y = labels.reshape(h.shape[0], -1).to(acc) if soft else labels.reshape(-1)
    if not soft:
        _numerics.check_class_ids(y, linear_weight.shape[1], opts.ignore_index)
    chunked = not soft and opts.label_smoothing == 0
    options = torch.nn.LinearCrossEntropyOptions() if chunked else None

    def loss(reduction):
        return F.linear_cross_entropy(
            h,
            linear_weight.to(acc).T,
            y,
            linear_bias=None if bias is None else bias.to(acc),
            weight=None if weight is None else weight.to(acc),
            reduction=reduction,
            ignore_index=None if soft else opts.ignore_index,
            label_smoothing=opts.label_smoothing,
            options=options,
        )

    no_rows = (h.shape[0] == 0) if soft else not bool((y != opts.ignore_index).any())
    if opts.reduction == "mean" and no_rows:
        out = loss("sum") * 0.0  # every target ignored: 0 with gradient 0 (torch: NaN)
    else:
        out = loss(opts.reduction)
    out = out.reshape(batch_shape) if opts.reduction == "none" else out
    return out.to(opts.out_dtype)


def _result(loss: torch.Tensor, aux: tuple | None) -> Any:
    """``loss``, or ``(loss, CrossEntropyAux)`` when the aux was asked for."""
    return loss if aux is None else (loss, CrossEntropyAux(*aux))


# --- public ---------------------------------------------------------------------------


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    linear_weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    token_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_valid_classes: int | None = None,
    reduction: str = "mean",
    return_aux: bool = False,
    out_dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> Any:
    r"""Cross-entropy of ``hidden @ linear_weight + bias``: torch's ``F.linear_cross_entropy``.

    Mirrors :func:`jaxreg.fused_linear_cross_entropy`, same arguments (``linear_weight``
    is ``(D, V)``, the transpose of torch's). With only the options torch has it calls
    ``F.linear_cross_entropy`` (chunked for integer targets without smoothing); otherwise
    the full logits and jaxreg's formula:

    .. math::
        \ell_i = \tau_i\Big[(1-\varepsilon)\, w_{y}\,(L_i - s_{iy})
                 + \frac{\varepsilon}{C}\sum_{c<C} w_c\,(L_i - s_{ic})\Big]
                 + \zeta\,\tau_i L_i^2.

    ``chunk_size`` is accepted for jaxreg's signature and not used (torch chooses its
    batch chunks). Every label ignored gives 0 with gradient 0 (torch: NaN).

    Example:
      >>> hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> weight = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.0, 2.0]])
      >>> loss = fused_linear_cross_entropy(hidden, weight, torch.tensor([0, 2, -100]))
      >>> print(round(loss.item(), 4))
      0.357
    """
    hidden, linear_weight, bias = check_linear(
        hidden, linear_weight, bias, ("linear_weight", "bias")
    )
    opts = check_options(
        hidden.dtype,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_valid_classes=num_valid_classes,
        reduction=reduction,
        return_aux=return_aux,
        out_dtype=out_dtype,
    )
    labels = check_targets(labels, hidden.shape[:-1], linear_weight.shape[1], "hidden")
    check_soft_options(labels, ignore_index)
    if _torch_supports(opts, token_weight):
        weight, _ = check_row_weights(weight, None, linear_weight.shape[1], hidden.shape[:-1])
        return _f_linear_cross_entropy(hidden, linear_weight, labels, bias, weight, opts)
    acc = _numerics.compute_dtype(hidden.dtype)
    z = hidden.reshape(-1, hidden.shape[-1]).to(acc) @ linear_weight.to(acc)
    z = z if bias is None else z + bias.to(acc)
    return _result(
        *head_loss(z, labels, weight, token_weight, opts, hidden.shape[:-1], None, False)
    )


def vocab_parallel_fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight_shard: torch.Tensor,
    labels: torch.Tensor,
    *,
    axis_name: Any = None,
    bias_shard: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    token_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_valid_classes: int | None = None,
    reduction: str = "mean",
    return_aux: bool = False,
    out_dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
) -> Any:
    """:func:`fused_linear_cross_entropy` with the weight's columns split over ranks.

    Mirrors :func:`jaxreg.vocab_parallel_fused_linear_cross_entropy`. Rank ``r`` of the
    process group ``axis_name`` (``None``: the default group; no initialized group: one
    shard) holds columns ``[r·V/n, (r+1)·V/n)`` of the weight and the whole ``hidden``;
    the hidden gradient is all-reduced in the backward pass. The local logits are built
    whole (``chunk_size`` is not used).

    Example:
      >>> hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
      >>> weight = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.0, 2.0]])
      >>> loss = vocab_parallel_fused_linear_cross_entropy(hidden, weight, torch.tensor([0, 2]))
      >>> print(round(loss.item(), 4))
      0.357
    """
    hidden, weight_shard, bias_shard = check_linear(
        hidden, weight_shard, bias_shard, ("weight_shard", "bias_shard")
    )
    opts = check_options(
        hidden.dtype,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_valid_classes=num_valid_classes,
        reduction=reduction,
        return_aux=return_aux,
        out_dtype=out_dtype,
    )
    labels = check_targets(labels, hidden.shape[:-1], weight_shard.shape[1], "hidden")
    check_soft_options(labels, ignore_index)
    acc = _numerics.compute_dtype(hidden.dtype)
    h = hidden.reshape(-1, hidden.shape[-1]).to(acc)
    if group_rank_and_size(axis_name)[1] > 1:
        h = CopyToShards.apply(h, axis_name)
    z = h @ weight_shard.to(acc)
    z = z if bias_shard is None else z + bias_shard.to(acc)
    return _result(
        *head_loss(z, labels, weight, token_weight, opts, hidden.shape[:-1], axis_name, True)
    )


def vocab_parallel_cross_entropy(
    logits_shard: torch.Tensor,
    labels: torch.Tensor,
    *,
    axis_name: Any = None,
    weight: torch.Tensor | None = None,
    token_weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    num_valid_classes: int | None = None,
    reduction: str = "mean",
    return_aux: bool = False,
    out_dtype: torch.dtype | None = None,
) -> Any:
    """Cross-entropy of logits whose class axis is split over the ranks of a process group.

    Mirrors :func:`jaxreg.vocab_parallel_cross_entropy` (Megatron-LM's vocab-parallel
    cross-entropy): one ``MAX`` all-reduce of the row maxima and one ``SUM`` all-reduce
    of the stacked statistics, whose backward pass needs no communication. Without an
    initialized process group it is the single-device loss with jaxreg's conventions.

    Example:
      >>> logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 0.5, 3.0]])
      >>> print(round(vocab_parallel_cross_entropy(logits, torch.tensor([2, 0])).item(), 4))
      2.0298
    """
    logits_shard = _numerics.as_float_array(logits_shard, "logits_shard")
    if logits_shard.ndim < 1:
        raise ValueError("`logits_shard` must have shape [..., V / n], got a scalar.")
    opts = check_options(
        logits_shard.dtype,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        num_valid_classes=num_valid_classes,
        reduction=reduction,
        return_aux=return_aux,
        out_dtype=out_dtype,
    )
    batch_shape = logits_shard.shape[:-1]
    labels = check_targets(labels, batch_shape, logits_shard.shape[-1], "logits_shard")
    check_soft_options(labels, ignore_index)
    z = _numerics.upcast(logits_shard).reshape(-1, logits_shard.shape[-1])
    return _result(*head_loss(z, labels, weight, token_weight, opts, batch_shape, axis_name, True))
