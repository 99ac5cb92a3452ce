"""PyTorch twin of :mod:`jaxreg.fused`: chunked linear cross-entropy and vocab-parallel CE.

torch has no fused linear cross-entropy, so :func:`fused_linear_cross_entropy` is built
from torch primitives: a ``torch.autograd.Function`` that walks over the vocabulary in
chunks with an online logsumexp, saves only the per-row logsumexp, and recomputes each
chunk's logits in the backward pass. Its value and gradients equal
``F.cross_entropy(hidden @ weight + bias, labels, ...)`` (with jaxreg's conventions: every
label ignored gives 0 with gradient 0, bf16/fp16 reduced in float32).

The vocab-parallel functions use ``torch.distributed`` as Megatron-LM does: one
all-reduce of the row maxima (``MAX``) and one of the stacked sums (``SUM``). Their
``axis_name`` is a process group (``None``: the default group), where jaxreg's is a
mesh axis; without an initialized process group they run as a single shard.
"""

from __future__ import annotations

from typing import Any

import torch

from torch_ref import _numerics

__all__ = [
    "fused_linear_cross_entropy",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_fused_linear_cross_entropy",
]

_REDUCTIONS = ("none", "mean", "sum")
# The same defaults as jaxreg: about this many logits per chunk (cache-sized on a CPU,
# larger on an accelerator), a multiple of 128.
_CHUNK_ELEMENTS = {"cpu": 2**20}
_CHUNK_ELEMENTS_ACCELERATOR = 2**23
_CHUNK_MULTIPLE = 128


# --- checks ---------------------------------------------------------------------------


