"""The loss of the fused functions from the kernel's per-row statistics (private).

Whatever computed the statistics (the chunked kernel, or autodiff over given logits in
the vocab-parallel loss), :func:`head_loss` turns them into torch's cross-entropy:
class weights and torch's weighted mean, label smoothing, probability targets, token
weights, PaLM's z-loss, and the auxiliary outputs; for a vocabulary sharded over a mesh
axis it first combines the shards' statistics with one ``pmax`` and one ``psum``
(:func:`_combine_shards`). The weighted mean itself is ``jaxreg._numerics.torch_mean``,
shared with :mod:`jaxreg.losses`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxreg import _numerics
from jaxreg._fused_checks import Options
from jaxreg._fused_kernel import Stats

__all__ = ["Vocab", "head_loss", "local_vocab"]


class Vocab(NamedTuple):
    """This device's columns: ``local`` of them from column ``offset`` of ``total``, of which
    the first ``classes`` are classes (``limit``: the local count below that, or None)."""

    local: int
    offset: Any
    total: int
    classes: int
    limit: jax.Array | None


def _known_zero(x: ArrayLike) -> bool:
    """Whether ``x`` is a concrete zero (then its term is skipped: the same result)."""
    return _numerics.is_concrete(x) and float(np.asarray(x)) == 0.0


def local_vocab(local: int, axis_name: Hashable | None, num_valid_classes: int | None) -> Vocab:
    shards = 1 if axis_name is None else lax.axis_size(axis_name)
    offset = 0 if axis_name is None else lax.axis_index(axis_name).astype(jnp.int32) * local
    total = local * shards
    classes = total if num_valid_classes is None else int(num_valid_classes)
    if classes > total:
        raise ValueError(
            f"`num_valid_classes`={classes} exceeds the {total} columns of the weight (logits)."
        )
    limit = None if classes == total else jnp.asarray(classes - offset, jnp.int32)
    return Vocab(local, offset, total, classes, limit)


def _kernel_inputs(
    labels: jax.Array,
    weight: jax.Array | None,
    softcap: ArrayLike | None,
    vocab: Vocab,
    acc: Any,
) -> tuple[jax.Array | None, jax.Array | None, jax.Array | None, jax.Array | None]:
    """``(local labels, probabilities, local class weights, cap)`` for the statistics."""
    if jnp.issubdtype(labels.dtype, jnp.floating):
        local_labels, target = None, labels
    else:
        # Labels of other shards (and ignored ones) match no column here.
        local_labels, target = labels.astype(jnp.int32) - vocab.offset, None
    u = None
    if weight is not None:
        u = jnp.pad(weight.astype(acc), (0, vocab.total - vocab.classes))
        u = lax.dynamic_slice_in_dim(u, vocab.offset, vocab.local)
    cap = None if softcap is None else jnp.asarray(softcap, acc)
    return local_labels, target, u, cap


def _combine_shards(stats: Stats, extra: list[jax.Array], axis_name: Hashable):
    """The full-vocabulary statistics from each shard's: one ``pmax``, one ``psum`` (and a
    ``pmax``/``pmin`` pair for the argmax)."""
    # The shift cancels in the logsumexp, so it needs no gradient (and pmax has none).
    m = lax.pmax(lax.stop_gradient(stats.lse), axis_name)
    parts = [jnp.exp(stats.lse - m), stats.picked, *extra]
    if stats.wsum is not None:
        parts.append(stats.wsum)
    total = list(lax.psum(jnp.stack(parts), axis_name))
    lse, picked, extra = m + jnp.log(total[0]), total[1], total[2 : 2 + len(extra)]
    wsum = total[-1] if stats.wsum is not None else None
    top = None
    if stats.max is not None and stats.argmax is not None:
        top = _global_argmax(stats.max, stats.argmax, axis_name)
    return Stats(lse, picked, wsum, None, top), extra


def _global_argmax(value: jax.Array, index: jax.Array, axis_name: Hashable | None) -> jax.Array:
    """The first global index of the largest ``value`` over the shards of ``axis_name``."""
    if axis_name is None:
        return index
    value = lax.stop_gradient(value)
    best = lax.pmax(value, axis_name)
    return lax.pmin(jnp.where(value == best, index, jnp.iinfo(jnp.int32).max), axis_name)


def _target_argmax(target: jax.Array, vocab: Vocab, axis_name: Hashable | None) -> jax.Array:
    """Each row's most probable class (the "label" of a probability target)."""
    cols = lax.broadcasted_iota(jnp.int32, (1, vocab.local), 1)
    t = target if vocab.limit is None else jnp.where(cols < vocab.limit, target, -jnp.inf)
    index = jnp.argmax(t, axis=1).astype(jnp.int32) + vocab.offset
    return _global_argmax(jnp.max(t, axis=1), index, axis_name)


