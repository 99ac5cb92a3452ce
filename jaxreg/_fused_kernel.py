"""The chunked kernel of :mod:`jaxreg.fused` (private): per-row statistics of the logits
``s = softcap(hidden @ weight + bias)`` with a hand-written VJP, never the ``[N, V]`` logits.

:func:`chunked_stats` walks over the vocabulary in chunks inside one ``lax.fori_loop`` (a
Python loop would be unrolled by XLA and keep every chunk alive), keeps a running maximum
and sum of exponentials per row (the online logsumexp), and saves only the per-row
logsumexp for the backward pass, which recomputes each chunk's logits. :mod:`jaxreg.fused`
turns the statistics into the loss; this module knows nothing of reductions or labels
beyond "which column is this row's".

Compiler workarounds, and why each exists (tuned on jaxlib 0.10.2, XLA:CPU; measured by
undoing each one):

1. **Loop hoisting** (:func:`_slice_columns`). XLA moves loop-invariant work out of a
   loop, and a slice of the weight at a loop-dependent offset is computed from the whole
   weight: undone, the compiled loss + gradient at N=8192, D=4096, V=128256 needs 2140
   MiB of temp memory (float32) instead of 136. An ``optimization_barrier`` ties the
   weight to the loop counter, so that the slice and everything after it stay inside
   the loop.
2. **bf16 dynamic-slice on CPU** (:func:`_slice_columns`, :func:`_to_bits`). XLA:CPU
   slices a bf16 array by converting all of it to float32: once per chunk, the whole
   weight. The slice is taken of the raw bits (``uint16``) and bitcast back behind the
   barrier.
3. **bf16 dynamic-update-slice on CPU** (:func:`_block_layout`). Writing a chunk's
   columns into the bf16 weight gradient converts the whole ``(D, V)`` gradient to
   float32 and back. The chunk gradients go, as raw bits, into a block of about
   :data:`BLOCK_BYTES`, and each finished block is written once: one conversion per block
   instead of one per chunk (XLA fuses the conversions, so they cost time, not memory).
4. **shard_map varying axes** (:func:`mesh_zeros`, :func:`vary_like_mesh`). Inside
   ``jax.shard_map`` a loop carry must vary over the same mesh axes as the values the
   loop body adds to it, so the carries start as zeros that vary like the operands; and
   each operand is made to vary like all of them, so that autodiff sums a replicated
   operand's cotangent over the mesh (outside a mesh, both are no-ops).

If a jaxlib upgrade undoes one of them, a test fails:

* 1: ``tests/test_fused.py::test_compiled_memory_is_small_and_flat_in_vocab``;
* 2, 3: ``tests/test_fused.py::test_bf16_weight_is_converted_at_most_once_per_block``
  (it reads the compiled program's loops), with ``test_bfloat16_accumulates_in_float32``
  checking that the blocks land every column in its place;
* 4: ``tests/test_sharded.py`` (``shard_map`` refuses the loop carries).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero, custom_vjp_primal_tree_values

from jaxreg import _numerics

__all__ = [
    "BLOCK_BYTES",
    "Config",
    "Operands",
    "Stats",
    "chunked_stats",
    "default_chunk_size",
    "logits_stats",
    "mesh_zeros",
    "vary_like_mesh",
]

# Default chunk: about this many logits per chunk. On a CPU the few chunk-sized buffers
# of a loop step should stay in cache (2**20 float32 = 4 MiB: 10-15% faster than 2**22
# at N=1024); an accelerator wants fewer, larger matmuls (2**23 = 32 MiB).
CHUNK_ELEMENTS = {"cpu": 2**20}
CHUNK_ELEMENTS_ACCELERATOR = 2**23
CHUNK_MULTIPLE = 128
#: bf16 weight gradients are assembled in blocks of about this many bytes (workaround 3).
BLOCK_BYTES = 2**26


def default_chunk_size(num_rows: int, vocab: int, backend: str | None = None) -> int:
    """A vocab chunk of about ``CHUNK_ELEMENTS`` logits for the (default) backend, a
    multiple of 128, at most ``vocab``."""
    backend = backend or jax.default_backend()
    elements = CHUNK_ELEMENTS.get(backend, CHUNK_ELEMENTS_ACCELERATOR)
    chunk = elements // max(num_rows, 1)
    chunk = max(CHUNK_MULTIPLE, chunk // CHUNK_MULTIPLE * CHUNK_MULTIPLE)
    return min(chunk, vocab)


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


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Perturbed:
    """Which operands are differentiated (from ``symbolic_zeros``): a static residual."""

    hidden: bool
    weight: bool
    bias: bool
    target: bool
    class_weight: bool
    softcap: bool


# --------------------------------------------------------------------------- helpers


def mesh_zeros(shape: tuple[int, ...], dtype: Any, like: Any) -> jax.Array:
    """Zeros that vary over the mesh axes the arrays in the pytree ``like`` vary over, as
    loop carries inside ``shard_map`` must (workaround 4; outside it, plain zeros)."""
    out = jnp.zeros(shape, dtype)
    for x in jax.tree.leaves(like):
        if not isinstance(x, SymbolicZero):
            out = out + jnp.zeros_like(x, dtype=dtype, shape=())
    return out


def vary_like_mesh(operands: tuple) -> tuple:
    """Each floating operand made to vary over every mesh axis that any operand varies
    over (workaround 4; a no-op outside ``shard_map``), as its cotangent does: autodiff
    then sums the cotangent over the axes the operand is replicated on. For the hidden
    features, replicated over the vocab axis, that is the one psum of the backward pass.
    (XLA folds the added zeros away; run eagerly, where there is no mesh, they would copy
    the weight, so they are skipped.)"""
    if all(_numerics.is_concrete(x) for x in jax.tree.leaves(operands)):
        return operands

    def vary(x):
        if x is None or not jnp.issubdtype(x.dtype, jnp.floating):
            return x
        return x + mesh_zeros((), x.dtype, operands)

    return tuple(vary(x) for x in operands)


def _matmul(a: jax.Array, b: jax.Array, acc: Any) -> jax.Array:
    """``a @ b`` on the inputs' dtype with ``acc`` accumulation."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=acc)


