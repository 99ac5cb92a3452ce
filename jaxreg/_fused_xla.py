"""The compiler workarounds of the fused kernel (private), in one place, each with the reason
it exists. Tuned on jaxlib 0.10.2, XLA:CPU; measured by undoing each one.

1. **Loop hoisting** (:func:`slice_columns`). XLA moves loop-invariant work out of a
   loop, and a slice of the weight at a loop-dependent offset is computed from the whole
   weight: undone, the compiled loss + gradient at N=8192, D=4096, V=128256 needs 2140
   MiB of temp memory (float32) instead of 136. An ``optimization_barrier`` ties the
   weight to the loop counter, so that the slice and everything after it stay inside
   the loop.
2. **bf16 dynamic-slice on CPU** (:func:`slice_columns`, :func:`_to_bits`). XLA:CPU
   slices a bf16 array by converting all of it to float32: once per chunk, the whole
   weight. The slice is taken of the raw bits (``uint16``) and bitcast back behind the
   barrier.
3. **bf16 dynamic-update-slice on CPU** (:func:`block_layout`, :func:`blocked_loop`).
   Writing a chunk's columns into the bf16 weight gradient converts the whole ``(D, V)``
   gradient to float32 and back. The chunk gradients go, as raw bits, into a block of
   about :data:`BLOCK_BYTES`, and each finished block is written once: one conversion
   per block instead of one per chunk (XLA fuses the conversions, so they cost time, not
   memory).
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

Where they are used: 1 and 2 by :func:`jaxreg._fused_chunk.chunk`, 3 by the backward loop
(:mod:`jaxreg._fused_backward`), 4 by the loop carries of both passes and by
:mod:`jaxreg.fused` on the kernel's operands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxreg import _numerics

__all__ = [
    "BLOCK_BYTES",
    "block_layout",
    "blocked_loop",
    "mesh_zeros",
    "slice_columns",
    "vary_like_mesh",
]

#: bf16 weight gradients are assembled in blocks of about this many bytes (workaround 3).
BLOCK_BYTES = 2**26


# --------------------------------------------------------------------------- 1 and 2


def _to_bits(x: jax.Array) -> jax.Array:
    """The same bytes as unsigned integers of the same width."""
    return lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}"))


def _from_bits(bits: jax.Array, dtype: Any) -> jax.Array:
    """Floats from :func:`_to_bits`'s integers, behind a barrier XLA cannot move work across."""
    return lax.bitcast_convert_type(lax.optimization_barrier(bits), dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def slice_columns(x: jax.Array, k: jax.Array, start: jax.Array, size: int) -> jax.Array:
    """``x[:, start:start + size]`` inside loop step ``k``, without a copy of ``x``."""
    # Workarounds 1 and 2: tying x to the loop counter keeps everything below inside the
    # loop, and the slice is taken of the raw bits.
    x, _ = lax.optimization_barrier((x, k))
    bits = lax.dynamic_slice_in_dim(_to_bits(x), start, size, axis=1)
    return _from_bits(bits, x.dtype)


@slice_columns.defjvp
def _slice_columns_jvp(size, primals, tangents):
    # A slice is linear: the tangent is the same slice. (Bits carry no derivative, so
    # this rule is what keeps second derivatives of the fused loss right.)
    x, k, start = primals
    out = slice_columns(x, k, start, size)
    return out, lax.dynamic_slice_in_dim(tangents[0], start, size, axis=1)


# --------------------------------------------------------------------------- 3


def block_layout(weight: jax.Array, chunk_size: int, num_chunks: int) -> tuple[int, int]:
    """``(chunks per block, number of blocks)`` for assembling the gradient of ``weight``
    from ``num_chunks`` chunks of ``chunk_size`` columns: blocks of about
    :data:`BLOCK_BYTES` of bits for bf16, one block else."""
    if weight.dtype != jnp.bfloat16:
        return num_chunks, 1
    per_block = BLOCK_BYTES // (weight.shape[0] * weight.dtype.itemsize * chunk_size)
    per_block = min(max(per_block, 1), num_chunks)
    return per_block, -(-num_chunks // per_block)


def blocked_loop(
    chunk_step: Callable[..., Any],
    grads: Any,
    weight: jax.Array,
    per_block: int,
    block_size: int,
    num_chunks: int,
    like: Any,
) -> tuple[Any, jax.Array]:
    """The loop over the chunks for a bf16 ``weight``: the chunks of each block write bits
    into the block, and the finished block is written into the gradient once.

    ``chunk_step(k, grads, block_start, to_block)`` adds chunk ``k`` to ``grads`` (a
    ``NamedTuple`` whose ``weight`` is the block being filled), writing its weight columns
    as ``to_block(columns)`` at ``start - block_start``. Returns ``(grads, d_weight)``.
    """
    vocab = weight.shape[1]
    bits_dtype = _to_bits(weight).dtype
    num_blocks = -(-num_chunks // per_block)

    def block_step(i, carry):
        grads, d_weight = carry
        # Last block first: its start is clamped like the last chunk's, so it overlaps
        # the block before, which then rewrites those columns with their values.
        b = num_blocks - 1 - i
        block_start = jnp.minimum(b * block_size, vocab - block_size)
        step = functools.partial(chunk_step, block_start=block_start, to_block=_to_bits)
        block = mesh_zeros((weight.shape[0], block_size), bits_dtype, like)
        first, stop = b * per_block, jnp.minimum((b + 1) * per_block, num_chunks)
        grads = lax.fori_loop(first, stop, step, grads._replace(weight=block))
        block = lax.bitcast_convert_type(grads.weight, weight.dtype)
        d_weight = lax.dynamic_update_slice_in_dim(d_weight, block, block_start, axis=1)
        return grads._replace(weight=None), d_weight

    d_weight = mesh_zeros(weight.shape, weight.dtype, like)
    return lax.fori_loop(0, num_blocks, block_step, (grads._replace(weight=None), d_weight))


# --------------------------------------------------------------------------- 4


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