def head_loss(
    stats_fn: Callable[..., Stats],
    labels: jax.Array,
    weight: jax.Array | None,
    token_weight: jax.Array | None,
    opts: Options,
    vocab: Vocab,
    batch_shape: tuple,
    axis_name: Hashable | None,
    acc: Any,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array] | None]:
    """``(loss, aux)`` of every variant: ``stats_fn(labels, target, u, cap, limit, cfg)``
    gives this device's statistics, which are combined over ``axis_name`` and reduced.

    ``aux`` is None without ``opts.return_aux``, else the fields of
    :class:`jaxreg.fused.CrossEntropyAux`: ``(logsumexp, z-loss term, number correct)``.
    """
    n = int(np.prod(batch_shape))
    soft = jnp.issubdtype(labels.dtype, jnp.floating)
    labels = labels.reshape(n, labels.shape[-1]) if soft else labels.reshape(n)
    local_labels, target, u, cap = _kernel_inputs(labels, weight, opts.softcap, vocab, acc)
    smoothing = not _known_zero(opts.label_smoothing)
    cfg_flags = {"with_sum": smoothing, "with_argmax": opts.return_aux}
    stats = stats_fn(
        local_labels, target, u if (smoothing or soft) else None, cap, vocab.limit, cfg_flags
    )
    extra = []
    if soft:
        # Σ_c u_c t_c over this device's classes (needs no logits).
        t = labels.astype(acc) if u is None else labels.astype(acc) * u[None, :]
        cols = lax.broadcasted_iota(jnp.int32, (1, vocab.local), 1)
        extra = [jnp.sum(t if vocab.limit is None else jnp.where(cols < vocab.limit, t, 0.0), 1)]
    if stats.argmax is not None:
        stats = stats._replace(argmax=stats.argmax + vocab.offset)
    if axis_name is not None:
        stats, extra = _combine_shards(stats, extra, axis_name)
    mass = extra[0] if soft else None
    loss, z_term, valid = _rows(
        stats, None if soft else labels, mass, weight, token_weight, opts, vocab.classes, acc
    )
    loss, z_term = (
        x.reshape(batch_shape) if opts.reduction == "none" else x for x in (loss, z_term)
    )
    if not opts.return_aux:
        return loss.astype(opts.out_dtype), None
    answer = _target_argmax(labels, vocab, axis_name) if soft else labels.astype(jnp.int32)
    correct = jnp.sum(valid & (stats.argmax == answer), dtype=jnp.int32)
    lse = stats.lse.reshape(batch_shape).astype(opts.out_dtype)
    return loss.astype(opts.out_dtype), (lse, z_term.astype(opts.out_dtype), correct)


def _rows(
    stats: Stats,
    labels: jax.Array | None,
    mass: jax.Array | None,
    weight: jax.Array | None,
    token_weight: jax.Array | None,
    opts: Options,
    num_classes: int,
    acc: Any,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(loss, z-loss term, valid rows)``: torch's cross-entropy plus PaLM's z-loss from
    the per-row statistics, reduced (the loss includes the z-loss term)."""
    lse = stats.lse
    eps = jnp.asarray(opts.label_smoothing, acc)
    w = None if weight is None else weight.astype(acc)
    if labels is None:
        # Probabilities t, smoothed to t' = (1-eps) t + eps/C: -Σ_c w_c t'_c (s_c - lse).
        assert mass is not None
        valid, bad = jnp.ones(lse.shape, bool), None
        base, row_weight = lse * mass - stats.picked, jnp.ones_like(lse)
    else:
        valid, safe_labels, bad = _numerics.class_id_rows(labels, num_classes, opts.ignore_index)
        row_weight = jnp.ones_like(lse) if w is None else w[safe_labels]
        base = row_weight * (lse - stats.picked)
    loss = (1.0 - eps) * base
    if not _known_zero(opts.label_smoothing):
        # Σ_c w_c (lse - s_c) = lse·Σ_c w_c - Σ_c w_c s_c; eps = 0 adds exactly nothing,
        # also where the logit sum is not finite.
        assert stats.wsum is not None
        total_weight = jnp.asarray(num_classes, acc) if w is None else jnp.sum(w)
        smooth = (eps / num_classes) * (total_weight * lse - stats.wsum)
        loss = loss + jnp.where(eps == 0, jnp.zeros_like(smooth), smooth)
    token = jnp.ones_like(lse)
    if token_weight is not None:
        token = token_weight.reshape(lse.shape).astype(acc)
        valid = valid & (token != 0)  # weight 0: the token takes no part (NaN stays NaN)
        loss, row_weight = token * loss, token * row_weight
    zero = jnp.zeros_like(lse)
    loss = jnp.where(valid, loss, zero)
    if bad is not None:
        # A label that is neither ignored nor a class: its row's loss and gradient are NaN.
        loss = _numerics.nan_rows(loss, bad)
    z_term = zero
    if not _known_zero(opts.z_loss):
        z = jnp.asarray(opts.z_loss, acc)
        z_term = jnp.where(valid & (z != 0), z * token * lse * lse, zero)
    if opts.reduction == "sum":
        loss, z_term = jnp.sum(loss), jnp.sum(z_term)
    elif opts.reduction == "mean":
        # torch's weighted mean (0 with gradient 0 when no row takes part); the z-loss is
        # averaged over the tokens, not class-weighted.
        loss = _numerics.torch_mean(loss, jnp.where(valid, row_weight, zero), valid)
        z_term = _numerics.torch_mean(z_term, jnp.where(valid, token, zero), valid)
    if bad is not None:
        valid = valid & ~bad
    return loss + z_term, z_term, valid
