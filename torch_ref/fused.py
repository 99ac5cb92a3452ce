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


class _Options(NamedTuple):
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    num_valid_classes: int | None
    reduction: str
    return_aux: bool
    out_dtype: torch.dtype


# --- checks (jaxreg's messages) -------------------------------------------------------


def _check_options(dtype: torch.dtype, **kw: Any) -> _Options:
    _numerics.check_reduction(kw["reduction"])
    _numerics.check_in_unit_interval(kw["label_smoothing"], "label_smoothing")
    _numerics.check_nonnegative(kw["z_loss"], "z_loss")
    if not isinstance(kw["ignore_index"], int):
        raise TypeError(f"`ignore_index` must be a Python int, got {kw['ignore_index']!r}.")
    if kw["softcap"] is not None and not float(kw["softcap"]) > 0:
        raise ValueError(f"`softcap` must be positive (or None: no cap), got {kw['softcap']}.")
    valid = kw["num_valid_classes"]
    if valid is not None and (not isinstance(valid, int) or valid < 1):
        raise ValueError(f"`num_valid_classes` must be a positive int or None, got {valid!r}.")
    out_dtype = dtype if kw["out_dtype"] is None else kw["out_dtype"]
    if not out_dtype.is_floating_point:
        raise TypeError(f"`out_dtype` must be a floating dtype, got {out_dtype}.")
    return _Options(
        kw["ignore_index"],
        float(kw["label_smoothing"]),
        float(kw["z_loss"]),
        None if kw["softcap"] is None else float(kw["softcap"]),
        valid,
        kw["reduction"],
        bool(kw["return_aux"]),
        out_dtype,
    )


def _check_targets(labels: Any, batch_shape: torch.Size, columns: int, what: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.is_floating_point():
        if labels.shape != (*batch_shape, columns):
            raise ValueError(
                f"floating `labels` are probabilities and must have shape "
                f"{(*batch_shape, columns)}, one per column of `{what}`, got "
                f"{tuple(labels.shape)}."
            )
        return labels
    if labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"`labels` must be an integer array of class ids, got {labels.dtype}.")
    if labels.shape != batch_shape:
        raise ValueError(
            f"`labels` must have the batch shape of `{what}`, {tuple(batch_shape)}, got "
            f"{tuple(labels.shape)}: one class id per row of `{what}`."
        )
    return labels.long()


