"""Losses with PyTorch's semantics, the class axis last.

``softmax_cross_entropy`` is ``torch.nn.functional.cross_entropy`` in JAX: integer
or probability labels, class weights, ``ignore_index``, label smoothing and the
three reductions, including torch's weighted mean
``Σ w[y_i]·l_i / Σ_valid w[y_i]``. It differs from torch in one documented place:
when every target is ignored the mean is 0 with gradient 0 (torch gives NaN).

Logits are reduced in float32 when they are bf16/fp16 (the subtraction of the
row maximum happens before any rounding) and the loss is returned in their dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg import _numerics

__all__ = [
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "nll_loss",
    "softmax_cross_entropy",
    "squared_loss",
]


def _check_weight(weight: ArrayLike | None, num_classes: int, dtype) -> jax.Array | None:
    if weight is None:
        return None
    weight = _numerics.as_float_array(weight, "weight")
    if weight.shape != (num_classes,):
        raise ValueError(
            f"`weight` must have shape ({num_classes},), one weight per class, got {weight.shape}."
        )
    return weight.astype(dtype)


def _check_int_labels(labels: jax.Array, batch_shape: tuple[int, ...], what: str) -> None:
    if labels.shape != batch_shape:
        raise ValueError(
            f"integer `labels` must have the shape of `{what}` without the class axis, "
            f"{batch_shape}, got {labels.shape}. For probability labels pass a floating array "
            f"of `{what}`'s shape."
        )


def _check_label_values(
    what: str,
) -> Callable[..., None]:
    """The checks on concrete values, run before tracing: class ids in range (the
    class count is the size of the ``axis`` of the ``what`` argument), and a
    ``label_smoothing`` in [0, 1]."""

    def check(*, labels: Any, axis: int, ignore_index: int, **arguments: Any) -> None:
        if "label_smoothing" in arguments:
            _numerics.check_in_unit_interval(arguments["label_smoothing"], "label_smoothing")
        shape = np.shape(arguments[what])
        if len(shape) > 0 and -len(shape) <= axis < len(shape):
            _numerics.check_class_ids(labels, shape[axis], ignore_index)

    return check


@_numerics.compiled("axis", "ignore_index", "reduction", check=_check_label_values("logits"))
def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: ArrayLike = 0.0,
    reduction: str = "mean",
) -> jax.Array:
    r"""Softmax cross-entropy with PyTorch's semantics (``F.cross_entropy``).

    With integer labels ``y`` and smoothing ``ε`` over ``C`` classes, per example

    .. math::
        l_i = (1 - \varepsilon)\, w_{y_i} (-\log p_{i y_i})
              + \frac{\varepsilon}{C} \sum_c w_c (-\log p_{ic}),
        \qquad p = \operatorname{softmax}(x_i)

    and ``"mean"`` is ``Σ_i l_i / Σ_{i valid} w_{y_i}`` (torch's division exactly, also
    for negative weights; 0 with gradient 0 when no row is valid, where torch gives
    NaN). With probability labels ``t`` (smoothed to ``(1-ε)t + ε/C``),
    ``l_i = -Σ_c w_c t_{ic} \log p_{ic}`` and ``"mean"`` is ``Σ_i l_i / N`` (0 over 0
    rows). ``0·log 0 = 0`` throughout; a NaN logit, label or weight that takes part
    makes the loss NaN.

    Args:
      logits: ``[..., C]`` unnormalised log-probabilities (class axis ``axis``).
      labels: integer class ids of shape ``logits.shape`` without ``axis``, or
        probabilities of ``logits``' shape. A class id outside ``[0, C)`` that is not
        ``ignore_index`` raises a ``ValueError`` (naming its position) when the labels
        are concrete; traced, it makes that row's loss and gradient NaN.
      axis: the class axis of ``logits`` (and of probability labels).
      weight: optional ``[C]`` class weights.
      ignore_index: integer labels equal to it contribute nothing (nor to the
        mean's denominator); not allowed with probability labels.
      label_smoothing: ``ε`` in [0, 1], may be traced; the target becomes
        ``(1-ε)·onehot + ε/C`` (torch's rule, not ``ε/(C-1)``).
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      A scalar, or the per-example losses (``logits``' shape without ``axis``) for
      ``"none"``, in ``logits``' dtype.

    Example:
      >>> import jaxreg
      >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
      >>> labels = jnp.array([0, -100])
      >>> print(jnp.round(jaxreg.softmax_cross_entropy(logits, labels), 4))
      0.1269
    """
    logits = _numerics.as_float_array(logits, "logits")
    _numerics.check_reduction(reduction)
    if logits.ndim == 0:
        raise ValueError("`logits` must have a class axis, got a scalar.")
    ax = _numerics.normalize_axis(axis, logits.ndim)
    dtype = logits.dtype
    x = jnp.moveaxis(_numerics.upcast(logits), ax, -1)
    num_classes = x.shape[-1]
    w = _check_weight(weight, num_classes, x.dtype)
    labels = jnp.asarray(labels)
    eps = jnp.asarray(label_smoothing, x.dtype)

    m, z, _, s = _numerics.shifted_exp(x, (x.ndim - 1,), None)
    log_s = jnp.log(_numerics.nonzero_or_one(s)[1])
    # log p = z - log Σ exp(z), with z = x - max: exact for extreme logits.

    if jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != logits.shape:
            raise ValueError(
                f"floating `labels` are probabilities and must have `logits`' shape "
                f"{logits.shape}, got {labels.shape}; class ids must be integers "
                f"(`labels.astype(jnp.int32)`)."
            )
        if ignore_index != -100:
            raise ValueError(
                "`ignore_index` is not supported with probability labels (as in torch); "
                "give ignored rows an all-zero target instead, or use integer labels."
            )
        target = jnp.moveaxis(labels, ax, -1).astype(x.dtype)
        target = (1.0 - eps) * target + eps / num_classes
        if w is not None:
            target = target * _along_last(w, x.ndim)
        log_p = z - log_s
        # -Σ t log p with 0·log p = 0 even where log p = -inf.
        losses = -jnp.sum(_t_log_p(target, log_p), axis=-1)
        if reduction == "mean" and losses.size == 0:
            return jnp.zeros((), dtype)  # the mean over no row: 0 with gradient 0
        return _numerics.reduce(losses, reduction).astype(dtype)

    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"`labels` must be integer class ids or floating probabilities, got {labels.dtype}."
        )
    _check_int_labels(labels, x.shape[:-1], "logits")
    valid, safe_labels, bad = _numerics.class_id_rows(labels, num_classes, ignore_index)
    # Gathered from x, then shifted: the same numbers as gathering from z, and z is
    # then used only by the sum above, so it is never written to memory.
    x_y = jnp.take_along_axis(x, safe_labels[..., None], axis=-1)
    z_y = (x_y - m)[..., 0]
    log_s = jnp.squeeze(log_s, -1)
    nll = log_s - z_y
    sample_weight = jnp.ones_like(nll) if w is None else w[safe_labels]
    sample_weight = jnp.where(valid, sample_weight, jnp.zeros_like(sample_weight))
    # Σ_c w_c (-log p_c) = log s · Σ_c w_c - Σ_c w_c z_c: the smoothing term.
    if w is None:
        smooth = num_classes * log_s - jnp.sum(z, axis=-1)
    else:
        smooth = jnp.sum(w) * log_s - jnp.sum(_along_last(w, x.ndim) * z, axis=-1)
    # eps = 0 adds exactly nothing, also where the smoothing term is not finite (a -inf
    # logit, a NaN weight of a class no label names), as in torch.
    smooth = jnp.where(eps == 0, jnp.zeros_like(smooth), (eps / num_classes) * smooth)
    losses = (1.0 - eps) * (sample_weight * nll) + smooth
    losses = _numerics.nan_rows(jnp.where(valid, losses, jnp.zeros_like(losses)), bad)
    if reduction == "mean":
        return _numerics.torch_mean(losses, sample_weight, valid).astype(dtype)
    return _numerics.reduce(losses, reduction).astype(dtype)


def _along_last(w: jax.Array, ndim: int) -> jax.Array:
    """A ``[C]`` vector reshaped to broadcast along the last axis of a rank-``ndim`` array."""
    return w.reshape((1,) * (ndim - 1) + w.shape)


def _t_log_p(t: jax.Array, log_p: jax.Array) -> jax.Array:
    """``t·log p`` with ``0·log p = 0`` even where ``log p = -inf`` (the double where).

    Only the undefined ``0·(-inf)`` is replaced: where ``log p`` is finite the product is
    taken as it is, so the gradient in ``t`` is ``log p`` also at ``t = 0`` (torch's).
    """
    undefined = (t == 0) & (log_p == -jnp.inf)
    return t * jnp.where(undefined, jnp.zeros_like(log_p), log_p)


@_numerics.compiled("axis", "ignore_index", "reduction", check=_check_label_values("log_probs"))
def nll_loss(
    log_probs: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> jax.Array:
    r"""Negative log-likelihood of class ids, PyTorch's ``F.nll_loss``.

    .. math::
        l_i = -w_{y_i} \log p_{i y_i}, \qquad
        \text{mean} = \frac{\sum_i l_i}{\sum_{i \text{ valid}} w_{y_i}}

    Args:
      log_probs: ``[..., C]`` log-probabilities (e.g. from ``log_softmax``).
      labels: integer class ids, ``log_probs``' shape without ``axis``; out of range
        (and not ``ignore_index``): a ``ValueError`` when concrete, a NaN row when traced.
      axis: the class axis.
      weight: optional ``[C]`` class weights.
      ignore_index: labels equal to it contribute nothing.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``; every target ignored gives a
        mean of 0 (torch: NaN).

    Returns:
      A scalar, or per-example losses for ``"none"``, in ``log_probs``' dtype.

    Example:
      >>> import jaxreg
      >>> log_probs = jnp.log(jnp.array([[0.5, 0.5], [0.25, 0.75]]))
      >>> print(jnp.round(jaxreg.nll_loss(log_probs, jnp.array([0, 1]), reduction="sum"), 4))
      0.9808
    """
    log_probs = _numerics.as_float_array(log_probs, "log_probs")
    _numerics.check_reduction(reduction)
    labels = _numerics.as_int_array(labels, "labels")
    if log_probs.ndim == 0:
        raise ValueError("`log_probs` must have a class axis, got a scalar.")
    ax = _numerics.normalize_axis(axis, log_probs.ndim)
    dtype = log_probs.dtype
    lp = jnp.moveaxis(_numerics.upcast(log_probs), ax, -1)
    num_classes = lp.shape[-1]
    w = _check_weight(weight, num_classes, lp.dtype)
    _check_int_labels(labels, lp.shape[:-1], "log_probs")
    valid, safe_labels, bad = _numerics.class_id_rows(labels, num_classes, ignore_index)
    picked = jnp.take_along_axis(lp, safe_labels[..., None], axis=-1)[..., 0]
    sample_weight = jnp.ones_like(picked) if w is None else w[safe_labels]
    sample_weight = jnp.where(valid, sample_weight, jnp.zeros_like(sample_weight))
    losses = jnp.where(valid, -sample_weight * picked, jnp.zeros_like(picked))
    losses = _numerics.nan_rows(losses, bad)
    if reduction == "mean":
        return _numerics.torch_mean(losses, sample_weight, valid).astype(dtype)
    return _numerics.reduce(losses, reduction).astype(dtype)


def _broadcast_to_input(x: ArrayLike | None, shape: tuple[int, ...], name: str, dtype):
    if x is None:
        return None
    x = _numerics.as_float_array(x, name)
    try:
        if jnp.broadcast_shapes(x.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"`{name}` of shape {x.shape} does not broadcast to `logits`' shape {shape}."
        ) from None
    return jnp.broadcast_to(x.astype(dtype), shape)


@_numerics.compiled("reduction")
def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    targets: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> jax.Array:
    r"""Binary cross-entropy on logits, PyTorch's ``F.binary_cross_entropy_with_logits``.

    .. math::
        l = w \big[(1 - t)\, x + (1 + (\text{pw} - 1)\, t) \log(1 + e^{-x})\big]
          = -w \big[\text{pw}\, t \log \sigma(x) + (1 - t) \log(1 - \sigma(x))\big]

    ``log(1 + e^{-x})`` is computed as ``softplus(-x)`` (no overflow at ±1e4).

    Args:
      logits: any shape.
      targets: probabilities in [0, 1], ``logits``' shape.
      weight: optional per-element weight, broadcastable to ``logits``.
      pos_weight: optional weight of positive examples, broadcastable to
        ``logits`` (one per class along the last axis, as in torch).
      reduction: ``"none"``, ``"mean"`` (over all elements) or ``"sum"``.

    Returns:
      A scalar, or the elementwise losses for ``"none"``, in ``logits``' dtype.

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.binary_cross_entropy_with_logits(
      ...     jnp.array([0.0]), jnp.array([1.0])), 4))
      0.6931
    """
    logits = _numerics.as_float_array(logits, "logits")
    targets = _numerics.as_float_array(targets, "targets")
    _numerics.check_same_shape(logits, targets, "logits", "targets")
    _numerics.check_reduction(reduction)
    dtype = logits.dtype
    x = _numerics.upcast(logits)
    t = targets.astype(x.dtype)
    log_sigmoid_neg = jax.nn.softplus(-x)  # -log σ(x) = log(1 + e^{-x})
    pw = _broadcast_to_input(pos_weight, x.shape, "pos_weight", x.dtype)
    if pw is not None:
        log_sigmoid_neg = (1.0 + (pw - 1.0) * t) * log_sigmoid_neg
    losses = (1.0 - t) * x + log_sigmoid_neg
    w = _broadcast_to_input(weight, x.shape, "weight", x.dtype)
    if w is not None:
        losses = losses * w
    return _numerics.reduce(losses, reduction).astype(dtype)


@_numerics.compiled()
def squared_loss(pred: ArrayLike, target: ArrayLike) -> jax.Array:
    r"""Elementwise half squared error, :math:`\tfrac12 (\hat y - y)^2` (gradient ``ŷ - y``).

    Example:
      >>> import jaxreg
      >>> print(jaxreg.squared_loss(jnp.array([3.0]), jnp.array([1.0])))
      [2.]
    """
    pred = _numerics.as_float_array(pred, "pred")
    target = _numerics.as_float_array(target, "target")
    _numerics.check_same_shape(pred, target, "pred", "target")
    diff = pred - target.astype(pred.dtype)
    return 0.5 * diff * diff


@_numerics.compiled("reduction")
def mse_loss(pred: ArrayLike, target: ArrayLike, *, reduction: str = "mean") -> jax.Array:
    r"""Mean squared error, PyTorch's ``F.mse_loss``: :math:`(\hat y - y)^2`, then reduced.

    Unlike torch, shapes must match exactly (torch broadcasts with a warning).

    Example:
      >>> import jaxreg
      >>> print(jaxreg.mse_loss(jnp.array([3.0, 1.0]), jnp.array([1.0, 1.0])))
      2.0
    """
    pred = _numerics.as_float_array(pred, "pred")
    target = _numerics.as_float_array(target, "target")
    _numerics.check_same_shape(pred, target, "pred", "target")
    _numerics.check_reduction(reduction)
    x = _numerics.upcast(pred)
    diff = x - target.astype(x.dtype)
    return _numerics.reduce(diff * diff, reduction).astype(pred.dtype)
