"""PyTorch twin of :mod:`jaxreg.information`: the same names, arguments and conventions.

Built on ``torch.logsumexp``, ``torch.softmax``, ``torch.log_softmax``,
``torch.special.entr``, ``torch.special.xlogy`` and ``F.kl_div``. jaxreg's
conventions that raw torch lacks are added here:

* ``logsumexp`` has the softmax as its gradient, computed as
  ``exp(x - max) / Σ exp(x - max)``: 0 on an all ``-inf`` row (torch: NaN) and
  ``[½, ½]`` at ``[1e30, 1e30]`` (torch: ``[1, 1]``, from ``exp(x - lse)``);
* ``where=`` masks (torch has none): a fully masked row gives softmax 0,
  log_softmax ``-inf``, entropy 0 and logsumexp ``-inf``, all with gradient 0;
* ``0·log 0 = 0`` with gradient 0 (the "double where"), so that entropy, cross
  entropy and KL are finite where the math is and ``+inf`` (with a finite
  gradient) only where it is not: torch's ``F.kl_div`` gives NaN at ``p = q = 0``;
* bf16/fp16 inputs are reduced in float32 and returned in the input dtype;
  ``softmax``/``log_softmax`` take torch's ``dtype=`` (the cast comes first);
* :func:`kl_div` is ``F.kl_div`` (torch's order: ``log q`` first) with the
  conventions of :func:`kl_divergence` where torch gives NaN (``p = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from torch_ref import _numerics
from torch_ref._entropy_terms import double_where, kl_div_terms, rel_entr, safe_xlogy
from torch_ref._masked_softmax import LogSumExp, broadcast_where, masked_logits

__all__ = [
    "cross_entropy",
    "entropy",
    "entropy_from_logits",
    "js_divergence",
    "kl_div",
    "kl_divergence",
    "kl_divergence_from_logits",
    "log_softmax",
    "logsumexp",
    "self_information",
    "softmax",
    "xlogy",
]

Axis = int | Sequence[int]


# --- private functions -----------------------------------------------------------


def _in_base(value: torch.Tensor, base: float | None) -> torch.Tensor:
    """``value`` (in nats) converted to ``base`` units: divided by ``log(base)``."""
    if base is None:
        return value
    if not (isinstance(base, (int, float)) and base > 0 and base != 1):
        raise ValueError(f"`base` must be a positive number other than 1 (or None), got {base!r}.")
    return value / math.log(base)


def xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""``x log y`` with ``0 log y = 0`` and no NaN in its gradient.

    Mirrors :func:`jaxreg.information.xlogy`, built on ``torch.special.xlogy``.

    .. math::
        \operatorname{xlogy}(x, y) = x \log y

    Where raw torch differs: where ``y > 0``, ``∂x = log y`` also at ``x = 0`` (torch:
    0); where ``y = 0`` the value is 0 (``x = 0``) or ``-inf`` (``x > 0``), held
    constant (gradient 0; torch's ``∂y`` is NaN at ``x = y = 0``). ``x`` and ``y``
    broadcast (Python numbers too), as in torch.

    Args:
      x: a real floating tensor or number.
      y: a real floating tensor or number.

    Returns:
      The broadcast shape, in the promoted dtype.

    Example:
      >>> import torch
      >>> from torch_ref.information import xlogy
      >>> print(xlogy(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0])).tolist())
      [0.0, 0.0]
    """
    x, y = _numerics.as_float_array(x, "x"), _numerics.as_float_array(y, "y")
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = torch.broadcast_tensors(x.to(dtype), y.to(dtype))
    return safe_xlogy(x, y)


