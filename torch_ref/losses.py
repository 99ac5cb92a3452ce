"""PyTorch twin of :mod:`jaxreg.losses`: ``F.cross_entropy`` and friends, class axis last.

These are torch's own ``F.cross_entropy``, ``F.nll_loss``,
``F.binary_cross_entropy_with_logits`` and ``F.mse_loss``; torch_ref only moves the
class axis (last, or ``axis``, as in jaxreg) to dim 1 where torch wants it, and adds
jaxreg's conventions where raw torch differs:

* every target ignored with ``reduction="mean"``: loss 0 and gradient 0 (torch:
  ``0/0 = NaN``); the mean over 0 rows of probability labels likewise;
* a class id out of range (not ``ignore_index``) raises a ``ValueError`` naming its
  position (torch raises an error that names neither);
* ``ignore_index`` with probability labels raises a ``ValueError`` (torch ignores it);
* shapes must match exactly (``F.mse_loss`` broadcasts with a warning);
* bf16/fp16 inputs are reduced in float32 and the loss returned in their dtype;
* integer data where floats are needed raises a ``TypeError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from torch_ref import _numerics

__all__ = [
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "nll_loss",
    "softmax_cross_entropy",
    "squared_loss",
]


# --- private functions -----------------------------------------------------------


def _class_first(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x`` with its class axis where torch wants it: dim 1 (or 0 for a single example)."""
    return x if x.ndim == 1 else x.movedim(axis, 1)


def _check_scores(x: torch.Tensor, name: str, axis: int) -> tuple[torch.Tensor, int]:
    """The logits (or log-probabilities) as floats with a class axis; the axis, normalized."""
    x = _numerics.as_float_array(x, name)
    if x.ndim == 0:
        raise ValueError(f"`{name}` must have a class axis, got a scalar.")
    return x, _numerics.normalize_axis(axis, x.ndim)


def _check_weight(
    weight: torch.Tensor | None, num_classes: int, dtype: torch.dtype
) -> torch.Tensor | None:
    if weight is None:
        return None
    weight = _numerics.as_float_array(weight, "weight")
    if weight.shape != (num_classes,):
        raise ValueError(
            f"`weight` must have shape ({num_classes},), one weight per class, "
            f"got {tuple(weight.shape)}."
        )
    return weight.to(dtype)


def _class_ids(
    labels: torch.Tensor, x: torch.Tensor, axis: int, name: str, ignore_index: int
) -> torch.Tensor:
    """Integer ``labels`` of ``x``'s shape without ``axis``, as torch's int64 targets."""
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"`labels` must be an integer tensor of class ids, got {labels.dtype}.")
    batch_shape = x.shape[:axis] + x.shape[axis + 1 :]
    if labels.shape != batch_shape:
        raise ValueError(
            f"integer `labels` must have the shape of `{name}` without the class axis, "
            f"{tuple(batch_shape)}, got {tuple(labels.shape)}. For probability labels pass "
            f"a floating tensor of `{name}`'s shape."
        )
    _numerics.check_class_ids(labels, x.shape[axis], ignore_index)
    return labels.long()


def _reduce_class_ids(
    loss: Callable[[str], torch.Tensor],
    labels: torch.Tensor,
    ignore_index: int,
    reduction: str,
) -> torch.Tensor:
    """``loss(reduction)``, except a mean with no valid target: 0 with gradient 0.

    torch's mean is ``Σ w[y_i] l_i / Σ_valid w[y_i]``, which is ``0/0 = NaN`` when
    every target is ignored; jaxreg (and so torch_ref) returns 0 there. Any other
    weight sum (negative, or 0 with valid targets) is torch's division.
    """
    if reduction == "mean" and not bool((labels != ignore_index).any()):
        return loss("sum") * 0.0
    return loss(reduction)


# --- classification ------------------------------------------------------------------