def _check_options(ignore_index: int, label_smoothing: float, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {_REDUCTIONS}, got {reduction!r}.")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"`label_smoothing` must lie in [0, 1], got {float(label_smoothing)}.")
    if not isinstance(ignore_index, int):
        raise TypeError(f"`ignore_index` must be a Python int, got {type(ignore_index).__name__}.")


def _check_labels(labels: Any, batch_shape: torch.Size, what: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(
            f"`labels` must be an integer array of class ids, got dtype {labels.dtype}."
        )
    if labels.shape != batch_shape:
        raise ValueError(
            f"`labels` must have the batch shape of `{what}`, {tuple(batch_shape)}, got "
            f"{tuple(labels.shape)}: one class id per row of `{what}`."
        )
    return labels.long()


def _check_linear(
    hidden: Any, weight: Any, bias: Any, labels: Any, names: tuple[str, str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The same checks and messages as jaxreg's."""
    w_name, b_name = names
    hidden = _numerics.as_float_array(hidden, "hidden")
    weight = _numerics.as_float_array(weight, w_name)
    if hidden.ndim < 1:
        raise ValueError("`hidden` must have shape [..., D], got a scalar.")
    if weight.ndim != 2 or weight.shape[1] == 0:
        raise ValueError(
            f"`{w_name}` must have shape (D, V) with V >= 1, got {tuple(weight.shape)}."
        )
    if weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"`hidden` has D={hidden.shape[-1]} features (shape {tuple(hidden.shape)}) but "
            f"`{w_name}` has shape {tuple(weight.shape)}; it must be (D, V) = (in_features, "
            f"vocab). A torch nn.Linear weight is (V, D): pass its transpose."
        )
    labels = _check_labels(labels, hidden.shape[:-1], "hidden")
    dtypes = {"hidden": hidden.dtype, w_name: weight.dtype}
    if bias is not None:
        bias = _numerics.as_float_array(bias, b_name)
        if bias.shape != (weight.shape[1],):
            raise ValueError(
                f"`{b_name}` must have shape ({weight.shape[1]},), one entry per column of "
                f"`{w_name}` {tuple(weight.shape)}, got {tuple(bias.shape)}."
            )
        dtypes[b_name] = bias.dtype
    if len(set(dtypes.values())) > 1:
        named = ", ".join(f"`{n}` {d}" for n, d in dtypes.items())
        raise TypeError(f"{named}: these must share one dtype; cast them to one.")
    return hidden, weight, bias, labels


def _chunk_size(chunk_size: int | None, hidden: torch.Tensor, vocab: int) -> int:
    if chunk_size is None:
        elements = _CHUNK_ELEMENTS.get(hidden.device.type, _CHUNK_ELEMENTS_ACCELERATOR)
        chunk_size = elements // max(hidden.shape[0], 1)
        chunk_size = max(_CHUNK_MULTIPLE, chunk_size // _CHUNK_MULTIPLE * _CHUNK_MULTIPLE)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int or None, got {chunk_size!r}.")
    return min(chunk_size, vocab)


# --- the chunked kernel ---------------------------------------------------------------


def _chunk_logits(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, start: int, stop: int
) -> torch.Tensor:
    """``hidden @ weight[:, start:stop] + bias[start:stop]`` in the compute dtype."""
    acc = hidden.dtype
    logits = hidden @ weight[:, start:stop].to(acc)
    if bias is not None:
        logits = logits + bias[start:stop].to(acc)
    return logits


def _hits(labels: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``[N, stop - start]`` mask of each row's label column inside the chunk."""
    cols = torch.arange(start, stop, device=labels.device)
    return cols[None, :] == labels[:, None]


class _ChunkedStats(torch.autograd.Function):
    """Per row of ``z = hidden @ weight + bias``: ``(logsumexp(z), z[label], sum(z))``.

    ``z[label]`` is 0 for labels that are no column of ``weight``; ``sum(z)`` is only
    computed when ``with_sum``. Mirrors jaxreg's ``_chunked_stats``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, chunk_size, with_sum):
        acc = _numerics.compute_dtype(hidden.dtype)
        h = hidden.to(acc)
        n, vocab = h.shape[0], weight.shape[1]
        m = torch.full((n,), -torch.inf, dtype=acc, device=h.device)
        s = torch.zeros_like(m)
        z_label = torch.zeros_like(m)
        z_sum = torch.zeros_like(m)
        for start in range(0, vocab, chunk_size):
            stop = min(start + chunk_size, vocab)
            logits = _chunk_logits(h, weight, bias, start, stop)
            m_new = torch.maximum(m, logits.amax(dim=1))
            # Rescale the old sum to the new maximum: exp(m - m_new) <= 1.
            s = s * torch.exp(m - m_new) + torch.exp(logits - m_new[:, None]).sum(dim=1)
            m = m_new
            z_label = z_label + torch.where(_hits(labels, start, stop), logits, 0.0).sum(dim=1)
            if with_sum:
                z_sum = z_sum + logits.sum(dim=1)
        lse = m + torch.log(s)
        ctx.save_for_backward(hidden, weight, bias, labels, lse)
        ctx.chunk_size, ctx.with_sum = chunk_size, with_sum
        return lse, z_label, z_sum

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lse, g_label, g_sum):
        hidden, weight, bias, labels, lse = ctx.saved_tensors
        acc = lse.dtype
        h = hidden.to(acc)
        vocab = weight.shape[1]
        g_lse, g_label, g_sum = (g.to(acc)[:, None] for g in (g_lse, g_label, g_sum))
        d_hidden = torch.zeros_like(h)
        d_weight = torch.zeros_like(weight)
        d_bias = None if bias is None else torch.zeros_like(bias)
        for start in range(0, vocab, ctx.chunk_size):
            stop = min(start + ctx.chunk_size, vocab)
            logits = _chunk_logits(h, weight, bias, start, stop)
            # d logsumexp / dz = softmax, d z[label] / dz = onehot, d sum(z) / dz = 1.
            d_logits = g_lse * torch.exp(logits - lse[:, None])
            d_logits = d_logits + torch.where(_hits(labels, start, stop), g_label, 0.0)
            if ctx.with_sum:
                d_logits = d_logits + g_sum
            d_weight[:, start:stop] = (h.T @ d_logits).to(weight.dtype)
            d_hidden += d_logits @ weight[:, start:stop].to(acc).T
            if d_bias is not None:
                d_bias[start:stop] = d_logits.sum(dim=0).to(bias.dtype)
        return d_hidden.to(hidden.dtype), d_weight, d_bias, None, None, None


def _loss_from_stats(
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Torch's cross-entropy from the per-row statistics (jaxreg's ``_loss_from_stats``)."""
    lse, z_label, z_sum = stats
    valid = labels != ignore_index
    # jaxreg's error for concrete labels (traced ones give NaN rows there).
    _numerics.check_class_ids(labels, num_classes, ignore_index)
    eps = float(label_smoothing)
    loss = lse - (1.0 - eps) * z_label
    if eps:
        loss = loss - (eps / num_classes) * z_sum
    rows = torch.where(valid, loss, 0.0)
    if reduction == "sum":
        rows = rows.sum()
    elif reduction == "mean":
        # Every label ignored: 0 with gradient 0 (F.cross_entropy gives NaN).
        rows = rows.sum() / valid.sum().clamp(min=1).to(rows.dtype)
    return rows.to(dtype)


# --- torch.distributed ----------------------------------------------------------------


def _group_rank_and_size(group: Any) -> tuple[int, int]:
    """This process's rank in ``group`` and the group's size; ``(0, 1)`` without one."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


class _CopyToShards(torch.autograd.Function):
    """Identity forward, all-reduce of the gradient backward (Megatron's ``f`` operator):
    a tensor that every shard holds whole gets the sum of the shards' partial gradients."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        torch.distributed.all_reduce(grad, group=ctx.group)
        return grad, None


class _SumOverShards(torch.autograd.Function):
    """All-reduce (sum) forward, identity backward (Megatron's ``g`` operator): the sum is
    the same on every shard, and each shard's gradient of it is its own cotangent."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.clone()
        torch.distributed.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _combine_shards(
    stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor], group: Any, with_sum: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full-vocabulary statistics from each shard's: one MAX and one SUM all-reduce."""
    lse, z_label, z_sum = stats
    # The shift cancels in the logsumexp, so it needs no gradient.
    m = lse.detach().clone()
    torch.distributed.all_reduce(m, op=torch.distributed.ReduceOp.MAX, group=group)
    parts = [torch.exp(lse - m), z_label] + ([z_sum] if with_sum else [])
    total = _SumOverShards.apply(torch.stack(parts), group)
    return m + torch.log(total[0]), total[1], total[2] if with_sum else z_sum


# --- public ---------------------------------------------------------------------------


def _fused(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    chunk_size: int | None,
    group: Any,
    sharded: bool,
) -> torch.Tensor:
    batch_shape = labels.shape
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1)
    vocab = weight.shape[1]
    size = _chunk_size(chunk_size, hidden, vocab)
    with_sum = bool(label_smoothing)
    rank, shards = _group_rank_and_size(group) if sharded else (0, 1)
    if shards > 1:
        hidden = _CopyToShards.apply(hidden, group)
    stats = _ChunkedStats.apply(hidden, weight, bias, labels - rank * vocab, size, with_sum)
    if shards > 1:
        stats = _combine_shards(stats, group, with_sum)
    out = _loss_from_stats(
        stats, labels, vocab * shards, ignore_index, label_smoothing, reduction, hidden.dtype
    )
    return out.reshape(batch_shape) if reduction == "none" else out


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Cross-entropy of ``hidden @ weight + bias`` without the ``[N, V]`` logits.

    Mirrors :func:`jaxreg.fused_linear_cross_entropy`; equals
    ``F.cross_entropy(hidden @ weight + bias, labels, ignore_index=..., label_smoothing=...,
    reduction=...)`` with jaxreg's conventions (every label ignored: 0, not NaN).

    .. math::
        \ell_i = \log\sum_{j} e^{z_{ij}} - (1-\varepsilon)\, z_{i y_i}
                 - \frac{\varepsilon}{V}\sum_j z_{ij},
        \qquad z_i = W^\top h_i + b.

    Args:
      hidden: ``[..., D]`` features.
      weight: ``(D, V)``, ``(in_features, vocab)``: the transpose of an ``nn.Linear``
        weight.
      labels: ``[...]`` integer class ids or ``ignore_index``.
      bias: optional ``(V,)``.
      ignore_index, label_smoothing, reduction: as in ``F.cross_entropy``.
      chunk_size: vocab columns per step (``None``: about ``2**20`` logits per chunk on a
        CPU, ``2**23`` on a GPU).

    Returns:
      The loss in ``hidden``'s dtype: a scalar, or ``[...]`` for ``reduction="none"``.

    Example:
      >>> hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> weight = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.0, 2.0]])
      >>> loss = fused_linear_cross_entropy(hidden, weight, torch.tensor([0, 2, -100]))
      >>> print(round(loss.item(), 4))
      0.357
    """
    hidden, weight, bias, labels = _check_linear(hidden, weight, bias, labels, ("weight", "bias"))
    _check_options(ignore_index, label_smoothing, reduction)
    return _fused(
        hidden,
        weight,
        labels,
        bias,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        chunk_size=chunk_size,
        group=None,
        sharded=False,
    )


def vocab_parallel_fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight_shard: torch.Tensor,
    labels: torch.Tensor,
    *,
    axis_name: Any = None,
    bias_shard: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """:func:`fused_linear_cross_entropy` with the weight's columns split over ranks.

    Mirrors :func:`jaxreg.vocab_parallel_fused_linear_cross_entropy`. Rank ``r`` of the
    process group ``axis_name`` (``None``: the default group; no initialized group: one
    shard) holds columns ``[r·V/n, (r+1)·V/n)`` of the weight and the whole ``hidden``;
    the hidden gradient is all-reduced in the backward pass.

    Args:
      hidden: ``[..., D]``, the same on every rank.
      weight_shard: ``(D, V / n)``, this rank's columns.
      labels: ``[...]`` global class ids or ``ignore_index``.
      axis_name: a ``torch.distributed`` process group, or ``None``.
      bias_shard: optional ``(V / n,)``.
      ignore_index, label_smoothing, reduction, chunk_size: as in
        :func:`fused_linear_cross_entropy`.

    Returns:
      The loss, the same on every rank.
    """
    hidden, weight_shard, bias_shard, labels = _check_linear(
        hidden, weight_shard, bias_shard, labels, ("weight_shard", "bias_shard")
    )
    _check_options(ignore_index, label_smoothing, reduction)
    return _fused(
        hidden,
        weight_shard,
        labels,
        bias_shard,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        chunk_size=chunk_size,
        group=axis_name,
        sharded=True,
    )


def vocab_parallel_cross_entropy(
    logits_shard: torch.Tensor,
    labels: torch.Tensor,
    *,
    axis_name: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of logits whose class axis is split over the ranks of a process group.

    Mirrors :func:`jaxreg.vocab_parallel_cross_entropy` (Megatron-LM's vocab-parallel
    cross-entropy): one ``MAX`` all-reduce of the row maxima and one ``SUM`` all-reduce
    of the stacked sums of exponentials, label logits and (with smoothing) logit sums,
    whose backward pass needs no communication. Without an
    initialized process group it is ``F.cross_entropy`` with jaxreg's conventions.

    Args:
      logits_shard: ``[..., V / n]``, this rank's columns of the logits.
      labels: ``[...]`` global class ids or ``ignore_index``.
      axis_name: a ``torch.distributed`` process group, or ``None``.
      ignore_index, label_smoothing, reduction: as in ``F.cross_entropy``.

    Returns:
      The loss in the logits' dtype, the same on every rank.
    """
    logits_shard = _numerics.as_float_array(logits_shard, "logits_shard")
    if logits_shard.ndim < 1:
        raise ValueError("`logits_shard` must have shape [..., V / n], got a scalar.")
    labels = _check_labels(labels, logits_shard.shape[:-1], "logits_shard")
    _check_options(ignore_index, label_smoothing, reduction)
    z = logits_shard.to(_numerics.compute_dtype(logits_shard.dtype))
    local_vocab = z.shape[-1]
    rank, shards = _group_rank_and_size(axis_name)
    with_sum = bool(label_smoothing)
    cols = torch.arange(local_vocab, device=z.device) + rank * local_vocab
    stats = (
        torch.logsumexp(z, dim=-1),
        torch.where(cols == labels[..., None], z, 0.0).sum(dim=-1),
        z.sum(dim=-1) if with_sum else torch.zeros_like(z[..., 0]),
    )
    if shards > 1:
        stats = _combine_shards(stats, axis_name, with_sum)
    return _loss_from_stats(
        stats,
        labels,
        local_vocab * shards,
        ignore_index,
        label_smoothing,
        reduction,
        logits_shard.dtype,
    )
