"""The loss of :mod:`torch_ref.fused` from a shard's logits (private; mirror of
``jaxreg._fused_loss``).

:func:`head_loss` takes this rank's logits ``z [N, V/n]`` (the whole logits on one
device), computes the per-row statistics of jaxreg's kernel (logsumexp, the label's
logit, the weighted sum for label smoothing, the row maximum and its first index) with
autograd, combines them over the process group as Megatron-LM does (one ``MAX``
all-reduce of the row maxima, one ``SUM`` all-reduce of the stacked sums, through the
autograd functions :class:`CopyToShards` and :class:`SumOverShards`, Megatron's ``f``
and ``g``), then applies jaxreg's arithmetic: class weights and torch's weighted mean,
label smoothing, probability targets, token weights, the z-loss and the auxiliary
outputs. torch runs eagerly: nothing here works around a compiler.
"""

from __future__ import annotations

from typing import Any

import torch

from torch_ref import _numerics
from torch_ref._fused_checks import Options, check_row_weights

__all__ = ["CopyToShards", "SumOverShards", "group_rank_and_size", "head_loss"]


# --- torch.distributed ----------------------------------------------------------------


def group_rank_and_size(group: Any) -> tuple[int, int]:
    """This process's rank in ``group`` and the group's size; ``(0, 1)`` without one."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


class CopyToShards(torch.autograd.Function):
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


class SumOverShards(torch.autograd.Function):
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


def head_loss(z, labels, weight, token_weight, opts: Options, batch_shape, group, sharded):
    """``(loss, aux)`` from this shard's logits ``z [N, V/n]``: statistics, combined over
    the process group when there is one, then jaxreg's arithmetic.

    ``aux`` is None without ``opts.return_aux``, else the fields of
    :class:`torch_ref.fused.CrossEntropyAux`: ``(logsumexp, z-loss term, number correct)``.
    """
    rank, shards = group_rank_and_size(group) if sharded else (0, 1)
    local = z.shape[1]
    offset, total = rank * local, local * shards
    classes = total if opts.num_valid_classes is None else opts.num_valid_classes
    if classes > total:
        raise ValueError(f"`num_valid_classes`={classes} exceeds the {total} columns.")
    weight, token_weight = check_row_weights(weight, token_weight, classes, batch_shape)
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
        lse, picked, mass, wsum, first = _combine_shards(lse, picked, mass, wsum, top, first, group)
    loss, z_term, valid = _rows(
        lse, picked, wsum, None if soft else labels, mass, weight, token_weight, opts, classes
    )
    if opts.reduction == "none":
        loss, z_term = loss.reshape(batch_shape), z_term.reshape(batch_shape)
    loss = loss.to(opts.out_dtype)
    if not opts.return_aux:
        return loss, None
    answer = labels
    if soft:
        # (single shard: the target's argmax over the classes)
        answer = (
            labels[:, :classes].argmax(dim=1)
            if shards == 1
            else _soft_answer(labels, limit, offset, group)
        )
    correct = (valid & (first == answer)).sum().to(torch.int32)
    return loss, (lse.reshape(batch_shape).to(opts.out_dtype), z_term.to(opts.out_dtype), correct)


def _soft_answer(target, limit, offset, group):
    """The global argmax of a sharded probability target."""
    dist = torch.distributed
    cols = torch.arange(target.shape[1], device=target.device)[None, :]
    t = target if limit is None else target.masked_fill(cols >= limit, -torch.inf)
    top, first = t.max(dim=1)
    best = _all_reduce(top, dist.ReduceOp.MAX, group)
    index = torch.where(top == best, first + offset, torch.iinfo(torch.int64).max)
    return _all_reduce(index, dist.ReduceOp.MIN, group)


def _combine_shards(lse, picked, mass, wsum, top, first, group):
    """The statistics of every shard: the global logsumexp (from the shards' maxima and
    sums of exponentials), the sums, and the first index of the global row maximum."""
    dist = torch.distributed
    m = _all_reduce(lse, dist.ReduceOp.MAX, group)
    parts = [torch.exp(lse - m), picked] + [x for x in (mass, wsum) if x is not None]
    summed = SumOverShards.apply(torch.stack(parts), group)
    lse, picked = m + torch.log(summed[0]), summed[1]
    rest = list(summed[2:])
    mass = rest.pop(0) if mass is not None else None
    wsum = rest.pop(0) if wsum is not None else None
    best = _all_reduce(top, dist.ReduceOp.MAX, group)
    first = _all_reduce(
        torch.where(top == best, first, torch.iinfo(torch.int64).max), dist.ReduceOp.MIN, group
    )
    return lse, picked, mass, wsum, first
