"""Memory-efficient fused linear cross-entropy and vocab-parallel cross-entropy.

A language-model head followed by cross-entropy, ``CE(hidden @ weight + bias, labels)``,
normally builds the ``[N, V]`` logits and, for the gradient, the ``[N, V]`` softmax:
at ``N = 8192`` tokens and a ``V = 128256`` vocabulary that is 4 GiB per float32 copy.
:func:`fused_linear_cross_entropy` never builds them. It walks over the vocabulary in
chunks inside one ``lax.fori_loop`` (a Python loop would be unrolled by XLA and keep
every chunk alive), keeps a running maximum and sum per row (the online logsumexp),
stores only the per-row logsumexp for the backward pass, and there recomputes each
chunk's logits to form ``softmax - target`` one chunk at a time.

For a vocabulary sharded over a mesh axis (Megatron's vocab-parallel head),
:func:`vocab_parallel_cross_entropy` takes each device's slice of the logits inside
``jax.shard_map`` and combines them with one ``pmax`` and one ``psum``;
:func:`vocab_parallel_fused_linear_cross_entropy` does the same for a vocab-sharded
weight without building even the local logits.

All three follow :func:`jaxreg.losses.softmax_cross_entropy` with integer labels
(torch semantics): the mean is over the rows whose label is not ``ignore_index``,
every label ignored gives 0 with gradient 0, and label smoothing ``ε`` uses the
target ``(1-ε)·onehot + ε/V``.

Unlike the rest of jaxreg, the fused functions are reverse-mode only: they are
``jax.custom_vjp`` functions, so ``jax.grad``/``jax.vjp`` work and ``jax.jvp`` does not.
That is the one documented exception to the rule that every function supports
``jvp``; a forward-mode derivative would need the ``[N, V]`` tangent logits anyway.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxreg import _numerics

__all__ = [
    "fused_linear_cross_entropy",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_fused_linear_cross_entropy",
]

# Default chunk: about this many logits per chunk. On a CPU the few chunk-sized buffers
# of a loop step should stay in cache (2**20 float32 = 4 MiB: 10-15% faster than 2**22
# at N=1024); an accelerator wants fewer, larger matmuls (2**23 = 32 MiB).
_CHUNK_ELEMENTS = {"cpu": 2**20}
_CHUNK_ELEMENTS_ACCELERATOR = 2**23
_CHUNK_MULTIPLE = 128
# bf16 weight gradients are assembled in blocks of about this many bytes (see `_block_layout`).
_BLOCK_BYTES = 2**26


# --------------------------------------------------------------------------- checks


def _check_options(ignore_index: int, label_smoothing: ArrayLike, reduction: str) -> None:
    _numerics.check_reduction(reduction)
    _numerics.check_in_unit_interval(label_smoothing, "label_smoothing")
    if not isinstance(ignore_index, int | np.integer):
        raise TypeError(f"`ignore_index` must be a Python int, got {type(ignore_index).__name__}.")


def _known_zero(x: ArrayLike) -> bool:
    """Whether ``x`` is a concrete zero (then the logit sums need not be computed)."""
    return _numerics.is_concrete(x) and float(x) == 0.0


def _check_labels(labels: ArrayLike, batch_shape: tuple[int, ...], what: str) -> jax.Array:
    labels = _numerics.as_int_array(labels, "labels")
    if labels.shape != batch_shape:
        raise ValueError(
            f"`labels` must have the batch shape of `{what}`, {batch_shape}, got {labels.shape}: "
            f"one class id per row of `{what}`."
        )
    return labels


def _check_linear(
    hidden: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None,
    labels: ArrayLike,
    names: tuple[str, str],
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array]:
    """``hidden [..., D]``, ``weight (D, V)``, ``bias (V,)`` and ``labels [...]`` as arrays,
    or an error naming the argument (``names`` are the weight's and the bias's)."""
    w_name, b_name = names
    hidden = _numerics.as_float_array(hidden, "hidden")
    weight = _numerics.as_float_array(weight, w_name)
    if hidden.ndim < 1:
        raise ValueError("`hidden` must have shape [..., D], got a scalar.")
    if weight.ndim != 2 or weight.shape[1] == 0:
        raise ValueError(f"`{w_name}` must have shape (D, V) with V >= 1, got {weight.shape}.")
    if weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"`hidden` has D={hidden.shape[-1]} features (shape {hidden.shape}) but `{w_name}` "
            f"has shape {weight.shape}; it must be (D, V) = (in_features, vocab). A torch "
            f"nn.Linear weight is (V, D): pass its transpose."
        )
    labels = _check_labels(labels, hidden.shape[:-1], "hidden")
    dtypes = {"hidden": hidden.dtype, w_name: weight.dtype}
    if bias is not None:
        bias = _numerics.as_float_array(bias, b_name)
        if bias.shape != (weight.shape[1],):
            raise ValueError(
                f"`{b_name}` must have shape ({weight.shape[1]},), one entry per column of "
                f"`{w_name}` {weight.shape}, got {bias.shape}."
            )
        dtypes[b_name] = bias.dtype
    if len(set(dtypes.values())) > 1:
        named = ", ".join(f"`{n}` {d}" for n, d in dtypes.items())
        raise TypeError(
            f"{named}: these must share one dtype; cast them, e.g. "
            f"`{w_name}.astype(hidden.dtype)` (the products accumulate in float32 anyway)."
        )
    return hidden, weight, bias, labels


def _default_chunk_size(num_rows: int, vocab: int, backend: str | None = None) -> int:
    """A vocab chunk of about ``_CHUNK_ELEMENTS`` logits for the (default) backend, a
    multiple of 128, at most ``vocab``."""
    backend = backend or jax.default_backend()
    elements = _CHUNK_ELEMENTS.get(backend, _CHUNK_ELEMENTS_ACCELERATOR)
    chunk = elements // max(num_rows, 1)
    chunk = max(_CHUNK_MULTIPLE, chunk // _CHUNK_MULTIPLE * _CHUNK_MULTIPLE)
    return min(chunk, vocab)


# --------------------------------------------------------------------------- kernel


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static settings of the chunked loops (hashable: a ``nondiff_argnums`` argument)."""

    chunk_size: int
    num_chunks: int
    with_sum: bool  # also sum the logits of each row (needed for label smoothing)


