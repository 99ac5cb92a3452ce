"""The chunked kernel of :mod:`jaxreg.fused` (private): per-row statistics of the logits
``s = softcap(hidden @ weight + bias)`` with a hand-written VJP, never the ``[N, V]`` logits.

:func:`chunked_stats` walks over the vocabulary in chunks inside one ``lax.fori_loop`` (a
Python loop would be unrolled by XLA and keep every chunk alive), keeps a running maximum
and sum of exponentials per row (the online logsumexp), and saves only the per-row
logsumexp for the backward pass, which recomputes each chunk's logits.
:mod:`jaxreg._fused_loss` turns the statistics into the loss; the kernel knows nothing of
reductions or labels beyond "which column is this row's".

The kernel's modules, each importing only the ones above it:

* :mod:`jaxreg._fused_xla`: the compiler workarounds (loop hoisting, bf16 dynamic
  slices and updates on CPU, shard_map varying axes), why each exists, which jaxlib they
  were tuned on and which test fails if an upgrade undoes one;
* :mod:`jaxreg._fused_chunk`: the kernel's data (:class:`Operands`, :class:`Stats`,
  :class:`Config`) and one chunk of the logits;
* :mod:`jaxreg._fused_backward`: the backward pass, in named steps;
* this module: the forward loop, the ``custom_vjp`` that ties it to the backward pass, the
  statistics of whole logits (vocab-parallel) and the default chunk size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import custom_vjp_primal_tree_values

from jaxreg import _numerics
from jaxreg._fused_backward import Perturbed, backward
from jaxreg._fused_chunk import Config, Operands, Stats, capped, chunk, row_stats
from jaxreg._fused_xla import mesh_zeros, vary_like_mesh

__all__ = [
    "Config",
    "Operands",
    "Stats",
    "chunked_stats",
    "default_chunk_size",
    "logits_stats",
    "vary_like_mesh",
]

# Default chunk: about this many logits per chunk. On a CPU the few chunk-sized buffers
# of a loop step should stay in cache (2**20 float32 = 4 MiB: 10-15% faster than 2**22
# at N=1024); an accelerator wants fewer, larger matmuls (2**23 = 32 MiB).
CHUNK_ELEMENTS = {"cpu": 2**20}
CHUNK_ELEMENTS_ACCELERATOR = 2**23
CHUNK_MULTIPLE = 128


def default_chunk_size(num_rows: int, vocab: int, backend: str | None = None) -> int:
    """A vocab chunk of about ``CHUNK_ELEMENTS`` logits for the (default) backend, a
    multiple of 128, at most ``vocab``."""
    backend = backend or jax.default_backend()
    elements = CHUNK_ELEMENTS.get(backend, CHUNK_ELEMENTS_ACCELERATOR)
    size = elements // max(num_rows, 1)
    size = max(CHUNK_MULTIPLE, size // CHUNK_MULTIPLE * CHUNK_MULTIPLE)
    return min(size, vocab)


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
    s, _ = capped(z, softcap)
    cols = lax.broadcasted_iota(jnp.int32, (1, z.shape[1]), 1)
    counted = None if limit is None else cols < limit
    hit = None if labels is None else cols == labels[:, None]
    u = None if class_weight is None else class_weight[None, :]
    m, sumexp, picked, wsum, top = row_stats(s, counted, hit, target, u, cfg)
    # A row without a counted column (a shard of padding) has lse -inf, gradient 0.
    lse = m + jnp.log(_numerics.nonzero_or_one(sumexp)[1])
    lse = jnp.where(sumexp == 0, jnp.full_like(lse, -jnp.inf), lse)
    return Stats(lse, picked, wsum, *(top or (None, None)))


# --------------------------------------------------------------------------- forward


def _stats_loop(ops: Operands, cfg: Config) -> Stats:
    """One pass over the columns of the weight with the online logsumexp."""
    acc = _numerics.compute_dtype(ops.hidden.dtype)

    def step(k, carry):
        m, sumexp, picked, wsum, top = carry
        c = chunk(k, ops, cfg)
        counted = c.fresh if c.classes is None else c.fresh & c.classes
        m_new, chunk_sumexp, chunk_picked, chunk_wsum, chunk_top = row_stats(
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
    perturbed = Perturbed(
        *(
            getattr(ops, name) is not None and getattr(ops, name).perturbed
            for name in ("hidden", "weight", "bias", "target", "class_weight", "softcap")
        )
    )
    ops = custom_vjp_primal_tree_values(ops)
    stats = _stats_loop(ops, cfg)
    # Residuals: the operands and the per-row logsumexp; no logits are kept.
    return stats, (ops, stats.lse, perturbed)


chunked_stats.defvjp(_chunked_stats_fwd, backward, symbolic_zeros=True)
