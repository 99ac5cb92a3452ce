"""The backward pass of the fused kernel (private): the VJP of
:func:`jaxreg._fused_kernel.chunked_stats`, one chunk of the logits at a time.

Nothing ``[N, V]`` is kept from the forward pass, only the per-row logsumexp; each chunk's
logits are recomputed (:func:`jaxreg._fused_chunk.chunk`) and the gradients are formed in
three named steps:

1. :func:`_d_capped_logits`: ``d loss / d s`` on the chunk from the statistics'
   cotangents (the softmax, the label's one-hot or the targets, the class weights);
2. :func:`_chunk_gradients`: through the soft-cap to ``d loss / d z``, then the chunk's
   pieces of every gradient that was asked for (:class:`Perturbed`): the hidden
   gradient and the cap's are sums over the columns, the others are the chunk's columns;
3. :func:`backward`: the loop over the chunks adding or writing the pieces (for bf16
   weights in blocks: workaround 3 of :mod:`jaxreg._fused_xla`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxreg import _fused_xla, _numerics
from jaxreg._fused_chunk import Chunk, Config, Operands, Stats, chunk, matmul, times_logits

__all__ = ["Perturbed", "backward"]


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Perturbed:
    """Which operands are differentiated (from ``symbolic_zeros``): a static residual."""

    hidden: bool
    weight: bool
    bias: bool
    target: bool
    class_weight: bool
    softcap: bool


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


def _d_capped_logits(c: Chunk, lse: jax.Array, g: tuple) -> jax.Array:
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
    k: jax.Array, ops: Operands, lse: jax.Array, g: tuple, need: Perturbed, cfg: Config
) -> tuple[jax.Array, _Grads]:
    """Steps 1 and 2 for chunk ``k``: ``(start, gradient pieces)``, where the hidden and
    softcap pieces are to be added and the others are the chunk's columns."""
    c = chunk(k, ops, cfg)
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
        d_hidden = matmul(d_once, c.weight.T, acc)
    if need.weight:
        d_weight = matmul(hidden.T, d_z.astype(hidden.dtype), acc).astype(ops.weight.dtype)
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
            d_u = d_u + g_picked * times_logits(c.target, c.s)
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


def backward(cfg, residuals, cotangents):
    """The backward rule of :func:`jaxreg._fused_kernel.chunked_stats`: ``residuals`` are
    ``(operands, per-row logsumexp, Perturbed)``; the result holds the gradients of the
    differentiated operands, ``None`` for the others."""
    ops, lse, need = residuals
    acc = _numerics.compute_dtype(ops.hidden.dtype)
    g = _row_cotangents(cotangents, acc)
    like = (ops, [c for c in g if c is not None])
    vocab = ops.weight.shape[1]
    per_block, num_blocks = _fused_xla.block_layout(ops.weight, cfg.chunk_size, cfg.num_chunks)
    block_size = min(per_block * cfg.chunk_size, vocab)
    blocked = need.weight and num_blocks > 1

    def zeros_like_operand(flag, x, dtype=None):
        return _fused_xla.mesh_zeros(x.shape, dtype or x.dtype, like) if flag else None

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
        grads, d_weight = _fused_xla.blocked_loop(
            chunk_step, grads, ops.weight, per_block, block_size, cfg.num_chunks, like
        )
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