def _to_bits(x: jax.Array) -> jax.Array:
    """The same bytes as unsigned integers of the same width."""
    return lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}"))


def _from_bits(bits: jax.Array, dtype: Any) -> jax.Array:
    """Floats from :func:`_to_bits`'s integers, behind a barrier XLA cannot move work across."""
    return lax.bitcast_convert_type(lax.optimization_barrier(bits), dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _slice_columns(x: jax.Array, k: jax.Array, start: jax.Array, size: int) -> jax.Array:
    """``x[:, start:start + size]`` inside loop step ``k``, without a copy of ``x``."""
    # Workarounds 1 and 2: tying x to the loop counter keeps everything below inside the
    # loop, and the slice is taken of the raw bits.
    x, _ = lax.optimization_barrier((x, k))
    bits = lax.dynamic_slice_in_dim(_to_bits(x), start, size, axis=1)
    return _from_bits(bits, x.dtype)


@_slice_columns.defjvp
def _slice_columns_jvp(size, primals, tangents):
    # A slice is linear: the tangent is the same slice. (Bits carry no derivative, so
    # this rule is what keeps second derivatives of the fused loss right.)
    x, k, start = primals
    out = _slice_columns(x, k, start, size)
    return out, lax.dynamic_slice_in_dim(tangents[0], start, size, axis=1)


def _capped(z: jax.Array, softcap: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
    """``(s, t)``: ``s = c·tanh(z / c)`` and ``t = tanh(z / c)`` (``(z, None)`` uncapped)."""
    if softcap is None:
        return z, None
    t = jnp.tanh(z / softcap)
    return softcap * t, t


def _times_logits(q: jax.Array | None, s: jax.Array) -> jax.Array:
    """``q·s`` with ``0·s = 0`` also where ``s = -inf``, and the derivative ``s`` in ``q``
    wherever ``s`` is finite (a guard on ``q == 0`` alone would make it 0 at ``q = 0``)."""
    assert q is not None  # (probability targets)
    return q * jnp.where((q == 0) & (s == -jnp.inf), jnp.zeros_like(s), s)


def _row_stats(
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
        qs = _times_logits(q if u is None or q is None else q * u, s)
        picked = jnp.sum(qs if counted is None else jnp.where(counted, qs, 0.0), axis=1)
    wsum = None
    if cfg.with_sum:
        us = s if u is None else u * s
        wsum = jnp.sum(us if counted is None else jnp.where(counted, us, 0.0), axis=1)
    top = None
    if cfg.with_argmax:
        top = (row_max, jnp.argmax(masked, axis=1).astype(jnp.int32))
    return m, sumexp, picked, wsum, top


def logits_stats(
    z: jax.Array,
    labels: jax.Array | None,
    target: jax.Array | None,
    class_weight: jax.Array | None,
    softcap: jax.Array | None,
    limit: jax.Array | None,
    cfg: Config,
) -> Stats:
    """:class:`Stats` of whole ``[N, V]`` logits ``z`` (differentiable by autodiff): the
    vocab-parallel loss of given logits, with the same arithmetic as the chunked loop."""
    s, _ = _capped(z, softcap)
    cols = lax.broadcasted_iota(jnp.int32, (1, z.shape[1]), 1)
    counted = None if limit is None else cols < limit
    hit = None if labels is None else cols == labels[:, None]
    u = None if class_weight is None else class_weight[None, :]
    m, sumexp, picked, wsum, top = _row_stats(s, counted, hit, target, u, cfg)
    # A row without a counted column (a shard of padding) has lse -inf, gradient 0.
    lse = m + jnp.log(_numerics.nonzero_or_one(sumexp)[1])
    lse = jnp.where(sumexp == 0, jnp.full_like(lse, -jnp.inf), lse)
    return Stats(lse, picked, wsum, *(top or (None, None)))


# --------------------------------------------------------------------------- one chunk


class _Chunk(NamedTuple):
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


def _chunk(k: jax.Array, ops: Operands, cfg: Config) -> _Chunk:
    """Logits of vocab chunk ``k`` and their bookkeeping.

    The last chunk starts at ``V - chunk_size`` (its start is clamped) instead of being
    padded, so it overlaps the chunk before; ``fresh`` marks the columns no earlier chunk
    has covered, and only those count in sums over the vocabulary.
    """
    acc = _numerics.compute_dtype(ops.hidden.dtype)
    size, vocab = cfg.chunk_size, ops.weight.shape[1]
    k = jnp.asarray(k, jnp.int32)
    start = jnp.minimum(k * size, vocab - size)
    w = _slice_columns(ops.weight, k, start, size)
    z = _matmul(ops.hidden, w, acc)
    if ops.bias is not None:
        z = z + lax.dynamic_slice_in_dim(ops.bias, start, size).astype(acc)[None, :]
    s, t = _capped(z, ops.softcap)
    cols = start + lax.broadcasted_iota(jnp.int32, (1, size), 1)
    fresh = cols >= k * size
    classes = None if ops.limit is None else cols < ops.limit
    hit = None if ops.labels is None else cols == ops.labels[:, None]
    target = None
    if ops.target is not None:
        target = _slice_columns(ops.target, k, start, size).astype(acc)
    u = None
    if ops.class_weight is not None:
        u = lax.dynamic_slice_in_dim(ops.class_weight, start, size)[None, :]
    return _Chunk(start, w, z, s, t, fresh, classes, hit, target, u)


# --------------------------------------------------------------------------- forward


def _stats_loop(ops: Operands, cfg: Config) -> Stats:
    """One pass over the columns of the weight with the online logsumexp."""
    acc = _numerics.compute_dtype(ops.hidden.dtype)

    def step(k, carry):
        m, sumexp, picked, wsum, top = carry
        c = _chunk(k, ops, cfg)
        counted = c.fresh if c.classes is None else c.fresh & c.classes
        m_new, chunk_sumexp, chunk_picked, chunk_wsum, chunk_top = _row_stats(
            c.s, counted, c.hit, c.target, c.u, cfg, running_max=m
        )
        # Rescale the old sum to the new shift: exp(m - m_new) <= 1 never overflows.
        sumexp = sumexp * jnp.exp(m - jnp.where(m_new == -jnp.inf, 0.0, m_new)) + chunk_sumexp
        picked = picked + chunk_picked
        if cfg.with_sum:
            wsum = wsum + chunk_wsum
        if cfg.with_argmax:
            # A later chunk takes over only with a larger maximum: the first one wins ties.
            chunk_max, first = chunk_top
            top = jnp.where(chunk_max > m, c.start + first, top)
        return m_new, sumexp, picked, wsum, top

    zeros = mesh_zeros(ops.hidden.shape[:1], acc, ops)
    top = mesh_zeros(ops.hidden.shape[:1], jnp.int32, ops)
    m, sumexp, picked, wsum, top = lax.fori_loop(
        0, cfg.num_chunks, step, (zeros - jnp.inf, zeros, zeros, zeros, top)
    )
    # Rows without a class column (a shard of padding): m = -inf, sumexp = 0, lse = -inf.
    lse = m + jnp.log(sumexp)
    if cfg.with_argmax:
        return Stats(lse, picked, wsum if cfg.with_sum else None, m, top)
    return Stats(lse, picked, wsum if cfg.with_sum else None, None, None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def chunked_stats(ops: Operands, cfg: Config) -> Stats:
    """:class:`Stats` of ``s = softcap(hidden @ weight + bias)`` without the ``[N, V]``
    logits; reverse-mode differentiable in every floating operand (the maximum and its
    column are constants)."""
    return _stats_loop(ops, cfg)


def _chunked_stats_fwd(ops, cfg):
    perturbed = _Perturbed(
        *(
            getattr(ops, name) is not None and getattr(ops, name).perturbed
            for name in ("hidden", "weight", "bias", "target", "class_weight", "softcap")
        )
    )
    ops = custom_vjp_primal_tree_values(ops)
    stats = _stats_loop(ops, cfg)
    # Residuals: the operands and the per-row logsumexp; no logits are kept.
    return stats, (ops, stats.lse, perturbed)


# --------------------------------------------------------------------------- backward


class _Grads(NamedTuple):
    """The gradients being assembled (``None``: not asked for)."""

    hidden: jax.Array | None  # [N, D] in the accumulation dtype
    weight: jax.Array | None  # (D, V), or a block of its columns as bits (bf16)
    bias: jax.Array | None
    class_weight: jax.Array | None
    target: jax.Array | None
    softcap: jax.Array | None


def _row_cotangents(cotangents: Stats, acc: Any) -> tuple[jax.Array | None, ...]:
    """The cotangents of ``lse``, ``picked`` and ``wsum`` as ``[N, 1]`` columns, ``None``
    where nothing depends on the statistic (the maximum and its column get none)."""

    def column(g):
        if g is None or isinstance(g, SymbolicZero):
            return None
        return g.astype(acc)[:, None]

    return column(cotangents.lse), column(cotangents.picked), column(cotangents.wsum)


def _d_capped_logits(c: _Chunk, lse: jax.Array, g: tuple) -> jax.Array:
    """Step 1: ``d loss / d s`` on a chunk, from the statistics' cotangents.

    d lse / ds = softmax over the classes, d picked / ds = the label's one-hot (or ``u·t``),
    d wsum / ds = ``u``; columns that are no class get 0.
    """
    g_lse, g_picked, g_wsum = g
    masked = c.s if c.classes is None else jnp.where(c.classes, c.s, -jnp.inf)
    # A row without a class column has lse -inf and gets no cotangent: shift it by 0.
    lse = jnp.where(lse == -jnp.inf, jnp.zeros_like(lse), lse)
    d_s = jnp.zeros_like(c.s) if g_lse is None else g_lse * jnp.exp(masked - lse[:, None])
    if g_picked is not None:
        if c.hit is not None:
            d_s = d_s + jnp.where(c.hit, g_picked, 0.0)
        else:
            assert c.target is not None  # (probability targets)
            q = c.target if c.u is None else c.target * c.u
            d_s = d_s + g_picked * (q if c.classes is None else jnp.where(c.classes, q, 0.0))
    if g_wsum is not None:
        u = jnp.ones_like(c.s[:1]) if c.u is None else c.u
        d_s = d_s + g_wsum * (u if c.classes is None else jnp.where(c.classes, u, 0.0))
    return d_s


def _chunk_gradients(
    k: jax.Array, ops: Operands, lse: jax.Array, g: tuple, need: _Perturbed, cfg: Config
) -> tuple[jax.Array, _Grads]:
    """Steps 1 and 2 for chunk ``k``: ``(start, gradient pieces)``, where the hidden and
    softcap pieces are to be added and the others are the chunk's columns."""
    c = _chunk(k, ops, cfg)
    hidden = ops.hidden
    acc = c.z.dtype
    d_s = _d_capped_logits(c, lse, g)
    d_z = d_s if c.t is None else d_s * (1.0 - c.t * c.t)  # d c·tanh(z/c) / dz = 1 - t²
    # A weight column depends on its own column of d_z only, so the overlapping last
    # chunk rewrites earlier columns with the same values; sums over columns (the hidden
    # gradient, the cap's) take each column once.
    d_hidden = d_weight = d_bias = d_class_weight = d_target = d_softcap = None
    if need.hidden:
        d_once = jnp.where(c.fresh, d_z, 0.0).astype(hidden.dtype)
        d_hidden = _matmul(d_once, c.weight.T, acc)
    if need.weight:
        d_weight = _matmul(hidden.T, d_z.astype(hidden.dtype), acc).astype(ops.weight.dtype)
    if need.bias and ops.bias is not None:
        d_bias = jnp.sum(d_z, axis=0).astype(ops.bias.dtype)
    if need.softcap and ops.softcap is not None and c.t is not None:
        # d c·tanh(z/c) / dc = t - (z/c)(1 - t²)
        d_cap = d_s * (c.t - (c.z / ops.softcap) * (1.0 - c.t * c.t))
        d_softcap = jnp.sum(jnp.where(c.fresh, d_cap, 0.0))
    g_lse, g_picked, g_wsum = g
    if need.class_weight and ops.class_weight is not None:
        d_u = jnp.zeros_like(c.s)
        if g_wsum is not None:
            d_u = d_u + g_wsum * c.s
        if g_picked is not None and c.target is not None:
            d_u = d_u + g_picked * _times_logits(c.target, c.s)
        if c.classes is not None:
            d_u = jnp.where(c.classes, d_u, 0.0)
        d_class_weight = jnp.sum(d_u, axis=0).astype(ops.class_weight.dtype)
    if need.target and ops.target is not None:
        d_t = jnp.zeros_like(c.s) if g_picked is None else g_picked * c.s
        d_t = d_t if c.u is None else d_t * c.u
        if c.classes is not None:
            d_t = jnp.where(c.classes, d_t, 0.0)
        d_target = d_t.astype(ops.target.dtype)
    return c.start, _Grads(d_hidden, d_weight, d_bias, d_class_weight, d_target, d_softcap)


def _write_columns(dst: jax.Array | None, cols: jax.Array | None, start: jax.Array, axis: int):
    if dst is None or cols is None:
        return None
    return lax.dynamic_update_slice_in_dim(dst, cols, start, axis)


def _add(total: jax.Array | None, part: jax.Array | None) -> jax.Array | None:
    return None if total is None or part is None else total + part


def _block_layout(weight: jax.Array, cfg: Config) -> tuple[int, int]:
    """``(chunks per block, number of blocks)`` for assembling the weight gradient:
    blocks of about :data:`BLOCK_BYTES` of bits for bf16 (workaround 3), one block else."""
    if weight.dtype != jnp.bfloat16:
        return cfg.num_chunks, 1
    per_block = BLOCK_BYTES // (weight.shape[0] * weight.dtype.itemsize * cfg.chunk_size)
    per_block = min(max(per_block, 1), cfg.num_chunks)
    return per_block, -(-cfg.num_chunks // per_block)


def _chunked_stats_bwd(cfg, residuals, cotangents):
    ops, lse, need = residuals
    acc = _numerics.compute_dtype(ops.hidden.dtype)
    g = _row_cotangents(cotangents, acc)
    like = (ops, [c for c in g if c is not None])
    vocab = ops.weight.shape[1]
    per_block, num_blocks = _block_layout(ops.weight, cfg)
    block_size = min(per_block * cfg.chunk_size, vocab)
    blocked = need.weight and num_blocks > 1

    def zeros_like_operand(flag, x, dtype=None):
        return mesh_zeros(x.shape, dtype or x.dtype, like) if flag else None

    # Step 3: the loop over chunks, adding or writing each chunk's pieces.
    def chunk_step(k, grads, block_start, to_block):
        start, part = _chunk_gradients(k, ops, lse, g, need, cfg)
        weight = None
        if grads.weight is not None:
            weight = _write_columns(grads.weight, to_block(part.weight), start - block_start, 1)
        return _Grads(
            hidden=_add(grads.hidden, part.hidden),
            weight=weight,
            bias=_write_columns(grads.bias, part.bias, start, 0),
            class_weight=_write_columns(grads.class_weight, part.class_weight, start, 0),
            target=_write_columns(grads.target, part.target, start, 1),
            softcap=_add(grads.softcap, part.softcap),
        )

    grads = _Grads(
        hidden=zeros_like_operand(need.hidden, ops.hidden, acc),
        weight=zeros_like_operand(need.weight and not blocked, ops.weight),
        bias=zeros_like_operand(need.bias, ops.bias),
        class_weight=zeros_like_operand(need.class_weight, ops.class_weight),
        target=zeros_like_operand(need.target, ops.target),
        softcap=zeros_like_operand(need.softcap, ops.softcap, acc),
    )
    if blocked:
        grads, d_weight = _blocked_loop(chunk_step, grads, ops, per_block, block_size, like, cfg)
    else:
        step = functools.partial(chunk_step, block_start=0, to_block=lambda x: x)
        grads = lax.fori_loop(0, cfg.num_chunks, step, grads)
        d_weight = grads.weight
    d_ops = Operands(
        hidden=None if grads.hidden is None else grads.hidden.astype(ops.hidden.dtype),
        weight=d_weight,
        bias=grads.bias,
        labels=None,
        target=grads.target,
        class_weight=grads.class_weight,
        softcap=None if grads.softcap is None else grads.softcap.astype(ops.softcap.dtype),
        limit=None,
    )
    return (d_ops,)


def _blocked_loop(chunk_step, grads, ops, per_block, block_size, like, cfg):
    """Step 3 for bf16 weights (workaround 3): the chunks of each block write bits into
    the block, and the finished block is written into the gradient once."""
    weight = ops.weight
    vocab = weight.shape[1]
    bits_dtype = _to_bits(weight).dtype
    num_blocks = -(-cfg.num_chunks // per_block)

    def block_step(i, carry):
        grads, d_weight = carry
        # Last block first: its start is clamped like the last chunk's, so it overlaps
        # the block before, which then rewrites those columns with their values.
        b = num_blocks - 1 - i
        block_start = jnp.minimum(b * block_size, vocab - block_size)
        step = functools.partial(chunk_step, block_start=block_start, to_block=_to_bits)
        block = mesh_zeros((weight.shape[0], block_size), bits_dtype, like)
        first, stop = b * per_block, jnp.minimum((b + 1) * per_block, cfg.num_chunks)
        grads = lax.fori_loop(first, stop, step, grads._replace(weight=block))
        block = lax.bitcast_convert_type(grads.weight, weight.dtype)
        d_weight = lax.dynamic_update_slice_in_dim(d_weight, block, block_start, axis=1)
        return grads._replace(weight=None), d_weight

    d_weight = mesh_zeros(weight.shape, weight.dtype, like)
    return lax.fori_loop(0, num_blocks, block_step, (grads._replace(weight=None), d_weight))


chunked_stats.defvjp(_chunked_stats_fwd, _chunked_stats_bwd, symbolic_zeros=True)