def _check_linear(
    hidden: Any, weight: Any, bias: Any, names: tuple[str, str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
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
    return hidden, weight, bias


def _check_row_weights(weight: Any, token_weight: Any, classes: int, batch_shape: torch.Size):
    if weight is not None:
        weight = _numerics.as_float_array(weight, "weight")
        if weight.shape != (classes,):
            raise ValueError(
                f"`weight` (class weights) must have shape ({classes},), one per class, got "
                f"{tuple(weight.shape)}."
            )
    if token_weight is not None:
        token_weight = _numerics.as_float_array(token_weight, "token_weight")
        if token_weight.shape != batch_shape:
            raise ValueError(
                f"`token_weight` must have the batch shape {tuple(batch_shape)}, one weight "
                f"per token, got {tuple(token_weight.shape)}."
            )
    return weight, token_weight


def _check_soft_options(labels: torch.Tensor, ignore_index: int) -> None:
    if labels.is_floating_point() and ignore_index != -100:
        raise ValueError(
            "`ignore_index` is not supported with probability labels (as in torch); give "
            "the rows to skip a `token_weight` of 0 instead, or use integer labels."
        )


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
    """All-reduce (sum) forward, identity backward (Megatron's ``g`` operator)."""

    @staticmethod
    def forward(ctx, x, group):
        x = x.clone()
        torch.distributed.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _all_reduce(x: torch.Tensor, op: Any, group: Any) -> torch.Tensor:
    x = x.detach().clone()
    torch.distributed.all_reduce(x, op=op, group=group)
    return x


# --- the loss from per-row statistics (jaxreg's arithmetic) ---------------------------


def _local_stats(z, labels, target, u, opts, limit, with_sum):
    """``(lse, picked, wsum, max, argmax)`` of this shard's logits ``z [N, V/n]`` over its
    class columns (``limit``: how many; None: all), with autograd."""
    s = z if opts.softcap is None else opts.softcap * torch.tanh(z / opts.softcap)
    cols = torch.arange(z.shape[1], device=z.device)
    counted = None if limit is None else (cols < limit)[None, :]
    masked = s if counted is None else s.masked_fill(~counted, -torch.inf)
    if counted is not None and not bool(counted.any()):
        # A shard of padding: lse -inf, no gradient (logsumexp's would be NaN).
        lse = torch.full_like(s[:, 0], -torch.inf).detach()
    else:
        lse = torch.logsumexp(masked, dim=1)
    if labels is not None:
        picked = torch.where(cols[None, :] == labels[:, None], s, 0.0).sum(dim=1)
    else:
        q = target.to(s.dtype) if u is None else target.to(s.dtype) * u
        qs = q * torch.where((q == 0) & (s == -torch.inf), 0.0, s)
        picked = (qs if counted is None else torch.where(counted, qs, 0.0)).sum(dim=1)
    wsum = None
    if with_sum:
        us = s if u is None else u * s
        wsum = (us if counted is None else torch.where(counted, us, 0.0)).sum(dim=1)
    top, first = masked.detach().max(dim=1)
    return lse, picked, wsum, top, first


def _rows(lse, picked, wsum, labels, mass, weight, token_weight, opts, classes):
    """``(loss, z-loss term, valid rows)`` reduced: jaxreg's ``_rows``."""
    eps = opts.label_smoothing
    if labels is None:
        valid = torch.ones_like(lse, dtype=torch.bool)
        base, row_weight = lse * mass - picked, torch.ones_like(lse)
    else:
        valid = labels != opts.ignore_index
        safe = torch.where(valid, labels, 0)
        row_weight = torch.ones_like(lse) if weight is None else weight.to(lse.dtype)[safe]
        base = row_weight * (lse - picked)
    loss = (1.0 - eps) * base
    if eps:
        total = float(classes) if weight is None else weight.to(lse.dtype).sum()
        loss = loss + (eps / classes) * (total * lse - wsum)
    token = torch.ones_like(lse)
    if token_weight is not None:
        token = token_weight.reshape(lse.shape).to(lse.dtype)
        valid = valid & (token != 0)
        loss, row_weight = token * loss, token * row_weight
    loss = torch.where(valid, loss, 0.0)
    z_term = torch.zeros_like(lse)
    if opts.z_loss:
        z_term = torch.where(valid, opts.z_loss * token * lse * lse, 0.0)
    if opts.reduction == "sum":
        loss, z_term = loss.sum(), z_term.sum()
    elif opts.reduction == "mean":
        if bool(valid.any()):  # else 0 with gradient 0 (torch: 0/0 = NaN)
            loss = loss.sum() / torch.where(valid, row_weight, 0.0).sum()
            z_term = z_term.sum() / torch.where(valid, token, 0.0).sum()
        else:
            loss, z_term = loss.sum() * 0.0, z_term.sum() * 0.0
    return loss + z_term, z_term, valid


def _head_loss(z, labels, weight, token_weight, opts, batch_shape, group, sharded):
    """The loss (and aux) from this shard's logits ``z [N, V/n]``: statistics, combined
    over the process group when there is one, then jaxreg's arithmetic."""
    rank, shards = _group_rank_and_size(group) if sharded else (0, 1)
    local = z.shape[1]
    offset, total = rank * local, local * shards
    classes = total if opts.num_valid_classes is None else opts.num_valid_classes
    if classes > total:
        raise ValueError(f"`num_valid_classes`={classes} exceeds the {total} columns.")
    weight, token_weight = _check_row_weights(weight, token_weight, classes, batch_shape)
    n = z.shape[0]
    soft = labels.is_floating_point()
    labels = labels.reshape(n, -1) if soft else labels.reshape(n)
    if not soft:
        _numerics.check_class_ids(labels, classes, opts.ignore_index)
    limit = None if classes == total else classes - offset
    u = None
    if weight is not None:
        u = torch.cat([weight.to(z.dtype), weight.new_zeros(total - classes, dtype=z.dtype)])
        u = u[offset : offset + local][None, :]
    local_labels = None if soft else labels - offset
    smoothing = opts.label_smoothing != 0
    lse, picked, wsum, top, first = _local_stats(
        z,
        local_labels,
        labels if soft else None,
        u if (smoothing or soft) else None,
        opts,
        limit,
        smoothing,
    )
    first = first + offset
    mass = None
    if soft:
        t = labels.to(z.dtype) if u is None else labels.to(z.dtype) * u
        cols = torch.arange(local, device=z.device)[None, :]
        mass = (t if limit is None else torch.where(cols < limit, t, 0.0)).sum(dim=1)
    if shards > 1:
        dist = torch.distributed
        m = _all_reduce(lse, dist.ReduceOp.MAX, group)
        parts = [torch.exp(lse - m), picked] + [x for x in (mass, wsum) if x is not None]
        summed = _SumOverShards.apply(torch.stack(parts), group)
        lse, picked = m + torch.log(summed[0]), summed[1]
        rest = list(summed[2:])
        mass = rest.pop(0) if mass is not None else None
        wsum = rest.pop(0) if wsum is not None else None
        best = _all_reduce(top, dist.ReduceOp.MAX, group)
        first = _all_reduce(
            torch.where(top == best, first, torch.iinfo(torch.int64).max), dist.ReduceOp.MIN, group
        )
    loss, z_term, valid = _rows(
        lse, picked, wsum, None if soft else labels, mass, weight, token_weight, opts, classes
    )
    if opts.reduction == "none":
        loss, z_term = loss.reshape(batch_shape), z_term.reshape(batch_shape)
    loss = loss.to(opts.out_dtype)
    if not opts.return_aux:
        return loss
    answer = labels
    if soft:
        # (single shard: the target's argmax over the classes)
        answer = (
            labels[:, :classes].argmax(dim=1)
            if shards == 1
            else _soft_answer(labels, limit, offset, group)
        )
    correct = (valid & (first == answer)).sum().to(torch.int32)
    aux = CrossEntropyAux(
        lse.reshape(batch_shape).to(opts.out_dtype), z_term.to(opts.out_dtype), correct
    )
    return loss, aux


def _soft_answer(target, limit, offset, group):
    """The global argmax of a sharded probability target."""
    dist = torch.distributed
    cols = torch.arange(target.shape[1], device=target.device)[None, :]
    t = target if limit is None else target.masked_fill(cols >= limit, -torch.inf)
    top, first = t.max(dim=1)
    best = _all_reduce(top, dist.ReduceOp.MAX, group)
    index = torch.where(top == best, first + offset, torch.iinfo(torch.int64).max)
    return _all_reduce(index, dist.ReduceOp.MIN, group)


def _torch_supports(opts: _Options, token_weight: Any) -> bool:
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
    hidden, linear_weight, bias = _check_linear(
        hidden, linear_weight, bias, ("linear_weight", "bias")
    )
    opts = _check_options(
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
    labels = _check_targets(labels, hidden.shape[:-1], linear_weight.shape[1], "hidden")
    _check_soft_options(labels, ignore_index)
    if _torch_supports(opts, token_weight):
        weight, _ = _check_row_weights(weight, None, linear_weight.shape[1], hidden.shape[:-1])
        return _f_linear_cross_entropy(hidden, linear_weight, labels, bias, weight, opts)
    acc = _numerics.compute_dtype(hidden.dtype)
    z = hidden.reshape(-1, hidden.shape[-1]).to(acc) @ linear_weight.to(acc)
    z = z if bias is None else z + bias.to(acc)
    return _head_loss(z, labels, weight, token_weight, opts, hidden.shape[:-1], None, False)


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
    hidden, weight_shard, bias_shard = _check_linear(
        hidden, weight_shard, bias_shard, ("weight_shard", "bias_shard")
    )
    opts = _check_options(
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
    labels = _check_targets(labels, hidden.shape[:-1], weight_shard.shape[1], "hidden")
    _check_soft_options(labels, ignore_index)
    acc = _numerics.compute_dtype(hidden.dtype)
    h = hidden.reshape(-1, hidden.shape[-1]).to(acc)
    if _group_rank_and_size(axis_name)[1] > 1:
        h = _CopyToShards.apply(h, axis_name)
    z = h @ weight_shard.to(acc)
    z = z if bias_shard is None else z + bias_shard.to(acc)
    return _head_loss(z, labels, weight, token_weight, opts, hidden.shape[:-1], axis_name, True)


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
    opts = _check_options(
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
    labels = _check_targets(labels, batch_shape, logits_shard.shape[-1], "logits_shard")
    _check_soft_options(labels, ignore_index)
    z = _numerics.upcast(logits_shard).reshape(-1, logits_shard.shape[-1])
    return _head_loss(z, labels, weight, token_weight, opts, batch_shape, axis_name, True)