def softmax_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    axis: int = -1,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Softmax cross-entropy, ``F.cross_entropy`` with the class axis last.

    Mirrors :func:`jaxreg.losses.softmax_cross_entropy`. With integer labels ``y``,
    smoothing ``ε`` over ``C`` classes and ``p = softmax(x_i)``, per example

    .. math::
        l_i = (1 - \varepsilon)\, w_{y_i} (-\log p_{i y_i})
              + \frac{\varepsilon}{C} \sum_c w_c (-\log p_{ic})

    and ``"mean"`` is ``Σ_i l_i / Σ_{i valid} w_{y_i}``. With probability labels
    ``t`` (smoothed to ``(1-ε)t + ε/C``), ``l_i = -Σ_c w_c t_{ic} log p_{ic}`` and
    ``"mean"`` is ``Σ_i l_i / N``.

    Where raw torch differs: the class axis is ``axis`` (default last), moved to
    dim 1 for torch; when every target is ignored the mean is 0 with gradient 0
    (torch: NaN); ``ignore_index`` other than -100 with probability labels raises.

    Args:
      logits: ``[..., C]`` unnormalised log-probabilities (class axis ``axis``).
      labels: integer class ids, ``logits``' shape without ``axis``; or
        probabilities of ``logits``' shape.
      axis: the class axis of ``logits`` (and of probability labels).
      weight: optional ``[C]`` class weights.
      ignore_index: integer labels equal to it contribute nothing (nor to the mean's
        denominator); integer labels only.
      label_smoothing: ``ε`` in [0, 1]; the target becomes ``(1-ε)·onehot + ε/C``.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      A scalar, or the per-example losses (``logits``' shape without ``axis``) for
      ``"none"``, in ``logits``' dtype.

    Example:
      >>> import torch
      >>> from torch_ref.losses import softmax_cross_entropy
      >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
      >>> print(round(softmax_cross_entropy(logits, torch.tensor([0, -100])).item(), 4))
      0.1269
    """
    logits, ax = _check_scores(logits, "logits", axis)
    _numerics.check_reduction(reduction)
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"`label_smoothing` must lie in [0, 1], got {float(label_smoothing)}.")
    x = _numerics.upcast(logits)
    w = _check_weight(weight, x.shape[ax], x.dtype)
    labels = torch.as_tensor(labels, device=x.device)
    if labels.is_floating_point():
        if ignore_index != -100:
            raise ValueError(
                "`ignore_index` is not supported with probability labels (torch ignores it); "
                "give ignored rows an all-zero target instead, or use integer labels."
            )
        _numerics.check_same_shape(x, labels, "logits", "labels")
        if reduction == "mean" and x.numel() == 0:
            return (x.sum() * 0.0).to(logits.dtype)  # the mean over no row: 0 (torch: NaN)
        out = F.cross_entropy(
            _class_first(x, ax),
            _class_first(labels.to(x.dtype), ax),
            weight=w,
            label_smoothing=float(label_smoothing),
            reduction=reduction,
        )
        return out.to(logits.dtype)
    labels = _class_ids(labels, x, ax, "logits", ignore_index)

    def loss(reduction: str) -> torch.Tensor:
        return F.cross_entropy(
            _class_first(x, ax),
            labels,
            weight=w,
            ignore_index=ignore_index,
            label_smoothing=float(label_smoothing),
            reduction=reduction,
        )

    return _reduce_class_ids(loss, labels, ignore_index, reduction).to(logits.dtype)


def nll_loss(
    log_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    axis: int = -1,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of class ids, ``F.nll_loss`` with the class axis last.

    Mirrors :func:`jaxreg.losses.nll_loss`.

    .. math::
        l_i = -w_{y_i} \log p_{i y_i}, \qquad
        \text{mean} = \frac{\sum_i l_i}{\sum_{i \text{ valid}} w_{y_i}}

    Where raw torch differs: class axis ``axis`` (default last); every target
    ignored gives a mean of 0 with gradient 0 (torch: NaN).

    Args:
      log_probs: ``[..., C]`` log-probabilities (e.g. from ``log_softmax``).
      labels: integer class ids, ``log_probs``' shape without ``axis``.
      axis: the class axis.
      weight: optional ``[C]`` class weights.
      ignore_index: labels equal to it contribute nothing.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      A scalar, or per-example losses for ``"none"``, in ``log_probs``' dtype.

    Example:
      >>> import torch
      >>> from torch_ref.losses import nll_loss
      >>> log_probs = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]]))
      >>> print(round(nll_loss(log_probs, torch.tensor([0, 1]), reduction="sum").item(), 4))
      0.9808
    """
    log_probs, ax = _check_scores(log_probs, "log_probs", axis)
    _numerics.check_reduction(reduction)
    lp = _numerics.upcast(log_probs)
    w = _check_weight(weight, lp.shape[ax], lp.dtype)
    labels = _class_ids(
        torch.as_tensor(labels, device=lp.device), lp, ax, "log_probs", ignore_index
    )

    def loss(reduction: str) -> torch.Tensor:
        return F.nll_loss(
            _class_first(lp, ax), labels, weight=w, ignore_index=ignore_index, reduction=reduction
        )

    return _reduce_class_ids(loss, labels, ignore_index, reduction).to(log_probs.dtype)


def _broadcast_to_input(
    x: torch.Tensor | None, logits: torch.Tensor, name: str
) -> torch.Tensor | None:
    if x is None:
        return None
    x = _numerics.as_float_array(x, name)
    try:
        return torch.broadcast_to(x, logits.shape).to(logits.dtype)
    except RuntimeError:
        raise ValueError(
            f"`{name}` of shape {tuple(x.shape)} does not broadcast to `logits`' shape "
            f"{tuple(logits.shape)}."
        ) from None


def binary_cross_entropy_with_logits(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Binary cross-entropy on logits: ``F.binary_cross_entropy_with_logits``.

    Mirrors :func:`jaxreg.losses.binary_cross_entropy_with_logits`.

    .. math::
        l = -w \big[\text{pw}\, t \log \sigma(x) + (1 - t) \log(1 - \sigma(x))\big]

    Where raw torch differs: ``logits`` and ``targets`` must have the same shape,
    ``weight`` and ``pos_weight`` must broadcast to it (errors name the argument).

    Args:
      logits: any shape.
      targets: probabilities in [0, 1], ``logits``' shape.
      weight: optional per-element weight, broadcastable to ``logits``.
      pos_weight: optional weight of positive examples, broadcastable to ``logits``
        (one per class along the last axis).
      reduction: ``"none"``, ``"mean"`` (over all elements) or ``"sum"``.

    Returns:
      A scalar, or the elementwise losses for ``"none"``, in ``logits``' dtype.

    Example:
      >>> import torch
      >>> from torch_ref.losses import binary_cross_entropy_with_logits
      >>> loss = binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0]))
      >>> print(round(loss.item(), 4))
      0.6931
    """
    logits = _numerics.as_float_array(logits, "logits")
    targets = _numerics.as_float_array(targets, "targets")
    _numerics.check_same_shape(logits, targets, "logits", "targets")
    _numerics.check_reduction(reduction)
    x = _numerics.upcast(logits)
    out = F.binary_cross_entropy_with_logits(
        x,
        targets.to(x.dtype),
        weight=_broadcast_to_input(weight, x, "weight"),
        pos_weight=_broadcast_to_input(pos_weight, x, "pos_weight"),
        reduction=reduction,
    )
    return out.to(logits.dtype)


# --- regression ------------------------------------------------------------------


def _check_regression(pred: torch.Tensor, target: torch.Tensor):
    pred = _numerics.as_float_array(pred, "pred")
    target = _numerics.as_float_array(target, "target")
    _numerics.check_same_shape(pred, target, "pred", "target")
    return pred, target


def squared_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Elementwise half squared error, :math:`\tfrac12 (\hat y - y)^2` (gradient ``ŷ - y``).

    Mirrors :func:`jaxreg.losses.squared_loss`: ``½ F.mse_loss(..., reduction="none")``.

    Args:
      pred: predictions, any shape.
      target: targets, ``pred``'s shape.

    Returns:
      ``pred``'s shape and dtype.

    Example:
      >>> import torch
      >>> from torch_ref.losses import squared_loss
      >>> print(squared_loss(torch.tensor([3.0]), torch.tensor([1.0])).tolist())
      [2.0]
    """
    pred, target = _check_regression(pred, target)
    return 0.5 * F.mse_loss(pred, target.to(pred.dtype), reduction="none")


def mse_loss(pred: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Mean squared error, ``F.mse_loss``: :math:`(\hat y - y)^2`, then reduced.

    Mirrors :func:`jaxreg.losses.mse_loss`. Where raw torch differs: shapes must
    match exactly (torch broadcasts, with a warning).

    Args:
      pred: predictions, any shape.
      target: targets, ``pred``'s shape.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      A scalar, or the elementwise errors for ``"none"``, in ``pred``'s dtype.

    Example:
      >>> import torch
      >>> from torch_ref.losses import mse_loss
      >>> print(mse_loss(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])).item())
      2.0
    """
    pred, target = _check_regression(pred, target)
    _numerics.check_reduction(reduction)
    x = _numerics.upcast(pred)
    return F.mse_loss(x, target.to(x.dtype), reduction=reduction).to(pred.dtype)
