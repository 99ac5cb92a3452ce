"""The fused kernel's data and one chunk of its logits (private).

:class:`Operands` in, :class:`Stats` out, :class:`Config` the static settings;
:func:`chunk` forms the logits of one vocab chunk, ``s = softcap(hidden @ weight[:, cols]
+ bias[cols])``, with what its columns are (new, a class, a row's label), and
:func:`row_stats` reduces logits to the per-row statistics. The forward loop
(:mod:`jaxreg._fused_kernel`), the backward loop (:mod:`jaxreg._fused_backward`) and the
vocab-parallel loss of given logits all build on these two, so the three compute the same
arithmetic. The weight is sliced with :func:`jaxreg._fused_xla.slice_columns` (workarounds
1 and 2 there).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxreg import _fused_xla, _numerics

__all__ = [
    "Chunk",
    "Config",
    "Operands",
    "Stats",
    "capped",
    "chunk",
    "matmul",
    "row_stats",
    "times_logits",
]


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of the chunked loops (hashable: a ``nondiff_argnums`` argument)."""

    chunk_size: int
    num_chunks: int
    with_sum: bool = False  # also Σ_c u_c s_c per row (label smoothing)
    with_argmax: bool = False  # also the row maximum and its first column (accuracy)


class Operands(NamedTuple):
    """The kernel's inputs; ``None`` marks an option that is off.

    ``labels`` (integer targets) and ``target`` (probabilities) exclude each other.
    """

    hidden: jax.Array  # [N, D]
    weight: jax.Array  # (D, V)
    bias: jax.Array | None  # (V,)
    labels: jax.Array | None  # [N] int32 column of each row's class (no column: no hit)
    target: jax.Array | None  # [N, V] probabilities
    class_weight: jax.Array | None  # (V,) u in Σ_c u_c s_c and in Σ_c u_c t_c s_c
    softcap: jax.Array | None  # () the cap c of s = c·tanh(z / c)
    limit: jax.Array | None  # () int32: columns >= limit are no classes


class Stats(NamedTuple):
    """Per-row statistics over the class columns, ``[N]`` each (``None``: not asked for)."""

    lse: jax.Array  # log Σ_c exp(s_c)
    picked: jax.Array  # s_label (integer targets) or Σ_c u_c t_c s_c (probabilities)
    wsum: jax.Array | None  # Σ_c u_c s_c (Config.with_sum)
    max: jax.Array | None  # max_c s_c (Config.with_argmax)
    argmax: jax.Array | None  # int32, the first column holding it (Config.with_argmax)


def matmul(a: jax.Array, b: jax.Array, acc: Any) -> jax.Array:
    """``a @ b`` on the inputs' dtype with ``acc`` accumulation."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=acc)


def capped(z: jax.Array, softcap: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
    """``(s, t)``: ``s = c·tanh(z / c)`` and ``t = tanh(z / c)`` (``(z, None)`` uncapped)."""
    if softcap is None:
        return z, None
    t = jnp.tanh(z / softcap)
    return softcap * t, t


def times_logits(q: jax.Array | None, s: jax.Array) -> jax.Array:
    """``q·s`` with ``0·s = 0`` also where ``s = -inf``, and the derivative ``s`` in ``q``
    wherever ``s`` is finite (a guard on ``q == 0`` alone would make it 0 at ``q = 0``)."""
    assert q is not None  # (probability targets)
    return q * jnp.where((q == 0) & (s == -jnp.inf), jnp.zeros_like(s), s)


def row_stats(
    s: jax.Array,
    counted: jax.Array | None,
    hit: jax.Array | None,
    q: jax.Array | None,
    u: jax.Array | None,
    cfg: Config,
    running_max: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None, tuple[jax.Array, jax.Array] | None]:
    """``(max, sumexp, picked, wsum, (chunk max, its first column))`` of ``s``'s ``counted``
    columns.

    ``max`` includes ``running_max`` and is held constant; ``sumexp`` is shifted by it
    (by 0 on rows without a counted column, whose ``max`` is ``-inf``). ``picked`` is
    ``s`` at ``hit`` or ``Σ q·s`` (``q·s = 0`` where ``q = 0``); ``wsum`` is ``Σ u·s``.
    """
    masked = s if counted is None else jnp.where(counted, s, -jnp.inf)
    row_max = jnp.max(masked, axis=1)
    m = row_max if running_max is None else jnp.maximum(running_max, row_max)
    m = lax.stop_gradient(m)
    shift = jnp.where(m == -jnp.inf, jnp.zeros_like(m), m)  # NaN stays NaN
    sumexp = jnp.sum(jnp.exp(masked - shift[:, None]), axis=1)
    if hit is not None:
        take = hit if counted is None else hit & counted
        picked = jnp.sum(jnp.where(take, s, 0.0), axis=1)
    else:
        qs = times_logits(q if u is None or q is None else q * u, s)
        picked = jnp.sum(qs if counted is None else jnp.where(counted, qs, 0.0), axis=1)
    wsum = None
    if cfg.with_sum:
        us = s if u is None else u * s
        wsum = jnp.sum(us if counted is None else jnp.where(counted, us, 0.0), axis=1)
    top = None
    if cfg.with_argmax:
        top = (row_max, jnp.argmax(masked, axis=1).astype(jnp.int32))
    return m, sumexp, picked, wsum, top


class Chunk(NamedTuple):
    """Chunk ``k`` of the logits and what its columns are."""

    start: jax.Array  # its first column (the last chunk's start is clamped)
    weight: jax.Array  # (D, C) its columns of the weight
    z: jax.Array  # [N, C] logits in the accumulation dtype
    s: jax.Array  # [N, C] capped logits (z without a cap)
    t: jax.Array | None  # [N, C] tanh(z / c) with a cap
    fresh: jax.Array  # [1, C] columns no earlier chunk covered
    classes: jax.Array | None  # [1, C] columns below the limit (None: all)
    hit: jax.Array | None  # [N, C] each row's label column (integer targets)
    target: jax.Array | None  # [N, C] probabilities in the accumulation dtype
    u: jax.Array | None  # [1, C] class weights


def chunk(k: jax.Array, ops: Operands, cfg: Config) -> Chunk:
    """Logits of vocab chunk ``k`` and their bookkeeping.

    The last chunk starts at ``V - chunk_size`` (its start is clamped) instead of being
    padded, so it overlaps the chunk before; ``fresh`` marks the columns no earlier chunk
    has covered, and only those count in sums over the vocabulary.
    """
    acc = _numerics.compute_dtype(ops.hidden.dtype)
    size, vocab = cfg.chunk_size, ops.weight.shape[1]
    k = jnp.asarray(k, jnp.int32)
    start = jnp.minimum(k * size, vocab - size)
    w = _fused_xla.slice_columns(ops.weight, k, start, size)
    z = matmul(ops.hidden, w, acc)
    if ops.bias is not None:
        z = z + lax.dynamic_slice_in_dim(ops.bias, start, size).astype(acc)[None, :]
    s, t = capped(z, ops.softcap)
    cols = start + lax.broadcasted_iota(jnp.int32, (1, size), 1)
    fresh = cols >= k * size
    classes = None if ops.limit is None else cols < ops.limit
    hit = None if ops.labels is None else cols == ops.labels[:, None]
    target = None
    if ops.target is not None:
        target = _fused_xla.slice_columns(ops.target, k, start, size).astype(acc)
    u = None
    if ops.class_weight is not None:
        u = lax.dynamic_slice_in_dim(ops.class_weight, start, size)[None, :]
    return Chunk(start, w, z, s, t, fresh, classes, hit, target, u)