def _zeros(shape: tuple[int, ...], dtype: jnp.dtype, *like: jax.Array | None) -> jax.Array:
    """Zeros that vary over the mesh axes ``like`` varies over, as loop carries inside
    ``shard_map`` must (outside it, plain zeros)."""
    out = jnp.zeros(shape, dtype)
    for x in like:
        if x is not None:
            out = out + jnp.zeros_like(x, dtype=dtype, shape=())
    return out


def _matmul(a: jax.Array, b: jax.Array, acc: jnp.dtype) -> jax.Array:
    """``a @ b`` on the inputs' dtype with ``acc`` accumulation."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=acc)


def _to_bits(x: jax.Array) -> jax.Array:
    """The same bytes as unsigned integers of the same width."""
    return lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}"))


def _from_bits(bits: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """Floats from :func:`_to_bits`'s integers, behind a barrier XLA cannot move work across."""
    return lax.bitcast_convert_type(lax.optimization_barrier(bits), dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _slice_columns(weight: jax.Array, k: jax.Array, start: jax.Array, size: int) -> jax.Array:
    """``weight[:, start:start + size]`` inside loop step ``k``, without a copy of ``weight``."""
    # Tying the weight to the loop counter keeps everything below inside the loop. The
    # slice is taken of the raw bits: XLA:CPU has no bf16 dynamic-slice and would slice
    # a float32 copy of the whole weight, which it then hoists out of the loop (2 GiB
    # for a bf16 (4096, 128256) weight).
    weight, _ = lax.optimization_barrier((weight, k))
    bits = lax.dynamic_slice_in_dim(_to_bits(weight), start, size, axis=1)
    return _from_bits(bits, weight.dtype)


@_slice_columns.defjvp
def _slice_columns_jvp(size, primals, tangents):
    # A slice is linear: the tangent is the same slice. (Bits carry no derivative, so
    # this rule is what keeps second derivatives of the fused loss right.)
    weight, k, start = primals
    out = _slice_columns(weight, k, start, size)
    return out, lax.dynamic_slice_in_dim(tangents[0], start, size, axis=1)


def _chunk(
    k: jax.Array,
    hidden: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None,
    labels: jax.Array,
    cfg: _Config,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Logits of vocab chunk ``k`` and its bookkeeping.

    The last chunk starts at ``V - chunk_size`` (its start is clamped) instead of being
    padded, so it overlaps the chunk before; ``fresh`` marks the columns no earlier chunk
    has covered, and only those count in sums over the vocabulary.

    Returns:
      ``(logits [N, C] in the accumulation dtype, weight chunk (D, C), start, fresh [1, C],
      hit [N, C])``, where ``hit`` marks each row's label column.
    """
    acc = _numerics.compute_dtype(hidden.dtype)
    size, vocab = cfg.chunk_size, weight.shape[1]
    k = jnp.asarray(k, jnp.int32)
    start = jnp.minimum(k * size, vocab - size)
    w = _slice_columns(weight, k, start, size)
    logits = _matmul(hidden, w, acc)
    if bias is not None:
        b = lax.dynamic_slice_in_dim(bias, start, size).astype(acc)
        logits = logits + b[None, :]
    cols = start + jnp.arange(size, dtype=jnp.int32)
    fresh = (cols >= k * size)[None, :]
    hit = cols[None, :] == labels[:, None]
    return logits, w, start, fresh, hit


def _stats_loop(
    hidden: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None,
    labels: jax.Array,
    cfg: _Config,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One pass over the columns of ``weight`` with the online logsumexp."""
    acc = _numerics.compute_dtype(hidden.dtype)

    def step(k, carry):
        m, s, z_label, z_sum = carry
        logits, _, _, fresh, hit = _chunk(k, hidden, weight, bias, labels, cfg)
        masked = jnp.where(fresh, logits, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(masked, axis=1))
        # Rescale the old sum to the new maximum: exp(m - m_new) <= 1 never overflows.
        s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(masked - m_new[:, None]), axis=1)
        z_label = z_label + jnp.sum(jnp.where(hit & fresh, logits, 0.0), axis=1)
        if cfg.with_sum:
            z_sum = z_sum + jnp.sum(jnp.where(fresh, logits, 0.0), axis=1)
        return m_new, s, z_label, z_sum

    zeros = _zeros(hidden.shape[:1], acc, hidden, weight, bias, labels)
    m, s, z_label, z_sum = lax.fori_loop(
        0, cfg.num_chunks, step, (zeros - jnp.inf, zeros, zeros, zeros)
    )
    # Every chunk has a finite logit, so m is finite and s >= 1.
    return m + jnp.log(s), z_label, z_sum


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _chunked_stats(
    hidden: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None,
    labels: jax.Array,
    cfg: _Config,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per row of ``z = hidden @ weight + bias``: ``logsumexp(z)``, ``z[label]`` (0 when the
    label is no column of ``weight``) and ``sum(z)`` (0 unless ``cfg.with_sum``), ``[N]`` each."""
    return _stats_loop(hidden, weight, bias, labels, cfg)


def _chunked_stats_fwd(hidden, weight, bias, labels, cfg):
    stats = _stats_loop(hidden, weight, bias, labels, cfg)
    # Residuals: the inputs and the per-row logsumexp; no logits are kept.
    return stats, (hidden, weight, bias, labels, stats[0])


def _block_layout(weight: jax.Array, cfg: _Config) -> tuple[int, int]:
    """``(chunks per block, number of blocks)`` for assembling the weight gradient.

    XLA:CPU has no bf16 dynamic-update-slice: it would rewrite the whole ``(D, V)``
    gradient in float32 at every chunk. For bf16 the chunk gradients therefore go, as
    raw bits, into a block of about ``_BLOCK_BYTES``, and each finished block is written
    once; other dtypes write every chunk straight into the gradient (one block).
    """
    if weight.dtype != jnp.bfloat16:
        return cfg.num_chunks, 1
    per_block = _BLOCK_BYTES // (weight.shape[0] * weight.dtype.itemsize * cfg.chunk_size)
    per_block = min(max(per_block, 1), cfg.num_chunks)
    return per_block, -(-cfg.num_chunks // per_block)


def _chunked_stats_bwd(cfg, residuals, cotangents):
    hidden, weight, bias, labels, lse = residuals
    acc = _numerics.compute_dtype(hidden.dtype)
    g_lse, g_label, g_sum = (g.astype(acc)[:, None] for g in cotangents)
    vocab = weight.shape[1]
    per_block, num_blocks = _block_layout(weight, cfg)
    block_size = min(per_block * cfg.chunk_size, vocab)

    def chunk_step(k, carry, block_start, to_block):
        d_hidden, d_block, d_bias = carry
        logits, w, start, fresh, hit = _chunk(k, hidden, weight, bias, labels, cfg)
        # d logsumexp / dz = softmax, d z[label] / dz = onehot, d sum(z) / dz = 1.
        d_logits = g_lse * jnp.exp(logits - lse[:, None]) + jnp.where(hit, g_label, 0.0)
        if cfg.with_sum:
            d_logits = d_logits + g_sum
        # A weight column depends on its own column of d_logits only, so the overlapping
        # last chunk rewrites earlier columns with the same values; the hidden gradient
        # sums over columns and takes each one once.
        d_w = _matmul(hidden.T, d_logits.astype(hidden.dtype), acc).astype(weight.dtype)
        d_block = lax.dynamic_update_slice_in_dim(d_block, to_block(d_w), start - block_start, 1)
        d_once = jnp.where(fresh, d_logits, 0.0).astype(hidden.dtype)
        d_hidden = d_hidden + _matmul(d_once, w.T, acc)
        if d_bias is not None:
            d_b = jnp.sum(d_logits, axis=0).astype(bias.dtype)
            d_bias = lax.dynamic_update_slice_in_dim(d_bias, d_b, start, axis=0)
        return d_hidden, d_block, d_bias

    like = (hidden, weight, bias, labels, *cotangents)
    d_hidden = _zeros(hidden.shape, acc, *like)
    d_weight = _zeros(weight.shape, weight.dtype, *like)
    d_bias = None if bias is None else _zeros(bias.shape, bias.dtype, *like)
    if num_blocks == 1:
        step = functools.partial(chunk_step, block_start=0, to_block=lambda x: x)
        init = (d_hidden, d_weight, d_bias)
        d_hidden, d_weight, d_bias = lax.fori_loop(0, cfg.num_chunks, step, init)
    else:

        def block_step(i, carry):
            d_hidden, d_weight, d_bias = carry
            # Last block first: its start is clamped like the last chunk's, so it overlaps
            # the block before, which then rewrites those columns with their values.
            b = num_blocks - 1 - i
            block_start = jnp.minimum(b * block_size, vocab - block_size)
            step = functools.partial(chunk_step, block_start=block_start, to_block=_to_bits)
            block = _zeros((weight.shape[0], block_size), _to_bits(weight).dtype, *like)
            first, stop = b * per_block, jnp.minimum((b + 1) * per_block, cfg.num_chunks)
            d_hidden, block, d_bias = lax.fori_loop(first, stop, step, (d_hidden, block, d_bias))
            block = lax.bitcast_convert_type(block, weight.dtype)
            d_weight = lax.dynamic_update_slice_in_dim(d_weight, block, block_start, axis=1)
            return d_hidden, d_weight, d_bias

        init = (d_hidden, d_weight, d_bias)
        d_hidden, d_weight, d_bias = lax.fori_loop(0, num_blocks, block_step, init)
    return d_hidden.astype(hidden.dtype), d_weight, d_bias, None


_chunked_stats.defvjp(_chunked_stats_fwd, _chunked_stats_bwd)


def _combine_shards(
    lse: jax.Array, z_label: jax.Array, z_sum: jax.Array, axis_name: Hashable, with_sum: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The full-vocabulary statistics from each shard's: one ``pmax``, one ``psum``."""
    # The shift cancels in the logsumexp, so it needs no gradient (and pmax has none).
    m = lax.pmax(lax.stop_gradient(lse), axis_name)
    parts = [jnp.exp(lse - m), z_label] + ([z_sum] if with_sum else [])
    total = lax.psum(jnp.stack(parts), axis_name)
    return m + jnp.log(total[0]), total[1], total[2] if with_sum else z_sum


def _loss_from_stats(
    stats: tuple[jax.Array, jax.Array, jax.Array],
    labels: jax.Array,
    num_classes: int,
    ignore_index: int,
    label_smoothing: ArrayLike,
    reduction: str,
    dtype: jnp.dtype,
) -> jax.Array:
    """Torch's cross-entropy from the per-row statistics, reduced and cast to ``dtype``."""
    lse, z_label, z_sum = stats
    eps = jnp.asarray(label_smoothing, lse.dtype)
    # -sum_j t_j log p_j = lse - sum_j t_j z_j for t = (1-eps) onehot + eps/V, sum_j t_j = 1.
    loss = lse - (1.0 - eps) * z_label
    if not _known_zero(label_smoothing):
        # eps = 0 subtracts exactly nothing, also where the logit sum is not finite.
        smooth = jnp.where(eps == 0, jnp.zeros_like(z_sum), (eps / num_classes) * z_sum)
        loss = loss - smooth
    valid, _, bad = _numerics.class_id_rows(labels, num_classes, ignore_index)
    # A label that is neither ignored nor a class is an error: its row's loss and
    # gradient are NaN.
    rows = _numerics.nan_rows(jnp.where(valid, loss, jnp.zeros_like(loss)), bad)
    if reduction == "sum":
        rows = jnp.sum(rows)
    elif reduction == "mean":
        # Over the rows not ignored; with none, 0 with gradient 0 (torch gives NaN).
        rows = _numerics.torch_mean(rows, valid.astype(rows.dtype), valid)
    return rows.astype(dtype)


def _fused(
    hidden: jax.Array,
    weight: jax.Array,
    labels: jax.Array,
    bias: jax.Array | None,
    *,
    ignore_index: int,
    label_smoothing: ArrayLike,
    reduction: str,
    chunk_size: int | None,
    axis_name: Hashable | None,
) -> jax.Array:
    """The single-device and the vocab-parallel fused loss (``axis_name`` None or not)."""
    batch_shape = labels.shape
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1).astype(jnp.int32)
    vocab = weight.shape[1]
    if chunk_size is None:
        chunk_size = _default_chunk_size(hidden.shape[0], vocab)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int or None, got {chunk_size!r}.")
    chunk_size = min(int(chunk_size), vocab)
    cfg = _Config(chunk_size, -(-vocab // chunk_size), with_sum=not _known_zero(label_smoothing))
    local_labels, num_classes = labels, vocab
    if axis_name is not None:
        # Local class ids; labels of other shards (and ignored ones) match no column here.
        local_labels = labels - lax.axis_index(axis_name).astype(jnp.int32) * vocab
        num_classes = vocab * lax.axis_size(axis_name)
    # Inside shard_map, each input is made to vary over every mesh axis that any input
    # varies over (a no-op elsewhere), as its cotangent does: autodiff then sums the
    # cotangent over the axes the input is replicated on. For the hidden features,
    # replicated over the vocab axis, that is the one psum of the backward pass.
    # (XLA folds the added zeros away; run eagerly, where there is no mesh, they would
    # copy the weight, so they are skipped.)
    like = (hidden, weight, bias, local_labels)
    if not all(map(_numerics.is_concrete, like)):
        hidden, weight = (x + _zeros((), x.dtype, *like) for x in (hidden, weight))
        bias = None if bias is None else bias + _zeros((), bias.dtype, *like)
    stats = _chunked_stats(hidden, weight, bias, local_labels, cfg)
    if axis_name is not None:
        stats = _combine_shards(*stats, axis_name, cfg.with_sum)
    out = _loss_from_stats(
        stats, labels, num_classes, ignore_index, label_smoothing, reduction, hidden.dtype
    )
    return out.reshape(batch_shape) if reduction == "none" else out


# --------------------------------------------------------------------------- public


def fused_linear_cross_entropy(
    hidden: jax.Array,
    weight: jax.Array,
    labels: jax.Array,
    *,
    bias: jax.Array | None = None,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> jax.Array:
    r"""Cross-entropy of a linear layer's logits, without building the logits.

    Equals ``softmax_cross_entropy(hidden @ weight + bias, labels, ...)`` in value and
    gradient, but walks over the vocabulary in chunks of ``chunk_size`` columns inside
    one loop, so its memory is ``O(N·chunk_size + N·D)`` rather than ``O(N·V)``:

    .. math::
        \ell_i = \log\sum_{j} e^{z_{ij}} - (1-\varepsilon)\, z_{i y_i}
                 - \frac{\varepsilon}{V}\sum_j z_{ij},
        \qquad z_i = W^\top h_i + b.

    The forward pass keeps a running maximum and sum of exponentials per row (the
    online logsumexp) and saves only the per-row logsumexp; the backward pass
    recomputes each chunk's logits, forms ``softmax - target`` for that chunk, adds
    ``dlogits @ W_chunkᵀ`` to the hidden gradient and writes ``hiddenᵀ @ dlogits`` into
    the chunk's columns of the weight gradient.

    Reverse-mode only: a ``jax.custom_vjp``, so ``jax.grad`` and ``jax.vjp`` work but
    ``jax.jvp`` raises (the one documented exception to jaxreg's ``jvp`` rule).

    Args:
      hidden: ``[..., D]`` features; leading dimensions are flattened into rows.
      weight: ``(D, V)`` weight, ``(in_features, vocab)`` (a torch ``nn.Linear``
        weight is ``(V, D)``: pass its transpose).
      labels: ``[...]`` integer class ids in ``[0, V)`` or ``ignore_index``, the shape
        of ``hidden`` without its last axis. Any other label raises a ``ValueError``
        naming its position when the labels are concrete; traced, it makes its row's
        loss and gradient NaN.
      bias: optional ``(V,)`` bias.
      ignore_index: rows with this label contribute 0 and are left out of the mean.
      label_smoothing: ``ε`` in ``[0, 1]``, may be traced; the target is
        ``(1-ε)·onehot + ε/V``.
      reduction: ``"mean"`` (over rows not ignored; 0 when all are), ``"sum"`` or
        ``"none"``.
      chunk_size: vocab columns per loop step; ``None`` picks one from the shapes: about
        ``2**20`` logits per chunk on a CPU (cache-sized), ``2**23`` on an accelerator
        (the default backend's), a multiple of 128. A vocabulary that is no multiple of
        it ends with a chunk overlapping the one before; nothing is padded.

    Returns:
      The loss in the input dtype: a scalar, or ``[...]`` for ``reduction="none"``.
      bf16/f16 inputs are multiplied with float32 accumulation and reduced in float32.

    Raises:
      TypeError: for integer ``hidden``/``weight``/``bias``, non-integer ``labels``, or
        mixed input dtypes.
      ValueError: when ``weight`` is not ``(D, V)`` for ``hidden``'s ``D``, ``labels`` does
        not have ``hidden``'s batch shape, or ``bias`` is not ``(V,)``.

    Example:
      >>> hidden = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> weight = jnp.array([[1.0, -1.0, 0.0], [0.5, 0.0, 2.0]])
      >>> labels = jnp.array([0, 2, -100])
      >>> loss = jax.jit(fused_linear_cross_entropy)(hidden, weight, labels)
      >>> print(round(float(loss), 4))
      0.357

    References:
      Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models" (2024);
      Milakov & Gimelshein, "Online normalizer calculation for softmax" (2018).
    """
    hidden, weight, bias, labels = _check_linear(hidden, weight, bias, labels, ("weight", "bias"))
    _check_options(ignore_index, label_smoothing, reduction)
    _numerics.check_class_ids(labels, weight.shape[1], ignore_index)
    return _fused(
        hidden,
        weight,
        labels,
        bias,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        chunk_size=chunk_size,
        axis_name=None,
    )


def vocab_parallel_fused_linear_cross_entropy(
    hidden: jax.Array,
    weight_shard: jax.Array,
    labels: jax.Array,
    *,
    axis_name: Hashable,
    bias_shard: jax.Array | None = None,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> jax.Array:
    r""":func:`fused_linear_cross_entropy` with the weight's vocab axis sharded.

    Call it inside ``jax.shard_map`` with ``hidden`` and ``labels`` replicated over
    ``axis_name`` and ``weight`` split by columns, ``P(None, axis_name)``. Each device runs
    the chunked online logsumexp over its own columns; the per-row statistics are
    combined with one ``pmax`` (the maximum) and one ``psum`` (the rescaled sums, label
    logits and logit sums), as in Megatron-LM. The backward pass writes each device's
    weight columns locally and sums the hidden gradient with one ``psum``.

    .. math::
        \ell_i = \log\sum_{s}\sum_{j \in s} e^{z_{ij}} - (1-\varepsilon)\, z_{i y_i}
                 - \frac{\varepsilon}{V}\sum_j z_{ij}.

    Args:
      hidden: ``[..., D]`` features, the same on every device of ``axis_name``.
      weight_shard: ``(D, V / n)``, this device's columns of the ``(D, V)`` weight, in
        device order along ``axis_name``.
      labels: ``[...]`` global class ids in ``[0, V)`` or ``ignore_index``.
      axis_name: the mesh axis the vocabulary is sharded over.
      bias_shard: optional ``(V / n,)`` slice of the bias.
      ignore_index, label_smoothing, reduction, chunk_size: as in
        :func:`fused_linear_cross_entropy` (``chunk_size`` counts local columns).

    Returns:
      The loss, the same on every device of ``axis_name``: a scalar, or ``[...]`` for
      ``reduction="none"``. The mean is over the rows this device sees; if the rows
      are also sharded (data parallel), use ``reduction="sum"`` and divide by the
      global count.

    Raises:
      TypeError, ValueError: as in :func:`fused_linear_cross_entropy`. A vocabulary that
      the axis does not divide is refused by ``shard_map`` itself (a ``ValueError``).

    Example:
      Two shards of a 4-column weight, simulated with ``jax.vmap(..., axis_name=...)``
      (the collectives are the same under ``shard_map``):

      >>> hidden = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> weight = jnp.array([[1.0, -1.0, 0.0, 0.5], [0.5, 0.0, 2.0, -1.0]])
      >>> labels = jnp.array([0, 3, -100])
      >>> def shard_loss(w):
      ...     return vocab_parallel_fused_linear_cross_entropy(
      ...         hidden, w, labels, axis_name="vocab")
      >>> shards = jnp.stack([weight[:, :2], weight[:, 2:]])
      >>> loss = jax.jit(jax.vmap(shard_loss, axis_name="vocab"))(shards)
      >>> print(round(float(loss[0]), 4), round(float(loss[1]), 4))
      2.0445 2.0445
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
        axis_name=axis_name,
    )


def vocab_parallel_cross_entropy(
    logits_shard: jax.Array,
    labels: jax.Array,
    *,
    axis_name: Hashable,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    reduction: str = "mean",
) -> jax.Array:
    r"""Softmax cross-entropy of logits whose class axis is sharded over ``axis_name``.

    For use inside ``jax.shard_map`` with the logits split along their last axis,
    ``P(..., axis_name)``, and the labels replicated over ``axis_name``. As in
    Megatron-LM, the shards exchange one ``pmax`` of the per-row maximum (held
    constant: the logsumexp does not depend on the shift) and one ``psum`` of a stacked
    array (the rescaled sums of exponentials, the label logits and, with smoothing, the
    sums of logits):

    .. math::
        \ell_i = m_i + \log\sum_{s} \sum_{j \in s} e^{z_{ij} - m_i}
                 - (1-\varepsilon)\, z_{i y_i} - \frac{\varepsilon}{V}\sum_j z_{ij},
        \qquad m_i = \max_s \max_{j \in s} z_{ij}.

    The gradient is ordinary autodiff through the collectives, so ``jax.grad`` gives
    each device ``softmax - target`` for its own columns.

    Args:
      logits_shard: ``[..., V / n]`` this device's columns of the ``[..., V]`` logits,
        in device order along ``axis_name``.
      labels: ``[...]`` global integer class ids in ``[0, V)`` or ``ignore_index``.
      axis_name: the mesh axis the classes are sharded over.
      ignore_index: rows with this label contribute 0 and are left out of the mean.
      label_smoothing: ``ε``; the target is ``(1-ε)·onehot + ε/V`` with the full ``V``.
      reduction: ``"mean"`` (over rows not ignored), ``"sum"`` or ``"none"``.

    Returns:
      The loss in the logits' dtype (reduced in float32 for bf16/f16), the same on
      every device of ``axis_name``: a scalar, or ``[...]`` for ``reduction="none"``.

    Raises:
      TypeError: for integer logits or non-integer labels.
      ValueError: when ``labels`` does not have the logits' batch shape. A vocabulary
        that the axis does not divide is refused by ``shard_map`` itself.

    Example:
      Two shards of 4 classes, simulated with ``jax.vmap(..., axis_name=...)``:

      >>> logits = jnp.array([[2.0, 0.0, 1.0, -1.0], [0.5, 0.5, 0.0, 3.0]])
      >>> labels = jnp.array([2, 0])
      >>> def shard_loss(z):
      ...     return vocab_parallel_cross_entropy(z, labels, axis_name="vocab")
      >>> shards = jnp.stack([logits[:, :2], logits[:, 2:]])
      >>> loss = jax.jit(jax.vmap(shard_loss, axis_name="vocab"))(shards)
      >>> print(round(float(loss[0]), 4), round(float(loss[1]), 4))
      2.067 2.067

    References:
      Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models
      Using Model Parallelism" (2019).
    """
    logits_shard = _numerics.as_float_array(logits_shard, "logits_shard")
    if logits_shard.ndim < 1:
        raise ValueError("`logits_shard` must have shape [..., V / n], got a scalar.")
    labels = _check_labels(labels, logits_shard.shape[:-1], "logits_shard")
    _check_options(ignore_index, label_smoothing, reduction)
    z = _numerics.upcast(logits_shard)
    labels = labels.astype(jnp.int32)
    local_vocab = z.shape[-1]
    offset = lax.axis_index(axis_name).astype(jnp.int32) * local_vocab
    cols = offset + lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1)
    with_sum = not _known_zero(label_smoothing)
    stats = (
        jax.nn.logsumexp(z, axis=-1),
        jnp.sum(jnp.where(cols == labels[..., None], z, 0.0), axis=-1),
        jnp.sum(z, axis=-1) if with_sum else jnp.zeros_like(z[..., 0]),
    )
    stats = _combine_shards(*stats, axis_name, with_sum)
    num_classes = local_vocab * lax.axis_size(axis_name)
    return _loss_from_stats(
        stats, labels, num_classes, ignore_index, label_smoothing, reduction, logits_shard.dtype
    )
