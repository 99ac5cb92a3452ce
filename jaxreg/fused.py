"""Memory-efficient fused linear cross-entropy and vocab-parallel cross-entropy.

A language-model head followed by cross-entropy, ``CE(hidden @ linear_weight + bias)``,
normally builds the ``[N, V]`` logits and, for the gradient, the ``[N, V]`` softmax: at
``N = 8192`` tokens and a ``V = 128256`` vocabulary that is 4 GiB per float32 copy.
:func:`fused_linear_cross_entropy` never builds them: a chunked kernel
(``jaxreg/_fused_kernel.py``) computes a few statistics per row (the logsumexp, the
label's logit, the sum of the logits) and ``jaxreg/_fused_loss.py`` turns them into the
loss; the argument checks the three functions share are in ``jaxreg/_fused_checks.py``.

For a vocabulary sharded over a mesh axis (Megatron's vocab-parallel head),
:func:`vocab_parallel_cross_entropy` takes each device's slice of the logits inside
``jax.shard_map`` and combines the statistics with one ``pmax`` and one ``psum``;
:func:`vocab_parallel_fused_linear_cross_entropy` does the same for a vocab-sharded
weight without building even the local logits.

All three follow :func:`jaxreg.losses.softmax_cross_entropy` (torch semantics) and take
the options of current LLM recipes, composable with each other: class ``weight`` (torch's
weighted mean), per-token ``token_weight``, label smoothing, probability targets, PaLM's
``z_loss``, logit soft-capping ``softcap``, a padded vocabulary (``num_valid_classes``),
auxiliary outputs (``return_aux``) and a float32 loss for bf16 inputs (``out_dtype``).

Unlike the rest of jaxreg, the fused functions are reverse-mode only: they are
``jax.custom_vjp`` functions, so ``jax.grad``/``jax.vjp`` work and ``jax.jvp`` does not.
That is the one documented exception to the rule that every function supports ``jvp``;
a forward-mode derivative would need the ``[N, V]`` tangent logits anyway.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg import _fused_kernel as kernel
from jaxreg import _numerics
from jaxreg._fused_checks import (
    Options,
    check_linear,
    check_options,
    check_row_weights,
    check_targets,
)
from jaxreg._fused_loss import head_loss, local_vocab

__all__ = [
    "CrossEntropyAux",
    "fused_linear_cross_entropy",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_fused_linear_cross_entropy",
]


class CrossEntropyAux(NamedTuple):
    """The auxiliary outputs of the fused losses (``return_aux=True``), from the same pass.

    Attributes:
      logsumexp: ``[...]`` each token's ``log Σ_c exp(s_c)`` over the classes (every
        token, ignored ones included), in the loss's dtype.
      z_loss: the z-loss term included in the loss, reduced like it (a scalar, or ``[...]``
        for ``reduction="none"``), in the loss's dtype.
      num_correct: ``int32`` scalar, the number of tokens taking part (label not ignored,
        token weight not 0) whose argmax over the classes is the label (for probability
        targets: the target's argmax). Ties go to the first class, as ``jnp.argmax``.
    """

    logsumexp: jax.Array
    z_loss: jax.Array
    num_correct: jax.Array


def _fused(
    hidden: ArrayLike,
    linear_weight: ArrayLike,
    labels: ArrayLike,
    bias: ArrayLike | None,
    weight: ArrayLike | None,
    token_weight: ArrayLike | None,
    opts: Options,
    chunk_size: int | None,
    axis_name: Hashable | None,
    names: tuple[str, str],
) -> Any:
    """The single-device and the vocab-parallel fused loss (``axis_name`` None or not)."""
    hidden, linear_weight, bias = check_linear(hidden, linear_weight, bias, names)
    opts = check_options(opts, hidden.dtype)
    batch_shape, local = hidden.shape[:-1], linear_weight.shape[1]
    labels = check_targets(labels, batch_shape, local, "hidden", opts.ignore_index)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    vocab = local_vocab(local, axis_name, opts.num_valid_classes)
    weight, token_weight = check_row_weights(weight, token_weight, vocab.classes, batch_shape)
    if axis_name is None and not jnp.issubdtype(labels.dtype, jnp.floating):
        _numerics.check_class_ids(labels, vocab.classes, opts.ignore_index)
    if chunk_size is None:
        chunk_size = kernel.default_chunk_size(hidden.shape[0], local)
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int or None, got {chunk_size!r}.")
    chunk_size = min(int(chunk_size), local)

    def stats_fn(local_labels, target, u, cap, limit, flags):
        cfg = kernel.Config(chunk_size, -(-local // chunk_size), **flags)
        operands = (hidden, linear_weight, bias, local_labels, target, u, cap, limit)
        return kernel.chunked_stats(kernel.Operands(*kernel.vary_like_mesh(operands)), cfg)

    acc = _numerics.compute_dtype(hidden.dtype)
    return _result(
        *head_loss(stats_fn, labels, weight, token_weight, opts, vocab, batch_shape, axis_name, acc)
    )


def _result(loss: jax.Array, aux: tuple | None) -> Any:
    """``loss``, or ``(loss, CrossEntropyAux)`` when the aux was asked for."""
    return loss if aux is None else (loss, CrossEntropyAux(*aux))


# --------------------------------------------------------------------------- public


def fused_linear_cross_entropy(
    hidden: ArrayLike,
    linear_weight: ArrayLike,
    labels: ArrayLike,
    *,
    bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    token_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    softcap: ArrayLike | None = None,
    num_valid_classes: int | None = None,
    reduction: str = "mean",
    return_aux: bool = False,
    out_dtype: Any = None,
    chunk_size: int | None = None,
) -> Any:
    r"""Cross-entropy of a linear layer's logits, without building the logits.

    Equals ``softmax_cross_entropy(hidden @ linear_weight + bias, labels, ...)`` in value
    and gradient (plus the options below), but walks over the vocabulary in chunks of
    ``chunk_size`` columns inside one loop: memory ``O(N·chunk_size + N·D)``, not
    ``O(N·V)``. Per token ``i`` with label ``y``, token weight ``τ``, class weights ``w``
    and smoothing ``ε`` over the ``C`` classes:

    .. math::
        \ell_i = \tau_i\Big[(1-\varepsilon)\, w_{y}\,(L_i - s_{iy})
                 + \frac{\varepsilon}{C}\sum_{c<C} w_c\,(L_i - s_{ic})\Big]
                 + \zeta\,\tau_i L_i^2,
        \qquad L_i = \log\sum_{c<C} e^{s_{ic}},\quad
        s_i = \kappa\tanh\frac{W^\top h_i + b}{\kappa}.

    ``"mean"`` divides the cross-entropy by ``Σ τ_i w_{y_i}`` (torch's weighted mean) and
    the z-loss by ``Σ τ_i`` (not class-weighted, as Liger), both over the tokens taking
    part; when none does the mean is 0 with gradient 0 (torch: NaN). Probability targets
    ``t`` (smoothed to ``(1-ε)t + ε/C``) give ``τ_i Σ_c w_c t_ic (L_i - s_ic)`` and a mean
    over ``Σ τ_i`` (torch: ``N``).

    The forward pass keeps a running maximum and sum of exponentials per row (the online
    logsumexp) and saves only the per-row logsumexp; the backward pass recomputes each
    chunk's logits and forms their gradient one chunk at a time. Reverse-mode only: a
    ``jax.custom_vjp``, so ``jax.grad`` and ``jax.vjp`` work but ``jax.jvp`` raises (the
    one documented exception to jaxreg's ``jvp`` rule).

    Args:
      hidden: ``[..., D]`` features; leading dimensions are flattened into rows.
      linear_weight: ``(D, V)``, ``(in_features, vocab)``. A torch ``nn.Linear`` weight is
        ``(V, D)``: pass its transpose. A square ``D == V`` weight passed the wrong way
        round cannot be detected by its shape: it silently gives another loss.
      labels: ``[...]`` integer class ids in ``[0, C)`` or ``ignore_index`` (any other id
        raises a ``ValueError`` naming its position when concrete, and makes its row's
        loss and gradient NaN when traced); or probabilities ``[..., V]``. A probability
        target is itself ``N×V``: it is the caller's array, and no *other* ``N×V`` array is
        built (its gradient, if asked for, is one too); columns ``>= C`` take no part.
      bias: optional ``(V,)`` bias, ``hidden``'s dtype.
      weight: optional ``(C,)`` class weights (torch's ``weight``).
      token_weight: optional ``[...]`` weight per token: it multiplies the token's loss and
        its share of the mean's denominator (``τ_i w_{y_i}``), a loss mask beyond
        ``ignore_index``; a token of weight 0 takes no part, like an ignored one (its
        derivative in that weight is 0). The z-loss term is token-weighted only.
      ignore_index: integer labels equal to it take no part; not allowed with
        probabilities.
      label_smoothing: ``ε`` in ``[0, 1]``, may be traced; the target is
        ``(1-ε)·onehot + ε/C``.
      z_loss: ``ζ >= 0``, may be traced: PaLM's auxiliary ``ζ·logsumexp²`` per token.
      softcap: ``κ > 0`` or None, may be traced: the logits become ``κ·tanh(z/κ)`` before
        everything else (Gemma 2); it is differentiated like any input.
      num_valid_classes: ``C``: only the first ``C`` columns are classes (a vocabulary
        padded to a multiple of 128); the others take part in nothing (softmax, smoothing,
        argmax). None: ``C = V``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per token, ``[...]``).
      return_aux: also return a :class:`CrossEntropyAux` (per-token logsumexp, the z-loss
        term, the number of correct argmax predictions), computed in the same pass.
      out_dtype: the dtype of the loss and of the aux's floating outputs; None:
        ``hidden``'s. ``jnp.float32`` returns the float32 loss of bf16 inputs unrounded.
      chunk_size: vocab columns per loop step; None picks one from the shapes: about
        ``2**20`` logits per chunk on a CPU (cache-sized), ``2**23`` on an accelerator,
        a multiple of 128. A vocabulary that is no multiple of it ends with a chunk
        overlapping the one before; nothing is padded.

    Returns:
      The loss in ``out_dtype``: a scalar, or ``[...]`` for ``reduction="none"``; with
      ``return_aux``, ``(loss, CrossEntropyAux)``. bf16/f16 inputs are multiplied with
      float32 accumulation and reduced in float32; gradients come in each input's dtype.

    Raises:
      TypeError: for integer ``hidden``/``linear_weight``/``bias``, mixed dtypes among
        them, or a non-floating ``out_dtype``.
      ValueError: for shapes that do not fit (named in the message), a smoothing outside
        ``[0, 1]``, a negative ``z_loss``, a non-positive ``softcap``, or
        ``num_valid_classes`` above ``V``.

    Example:
      >>> hidden = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> linear_weight = jnp.array([[1.0, -1.0, 0.0], [0.5, 0.0, 2.0]])
      >>> labels = jnp.array([0, 2, -100])
      >>> loss = jax.jit(fused_linear_cross_entropy)(hidden, linear_weight, labels)
      >>> print(round(float(loss), 4))
      0.357
      >>> loss, aux = fused_linear_cross_entropy(
      ...     hidden, linear_weight, labels, z_loss=1e-4, softcap=30.0, return_aux=True)
      >>> print(round(float(loss), 4), int(aux.num_correct))
      0.3578 2

    References:
      Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models" (2024);
      Milakov & Gimelshein, "Online normalizer calculation for softmax" (2018);
      Chowdhery et al., "PaLM" (2022), z-loss; Gemma Team, "Gemma 2" (2024), soft-capping.
    """
    opts = Options(
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        num_valid_classes,
        reduction,
        return_aux,
        out_dtype,
    )
    return _fused(
        hidden,
        linear_weight,
        labels,
        bias,
        weight,
        token_weight,
        opts,
        chunk_size,
        None,
        ("linear_weight", "bias"),
    )


def vocab_parallel_fused_linear_cross_entropy(
    hidden: ArrayLike,
    weight_shard: ArrayLike,
    labels: ArrayLike,
    *,
    axis_name: Hashable,
    bias_shard: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    token_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    softcap: ArrayLike | None = None,
    num_valid_classes: int | None = None,
    reduction: str = "mean",
    return_aux: bool = False,
    out_dtype: Any = None,
    chunk_size: int | None = None,
) -> Any:
    r""":func:`fused_linear_cross_entropy` with the weight's vocab axis sharded.

    Call it inside ``jax.shard_map`` with ``hidden`` and ``labels`` replicated over
    ``axis_name`` and the weight split by columns, ``P(None, axis_name)``. Each device runs
    the chunked online logsumexp over its own columns; the per-row statistics are
    combined with one ``pmax`` (the maximum) and one ``psum`` (the rescaled sums, label
    logits and logit sums), as in Megatron-LM (``return_aux`` adds a ``pmax``/``pmin``
    pair for the argmax). The backward pass writes each device's weight columns locally
    and sums the hidden gradient with one ``psum``.

    .. math::
        \ell_i = \log\sum_{s}\sum_{j \in s} e^{s_{ij}} - (1-\varepsilon)\, s_{i y_i}
                 - \frac{\varepsilon}{C}\sum_{j<C} s_{ij}\quad(+\text{ the options of }
                 \texttt{fused\_linear\_cross\_entropy}).

    Args:
      hidden: ``[..., D]`` features, the same on every device of ``axis_name``.
      weight_shard: ``(D, V / n)``, this device's columns of the ``(D, V)`` weight, in
        device order along ``axis_name``.
      labels: ``[...]`` global class ids, or this device's columns ``[..., V / n]`` of
        the probabilities.
      axis_name: the mesh axis the vocabulary is sharded over.
      bias_shard: optional ``(V / n,)`` slice of the bias.
      weight: optional ``(C,)`` class weights, the whole vector on every device.
      num_valid_classes: the global number of classes ``C``: global columns ``>= C`` are
        padding, on whichever devices they lie.
      chunk_size: vocab columns per loop step, counted in local columns.

    ``token_weight``, ``ignore_index``, ``label_smoothing``, ``z_loss``, ``softcap``,
    ``reduction``, ``return_aux`` and ``out_dtype`` are those of
    :func:`fused_linear_cross_entropy`.

    Returns:
      As :func:`fused_linear_cross_entropy`, the same on every device of ``axis_name``.
      The mean is over the rows this device sees; if the rows are also sharded (data
      parallel), use ``reduction="sum"`` and divide by the global count.

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
    opts = Options(
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        num_valid_classes,
        reduction,
        return_aux,
        out_dtype,
    )
    return _fused(
        hidden,
        weight_shard,
        labels,
        bias_shard,
        weight,
        token_weight,
        opts,
        chunk_size,
        axis_name,
        ("weight_shard", "bias_shard"),
    )


def vocab_parallel_cross_entropy(
    logits_shard: ArrayLike,
    labels: ArrayLike,
    *,
    axis_name: Hashable,
    weight: ArrayLike | None = None,
    token_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    z_loss: ArrayLike = 0.0,
    softcap: ArrayLike | None = None,
    num_valid_classes: int | None = None,
    reduction: str = "mean",
    return_aux: bool = False,
    out_dtype: Any = None,
) -> Any:
    r"""Softmax cross-entropy of logits whose class axis is sharded over ``axis_name``.

    For use inside ``jax.shard_map`` with the logits split along their last axis,
    ``P(..., axis_name)``, and the labels replicated over ``axis_name``. As in
    Megatron-LM, the shards exchange one ``pmax`` of the per-row maximum (held
    constant: the logsumexp does not depend on the shift) and one ``psum`` of a stacked
    array (the rescaled sums of exponentials, the label logits and, with smoothing, the
    sums of logits):

    .. math::
        \ell_i = m_i + \log\sum_{s} \sum_{j \in s} e^{z_{ij} - m_i}
                 - (1-\varepsilon)\, z_{i y_i} - \frac{\varepsilon}{C}\sum_{j<C} z_{ij},
        \qquad m_i = \max_s \max_{j \in s} z_{ij},

    with the options of :func:`fused_linear_cross_entropy`. The gradient is ordinary
    autodiff through the collectives, so ``jax.grad`` gives each device ``softmax -
    target`` for its own columns.

    Args:
      logits_shard: ``[..., V / n]`` this device's columns of the ``[..., V]`` logits,
        in device order along ``axis_name``.
      labels: ``[...]`` global integer class ids in ``[0, C)`` or ``ignore_index``, or this
        device's columns ``[..., V / n]`` of the probabilities.
      axis_name: the mesh axis the classes are sharded over.

    ``weight``, ``token_weight``, ``ignore_index``, ``label_smoothing``, ``z_loss``,
    ``softcap``, ``num_valid_classes``, ``reduction``, ``return_aux`` and ``out_dtype``
    are those of :func:`vocab_parallel_fused_linear_cross_entropy`.

    Returns:
      The loss in ``out_dtype`` (default: the logits' dtype; reduced in float32 for
      bf16/f16), the same on every device of ``axis_name``: a scalar, or ``[...]`` for
      ``reduction="none"``; with ``return_aux``, ``(loss, CrossEntropyAux)``.

    Raises:
      TypeError: for integer logits or non-integer, non-floating labels.
      ValueError: when ``labels`` does not fit the logits' shape. A vocabulary that the
        axis does not divide is refused by ``shard_map`` itself.

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
    opts = Options(
        ignore_index,
        label_smoothing,
        z_loss,
        softcap,
        num_valid_classes,
        reduction,
        return_aux,
        out_dtype,
    )
    opts = check_options(opts, logits_shard.dtype)
    batch_shape, local = logits_shard.shape[:-1], logits_shard.shape[-1]
    labels = check_targets(labels, batch_shape, local, "logits_shard", ignore_index)
    vocab = local_vocab(local, axis_name, opts.num_valid_classes)
    weight, token_weight = check_row_weights(weight, token_weight, vocab.classes, batch_shape)
    z = _numerics.upcast(logits_shard).reshape(-1, local)

    def stats_fn(local_labels, target, u, cap, limit, flags):
        cfg = kernel.Config(local, 1, **flags)
        return kernel.logits_stats(z, local_labels, target, u, cap, limit, cfg)

    return _result(
        *head_loss(
            stats_fn, labels, weight, token_weight, opts, vocab, batch_shape, axis_name, z.dtype
        )
    )