def _float_pair(
    p: torch.Tensor, q: torch.Tensor, names: tuple[str, str] = ("p", "q")
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Both inputs as floats of the same shape, upcast; plus the result dtype."""
    p, q = _numerics.as_float_array(p, names[0]), _numerics.as_float_array(q, names[1])
    if p.shape != q.shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same shape, got {tuple(p.shape)} and "
            f"{tuple(q.shape)}; broadcast explicitly if that is what you mean."
        )
    dtype = torch.promote_types(p.dtype, q.dtype)
    return _numerics.upcast(p.to(dtype)), _numerics.upcast(q.to(dtype)), dtype


# --- logsumexp, softmax ------------------------------------------------------------


def logsumexp(
    x: torch.Tensor,
    axis: Axis = -1,
    *,
    where: torch.Tensor | None = None,
    keepdims: bool = False,
) -> torch.Tensor:
    r"""``log Σ exp(x)`` over ``axis``, over the entries where ``where`` is True.

    Mirrors :func:`jaxreg.information.logsumexp`, built on ``torch.logsumexp``.

    .. math::
        \operatorname{LSE}(x) = m + \log \sum_i \exp(x_i - m), \quad m = \max_i x_i

    Where raw torch differs: torch's gradient ``exp(x - LSE)`` is NaN on an all
    ``-inf`` row and ``[1, 1]`` at ``[1e30, 1e30]``; here the gradient is the
    softmax ``exp(x - m) / Σ exp(x - m)`` (0 on an empty row, ``[½, ½]`` at the tie).
    torch has no ``where``: masked entries are set to ``-inf`` (held constant).

    Args:
      x: a real floating tensor.
      axis: the axis or axes to reduce.
      where: optional boolean mask broadcastable to ``x``; False entries are left out.
      keepdims: keep the reduced axes with size 1.

    Returns:
      Shape of ``x`` without ``axis``; ``-inf`` for empty (all ``-inf`` or masked) rows.

    Example:
      >>> import torch
      >>> from torch_ref.information import logsumexp
      >>> x = torch.tensor([1e30, 1e30], requires_grad=True)
      >>> print(torch.autograd.grad(logsumexp(x), x)[0].tolist())
      [0.5, 0.5]
    """
    x = _numerics.as_float_array(x, "x")
    axes = _numerics.normalize_axes(axis, x.ndim)
    mask = broadcast_where(where, x)
    work = _numerics.upcast(x)
    if mask is not None:
        work = work.masked_fill(~mask, -math.inf)
    return LogSumExp.apply(work, axes, keepdims).to(x.dtype)


def _cast(x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``x`` cast to torch's ``dtype=`` argument first (a floating dtype), if given."""
    if dtype is None:
        return x
    if not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a real floating dtype (e.g. torch.float32), got {dtype}.")
    return x.to(dtype)


def softmax(
    x: torch.Tensor,
    axis: int = -1,
    *,
    where: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""``exp(x) / Σ exp(x)`` along ``axis``, over the entries where ``where`` is True.

    Mirrors :func:`jaxreg.information.softmax`, built on ``torch.softmax``.

    .. math::
        \operatorname{softmax}(x)_i = \frac{\exp(x_i - m)}{\sum_j \exp(x_j - m)}

    Where raw torch differs: torch has no ``where``; here masked entries are 0, and
    a fully masked (or all ``-inf``) row is all 0 with gradient 0 (torch: NaN).
    ``dtype`` is torch's (``x`` is cast first; the result is in ``dtype``).

    Args:
      x: a real floating tensor.
      axis: the class axis.
      where: optional boolean mask broadcastable to ``x``.
      dtype: optional floating dtype to cast ``x`` to first.

    Returns:
      Same shape as ``x``; each row sums to 1 (0 for a fully masked row).

    Example:
      >>> import torch
      >>> from torch_ref.information import softmax
      >>> x = torch.tensor([0.0, 0.0, 5.0])
      >>> print(softmax(x, where=torch.tensor([True, True, False])).tolist())
      [0.5, 0.5, 0.0]
    """
    x = _cast(_numerics.as_float_array(x, "x"), dtype)
    axis = _numerics.normalize_axis(axis, x.ndim)
    work, rows = masked_logits(_numerics.upcast(x), broadcast_where(where, x), axis)
    return torch.softmax(work, dim=axis).masked_fill(~rows, 0.0).to(x.dtype)


def log_softmax(
    x: torch.Tensor,
    axis: int = -1,
    *,
    where: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""``x - logsumexp(x)`` along ``axis``, over the entries where ``where`` is True.

    Mirrors :func:`jaxreg.information.log_softmax`, built on ``torch.log_softmax``.

    .. math::
        \operatorname{log\_softmax}(x)_i = x_i - m - \log \sum_j \exp(x_j - m)

    Where raw torch differs: torch has no ``where``; here masked entries (and whole
    fully masked or all ``-inf`` rows) are ``-inf`` with gradient 0 (torch: NaN).
    ``dtype`` is torch's (``x`` is cast first; the result is in ``dtype``).

    Args:
      x: a real floating tensor.
      axis: the class axis.
      where: optional boolean mask broadcastable to ``x``.
      dtype: optional floating dtype to cast ``x`` to first.

    Returns:
      Same shape as ``x``.

    Example:
      >>> import torch
      >>> from torch_ref.information import log_softmax
      >>> print(log_softmax(torch.tensor([0.0, 5.0]), where=torch.tensor([True, False])).tolist())
      [0.0, -inf]
    """
    x = _cast(_numerics.as_float_array(x, "x"), dtype)
    axis = _numerics.normalize_axis(axis, x.ndim)
    mask = broadcast_where(where, x)
    work, rows = masked_logits(_numerics.upcast(x), mask, axis)
    out = torch.log_softmax(work, dim=axis).masked_fill(~rows, -math.inf)
    if mask is not None:
        out = out.masked_fill(~mask, -math.inf)
    return out.to(x.dtype)


# --- entropies -------------------------------------------------------------------


def self_information(p: torch.Tensor, *, base: float | None = None) -> torch.Tensor:
    r"""The surprisal ``-log p`` of each probability, elementwise.

    Mirrors :func:`jaxreg.information.self_information` (torch has no such function).

    .. math::
        I(p) = -\log p

    ``p = 0`` gives ``+inf`` with a finite gradient (0); ``torch.log``'s gradient
    there is ``inf``, which turns a zero cotangent into NaN.

    Args:
      p: probabilities, any shape.
      base: ``None`` for nats, ``2`` for bits, or any positive base other than 1.

    Returns:
      Same shape as ``p``.

    Example:
      >>> import torch
      >>> from torch_ref.information import self_information
      >>> print(self_information(torch.tensor([0.5, 0.25]), base=2).tolist())
      [1.0, 2.0]
    """
    p = _numerics.as_float_array(p, "p")
    work = _numerics.upcast(p)
    out = double_where(lambda t: -torch.log(t), work > 0, (work,), math.inf)
    return _in_base(out, base).to(p.dtype)


def entropy(p: torch.Tensor, axis: Axis = -1, *, base: float | None = None) -> torch.Tensor:
    r"""Shannon entropy of the distributions ``p`` along ``axis``.

    Mirrors :func:`jaxreg.information.entropy`, built on ``torch.special.entr``.

    .. math::
        H(p) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    Where raw torch differs: ``torch.special.entr``'s gradient at ``p_i = 0`` is
    ``inf``; here it is 0 (the "double where").

    Args:
      p: probabilities, summing to 1 along ``axis``.
      axis: the axis or axes of the distribution.
      base: ``None`` for nats, ``2`` for bits.

    Returns:
      Shape of ``p`` without ``axis``.

    Example:
      >>> import torch
      >>> from torch_ref.information import entropy
      >>> print(entropy(torch.tensor([0.5, 0.5, 0.0]), base=2).item())
      1.0
    """
    p = _numerics.as_float_array(p, "p")
    axes = _numerics.normalize_axes(axis, p.ndim)
    work = _numerics.upcast(p)
    terms = double_where(torch.special.entr, work > 0, (work,), 0.0)
    return _in_base(terms.sum(dim=axes), base).to(p.dtype)


def entropy_from_logits(
    logits: torch.Tensor,
    axis: int = -1,
    *,
    where: torch.Tensor | None = None,
    base: float | None = None,
) -> torch.Tensor:
    r"""Entropy of ``softmax(logits)`` along ``axis``, computed from log-probabilities.

    Mirrors :func:`jaxreg.information.entropy_from_logits`, built on
    ``torch.softmax`` and ``torch.log_softmax``.

    .. math::
        H = -\sum_i \operatorname{softmax}(z)_i \, \operatorname{log\_softmax}(z)_i

    Masked entries contribute 0; a fully masked row has entropy 0 and gradient 0.
    torch's ``Categorical(logits=...).entropy()`` is the raw-torch equivalent
    without ``where``.

    Args:
      logits: a real floating tensor.
      axis: the class axis.
      where: optional boolean mask broadcastable to ``logits``.
      base: ``None`` for nats, ``2`` for bits.

    Returns:
      Shape of ``logits`` without ``axis``.

    Example:
      >>> import torch
      >>> from torch_ref.information import entropy_from_logits
      >>> print(entropy_from_logits(torch.zeros(4), base=2).item())
      2.0
    """
    logits = _numerics.as_float_array(logits, "logits")
    axis = _numerics.normalize_axis(axis, logits.ndim)
    mask = broadcast_where(where, logits)
    work = _numerics.upcast(logits)
    p = softmax(work, axis, where=mask)
    logp = log_softmax(work, axis, where=mask)
    # 0 · log 0 = 0: where p is 0 (masked entries, -inf logits) hold log p at 0.
    logp = logp.masked_fill(p == 0, 0.0)
    return _in_base(-(p * logp).sum(dim=axis), base).to(logits.dtype)


def cross_entropy(
    p: torch.Tensor, q: torch.Tensor, axis: Axis = -1, *, base: float | None = None
) -> torch.Tensor:
    r"""Cross-entropy ``H(p, q)`` between distributions along ``axis``.

    Mirrors :func:`jaxreg.information.cross_entropy` (torch has no cross-entropy of
    two distributions; ``F.cross_entropy`` takes logits): ``p·log q`` summed.

    .. math::
        H(p, q) = -\sum_i p_i \log q_i, \qquad 0 \log q = 0

    ``p_i > 0`` with ``q_i = 0`` gives ``+inf`` (with a finite gradient). Where raw
    torch differs: ``torch.special.xlogy``'s gradient w.r.t. ``q`` at ``p = q = 0`` is
    NaN (here 0), and w.r.t. ``p`` at ``p_i = 0`` it is 0 (here ``-log q_i``, the derivative).

    Args:
      p: the target distributions.
      q: the model distributions, same shape as ``p``.
      axis: the axis or axes of the distribution.
      base: ``None`` for nats, ``2`` for bits.

    Returns:
      Shape of ``p`` without ``axis``.

    Example:
      >>> import torch
      >>> from torch_ref.information import cross_entropy
      >>> print(cross_entropy(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), base=2).item())
      1.0
    """
    p, q, dtype = _float_pair(p, q)
    axes = _numerics.normalize_axes(axis, p.ndim)
    return _in_base(-xlogy(p, q).sum(dim=axes), base).to(dtype)


def kl_divergence(
    p: torch.Tensor, q: torch.Tensor, axis: Axis = -1, *, base: float | None = None
) -> torch.Tensor:
    r"""Kullback-Leibler divergence ``KL(p ‖ q)`` along ``axis``.

    Mirrors :func:`jaxreg.information.kl_divergence`, built on ``F.kl_div``.

    .. math::
        \mathrm{KL}(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i}

    ``p_i = 0`` contributes 0 (gradient ``-log q_i`` w.r.t. ``p_i``, 0 w.r.t. ``q_i``,
    0 for both at ``p_i = q_i = 0``); ``p_i > 0`` with ``q_i = 0`` gives ``+inf``
    (with a finite gradient). Where raw torch differs:
    ``F.kl_div(q.log(), p, reduction="none")`` is NaN at ``p = q = 0``; and its
    ``reduction="mean"`` is not the KL divergence (use ``"sum"`` / ``"batchmean"``).

    Args:
      p: the target distributions.
      q: the model distributions, same shape as ``p``.
      axis: the axis or axes of the distribution.
      base: ``None`` for nats, ``2`` for bits.

    Returns:
      Shape of ``p`` without ``axis``; non-negative.

    Example:
      >>> import torch
      >>> from torch_ref.information import kl_divergence
      >>> print(kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), base=2).item())
      1.0
    """
    p, q, dtype = _float_pair(p, q)
    axes = _numerics.normalize_axes(axis, p.ndim)
    pointwise = rel_entr(p, q)
    return _in_base(pointwise.sum(dim=axes), base).to(dtype)


_KL_DIV_REDUCTIONS = ("none", "mean", "batchmean", "sum")


def kl_div(
    log_q: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str = "mean",
    log_target: bool = False,
) -> torch.Tensor:
    r"""``F.kl_div(log_q, target)``: torch's order, ``log q`` (the model) first.

    Mirrors :func:`jaxreg.information.kl_div`, built on ``F.kl_div``.

    .. math::
        \ell_i = p_i (\log p_i - \log q_i)

    then ``"none"``, ``"sum"``, ``"batchmean"`` (sum / ``shape[0]``) or ``"mean"``
    (sum / number of elements: not the KL divergence; torch's warning about it is
    silenced here, the meaning is documented). Where raw torch differs: ``p_i = 0``
    (``log p_i = -inf`` with ``log_target``) contributes 0 also where
    ``log q_i = -inf`` (torch: NaN), with gradient 0 for ``log q`` and ``-log q_i``
    for ``p_i`` (torch: NaN); ``p_i > 0`` with ``log q_i = -inf`` gives ``+inf`` with
    a finite gradient; ``"mean"``/``"batchmean"`` over no elements give 0 (torch: NaN).

    Args:
      log_q: log-probabilities of the model (torch's ``input``).
      target: ``p`` (or ``log p`` with ``log_target=True``), same shape.
      reduction: ``"none"``, ``"mean"``, ``"batchmean"`` or ``"sum"``.
      log_target: whether ``target`` holds log-probabilities.

    Returns:
      A scalar, or ``log_q``'s shape for ``"none"``.

    Example:
      >>> import torch
      >>> from torch_ref.information import kl_div
      >>> p = torch.tensor([1.0, 0.0])
      >>> print(round(kl_div(torch.log(torch.tensor([0.5, 0.5])), p, reduction="sum").item(), 4))
      0.6931
    """
    if reduction not in _KL_DIV_REDUCTIONS:
        raise ValueError(
            f"`reduction` must be one of {_KL_DIV_REDUCTIONS} (torch's F.kl_div), got "
            f"{reduction!r}; 'batchmean' is the KL divergence averaged over the batch."
        )
    log_q = _numerics.as_float_array(log_q, "log_q")
    target = _numerics.as_float_array(target, "target")
    _numerics.check_same_shape(log_q, target, "log_q", "target")
    if log_q.dtype != target.dtype:
        raise TypeError(
            f"`log_q` and `target` must have the same dtype, got {log_q.dtype} and {target.dtype}."
        )
    lq, t = _numerics.upcast(log_q), _numerics.upcast(target)
    # Where p = 0 or log q = -inf F.kl_div gives NaN; there the terms are jaxreg's.
    pointwise = kl_div_terms(lq, t, log_target)
    if reduction == "none":
        return pointwise.to(log_q.dtype)
    total = pointwise.sum()
    if reduction == "mean":
        total = total / max(pointwise.numel(), 1)
    elif reduction == "batchmean" and pointwise.ndim:
        total = total / max(pointwise.shape[0], 1)
    return total.to(log_q.dtype)


def kl_divergence_from_logits(
    p_logits: torch.Tensor, q_logits: torch.Tensor, axis: int = -1
) -> torch.Tensor:
    r"""``KL(softmax(p_logits) ‖ softmax(q_logits))`` along ``axis``, from log-probabilities.

    Mirrors :func:`jaxreg.information.kl_divergence_from_logits`, built on
    ``F.kl_div(..., log_target=True)`` with ``torch.log_softmax``.

    .. math::
        \mathrm{KL} = \sum_i \operatorname{softmax}(a)_i
            \big(\operatorname{log\_softmax}(a)_i - \operatorname{log\_softmax}(b)_i\big)

    Args:
      p_logits: logits of the target distributions.
      q_logits: logits of the model distributions, same shape.
      axis: the class axis.

    Returns:
      Shape of the logits without ``axis``, in nats.

    Example:
      >>> import torch
      >>> from torch_ref.information import kl_divergence_from_logits
      >>> print(kl_divergence_from_logits(torch.zeros(3), torch.zeros(3)).item())
      0.0
    """
    a, b, dtype = _float_pair(p_logits, q_logits, ("p_logits", "q_logits"))
    axis = _numerics.normalize_axis(axis, a.ndim)
    log_p = torch.log_softmax(a, dim=axis)
    log_q = torch.log_softmax(b, dim=axis)
    pointwise = F.kl_div(log_q, log_p, reduction="none", log_target=True)
    return pointwise.sum(dim=axis).to(dtype)


def js_divergence(
    p: torch.Tensor, q: torch.Tensor, axis: Axis = -1, *, base: float | None = None
) -> torch.Tensor:
    r"""Jensen-Shannon divergence along ``axis``: symmetric, bounded by ``log 2``.

    Mirrors :func:`jaxreg.information.js_divergence` (torch has no such function).

    .. math::
        \mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),
        \qquad m = \tfrac12 (p + q)

    Args:
      p: distributions.
      q: distributions, same shape as ``p``.
      axis: the axis or axes of the distribution.
      base: ``None`` for nats, ``2`` for bits (then ``0 ≤ JS ≤ 1``).

    Returns:
      Shape of ``p`` without ``axis``.

    Example:
      >>> import torch
      >>> from torch_ref.information import js_divergence
      >>> print(js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), base=2).item())
      1.0
    """
    p, q, dtype = _float_pair(p, q)
    m = 0.5 * (p + q)
    js = 0.5 * (kl_divergence(p, m, axis) + kl_divergence(q, m, axis))
    return _in_base(js, base).to(dtype)
