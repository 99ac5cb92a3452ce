"""Information theory: stable logsumexp/softmax, entropy, cross-entropy, KL, JS.

Units are nats; ``base=2`` gives bits. Conventions:

* ``logsumexp`` shifts by the row maximum held constant, so ties stay exact at any
  magnitude (``logsumexp([1e30, 1e30])`` has gradient ``[½, ½]``) and an all
  ``-inf`` row gives ``-inf`` with gradient 0;
* a fully masked row (``where`` all False) gives softmax 0, log_softmax ``-inf``,
  entropy 0 and gradients 0;
* ``0·log 0 = 0`` in entropy, cross-entropy and KL, with gradient 0 there too
  (so ``entropy(p)`` of a ``p`` with exact zeros has a finite gradient);
  ``KL(p‖q) = +inf`` where ``p > 0 = q``;
* bf16/fp16 inputs are reduced in float32 and returned in the input dtype;
  ``softmax``/``log_softmax`` take torch's ``dtype=`` (cast before the reduction,
  result in that dtype: ``F.softmax(x, dim=-1, dtype=torch.float32)``).

torch's ``F.kl_div(input, target)`` has its own twin, :func:`kl_div`, with torch's
argument order and reductions; :func:`kl_divergence` keeps the textbook ``KL(p‖q)``
of two distributions (see :func:`kl_div` for why there are two).

The pointwise ``p·log q`` terms and their custom derivatives are in the private
``jaxreg._entropy_terms``; this module checks the arguments and reduces.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jaxreg import _numerics
from jaxreg._entropy_terms import rel_entr, rel_entr_log, rel_entr_log_log, safe_xlogy, xlogx

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

_KL_DIV_REDUCTIONS = ("none", "mean", "batchmean", "sum")


def _check_base(*, base: ArrayLike | None = None, **_: object) -> None:
    """A concrete ``base`` must be positive and other than 1 (traced ones are not checked)."""
    if base is not None and _numerics.is_concrete(base):
        value = float(np.asarray(base))
        if not value > 0 or value == 1.0:
            raise ValueError(
                f"`base` must be a positive number other than 1 (or None), got {value}."
            )


def _in_base(x: jax.Array, base: ArrayLike | None) -> jax.Array:
    """``x`` (in nats) in the unit of ``base``: ``x / log(base)``; ``base`` may be traced."""
    if base is None:
        return x
    return x / jnp.log(jnp.asarray(base, x.dtype))


Axis = int | tuple[int, ...] | None


def _float_dtype(dtype: DTypeLike) -> jnp.dtype:
    """``dtype`` as a real floating dtype, or a ``TypeError`` naming ``dtype``."""
    try:
        out = jnp.dtype(dtype)
    except TypeError:
        out = None
    if out is None or not jnp.issubdtype(out, jnp.floating):
        raise TypeError(f"`dtype` must be a real floating dtype (e.g. jnp.float32), got {dtype!r}.")
    return out


def _prepare(
    x: ArrayLike,
    name: str,
    axis: Axis,
    where: ArrayLike | None,
    dtype: DTypeLike | None = None,
) -> tuple[jax.Array, Any, tuple[int, ...], jax.Array | None]:
    """``x`` upcast, its dtype, the reduced axes as a sorted tuple, the broadcast mask.

    With ``dtype``, ``x`` is first cast to it (torch's ``dtype=``: the cast happens
    before the reduction and the result is returned in ``dtype``).
    """
    x = _numerics.as_float_array(x, name)
    if dtype is not None:
        x = x.astype(_float_dtype(dtype))
    if x.ndim == 0:
        raise ValueError(
            f"`{name}` must have at least one dimension (the `axis` {axis}), got a scalar; "
            f"use `{name}[None]` for a one-element distribution."
        )
    axes = _numerics.normalize_axes(axis, x.ndim)
    return _numerics.upcast(x), x.dtype, axes, _numerics.broadcast_where(where, x.shape)


def _is_empty(x: jax.Array, axes: tuple[int, ...]) -> bool:
    """Whether some reduced axis has length 0 (a static property of the shape)."""
    return any(x.shape[a] == 0 for a in axes)


@_numerics.compiled("axis", "keepdims")
def logsumexp(
    x: ArrayLike, axis: Axis = -1, *, where: ArrayLike | None = None, keepdims: bool = False
) -> jax.Array:
    r"""Log of the sum of exponentials, computed stably.

    .. math::
        \operatorname{logsumexp}(x) = m + \log \sum_i e^{x_i - m}, \qquad m = \max_i x_i

    ``m`` is held constant under differentiation, so the gradient is exactly
    ``softmax(x)``: ties stay ties at any magnitude. An all ``-inf`` (or fully
    masked, or empty) row gives ``-inf`` with gradient 0; a NaN in a row (outside
    the mask) gives NaN.

    Args:
      x: a real floating array.
      axis: the axis or axes to reduce (``None``: all).
      where: optional boolean mask broadcastable to ``x``; False entries are left out.
      keepdims: keep the reduced axes with size 1.

    Returns:
      ``x``'s shape without ``axis`` (or with size 1), in ``x``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.logsumexp(jnp.array([0.0, jnp.log(3.0)])), 4))
      1.3863
      >>> print(jax.grad(jaxreg.logsumexp)(jnp.array([1e30, 1e30])))
      [0.5 0.5]
    """
    x, dtype, axes, mask = _prepare(x, "x", axis, where)
    if _is_empty(x, axes):
        return jnp.full(_numerics.reduced_shape(x.shape, axes, keepdims), -jnp.inf, dtype)
    m, _, _, s = _numerics.shifted_exp(x, axes, mask)
    zero, s_safe = _numerics.nonzero_or_one(s)
    out = jnp.where(zero, -jnp.inf, jnp.log(s_safe) + m)
    if not keepdims:
        out = jnp.squeeze(out, axis=axes)
    return out.astype(dtype)


def _softmax(x: jax.Array, axes: tuple[int, ...], mask: jax.Array | None) -> jax.Array:
    # Plain autodiff gives d softmax = y ⊙ (dx - Σ y dx) (the max is held constant), and
    # XLA fuses its transpose better than that of the same formula as a custom JVP. A
    # +inf entry gives NaN there with either shift (inf/inf, or inf - inf), so the max
    # is taken with the lowest finite number as initial value (fused with the shift);
    # masked-out entries and fully masked rows are 0, with gradient 0 (safe division).
    _, _, e, s = _numerics.shifted_exp(x, axes, mask, floor_max=True)
    return e / _numerics.nonzero_or_one(s)[1]


@_numerics.compiled("axis", "dtype")
def softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    r"""Softmax along ``axis``, stable for any magnitude.

    .. math::
        \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}

    Masked-out entries are 0; a fully masked row is all 0 (``jax.nn.softmax`` gives
    NaN there), with gradient 0. A NaN in a row (outside the mask) makes the row NaN.

    ``dtype`` is torch's: ``softmax(x, dtype=jnp.float32)`` is
    ``F.softmax(x, dim=-1, dtype=torch.float32)``, the mixed-precision attention idiom
    (``x`` is cast before the reduction; the result is in ``dtype``). Without it,
    bf16/fp16 inputs are still reduced in float32, but returned in their own dtype.

    Args:
      x: a real floating array.
      axis: the axis or axes to normalise over (``None``: all).
      where: optional boolean mask broadcastable to ``x``.
      dtype: optional floating dtype to cast ``x`` to first, and of the result.

    Returns:
      An array of ``x``'s shape, in ``dtype`` (default: ``x``'s dtype).

    Example:
      >>> import jaxreg
      >>> print(jaxreg.softmax(jnp.array([1.0, 1.0]), where=jnp.array([True, False])))
      [1. 0.]
      >>> scores = jnp.array([0.0, 1.0], jnp.bfloat16)
      >>> print(jaxreg.softmax(scores, dtype=jnp.float32).dtype)
      float32
    """
    x, dtype, axes, mask = _prepare(x, "x", axis, where, dtype)
    if _is_empty(x, axes):
        return x.astype(dtype)
    return _softmax(x, axes, mask).astype(dtype)


@_numerics.compiled("axis", "dtype")
def log_softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> jax.Array:
    r"""Log of the softmax along ``axis``, computed without forming the softmax.

    .. math::
        \log \operatorname{softmax}(x)_i = (x_i - m) - \log \sum_j e^{x_j - m}

    Masked-out entries (and whole masked rows) are ``-inf`` with gradient 0.
    ``dtype`` is torch's, as in :func:`softmax`.

    Args:
      x: a real floating array.
      axis: the axis or axes to normalise over (``None``: all).
      where: optional boolean mask broadcastable to ``x``.
      dtype: optional floating dtype to cast ``x`` to first, and of the result.

    Returns:
      An array of ``x``'s shape, in ``dtype`` (default: ``x``'s dtype).

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.log_softmax(jnp.array([0.0, 0.0])), 4))
      [-0.6931 -0.6931]
    """
    x, dtype, axes, mask = _prepare(x, "x", axis, where, dtype)
    if _is_empty(x, axes):
        return x.astype(dtype)
    _, z, _, s = _numerics.shifted_exp(x, axes, mask, floor_max=True)
    out = z - jnp.log(_numerics.nonzero_or_one(s)[1])
    if mask is not None:
        out = jnp.where(mask, out, -jnp.inf)
    return out.astype(dtype)


@_numerics.compiled()
def xlogy(x: ArrayLike, y: ArrayLike) -> jax.Array:
    r"""``x·log y`` with ``0·log y = 0`` for every ``y >= 0``, and gradients that never NaN.

    .. math::
        \operatorname{xlogy}(x, y) = x \log y, \qquad
        \partial_x = \log y, \qquad \partial_y = x / y \qquad (y > 0)

    The building block of every entropy (``-xlogy(p, p)``) and cross-entropy
    (``-xlogy(p, q)``). Where ``y = 0`` the value is 0 (``x = 0``) or ``-inf``
    (``x > 0``), held constant: gradient 0 (``torch.xlogy``'s ``∂y`` is NaN at
    ``x = y = 0``). At ``x = 0 < y`` the derivative in ``x`` is ``log y``, the
    derivative of ``x log y`` (``torch.xlogy`` gives 0 there). A NaN in either
    argument gives NaN, also at ``x = 0`` (as ``scipy.special.xlogy`` and torch);
    ``y < 0`` (outside the domain) gives NaN (the gradient there is 0).

    Args:
      x: a real floating array (or a Python number).
      y: a real floating array (or a Python number); ``x`` and ``y`` broadcast
        against each other, as in ``torch.xlogy``.

    Returns:
      The broadcast shape, in the promoted dtype of ``x`` and ``y``.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.xlogy(jnp.array([0.0, 2.0]), jnp.array([0.0, 1.0])))
      [0. 0.]
      >>> print(jax.grad(jaxreg.xlogy, argnums=1)(0.0, 0.0))
      0.0
    """
    x = _numerics.as_float_array(x, "x")
    y = _numerics.as_float_array(y, "y")
    try:
        dtype = jnp.result_type(x, y)
        shape = jnp.broadcast_shapes(x.shape, y.shape)
    except (TypeError, ValueError) as error:
        raise type(error)(
            f"`x` ({x.dtype}{list(x.shape)}) and `y` ({y.dtype}{list(y.shape)}) must broadcast "
            f"to one shape and promote to one dtype: {error}"
        ) from None
    work = _numerics.compute_dtype(dtype)
    x, y = (jnp.broadcast_to(a.astype(work), shape) for a in (x, y))
    return safe_xlogy(x, y).astype(dtype)


def _prepare_pair(
    p_in: ArrayLike, q_in: ArrayLike, axis: Axis, names: tuple[str, str] = ("p", "q")
) -> tuple[jax.Array, jax.Array, Any, tuple[int, ...]]:
    p = _numerics.as_float_array(p_in, names[0])
    q = _numerics.as_float_array(q_in, names[1])
    _numerics.check_same_shape(p, q, *names)
    if p.dtype != q.dtype:
        raise TypeError(
            f"`{names[0]}` and `{names[1]}` must have the same dtype, got {p.dtype} and {q.dtype}."
        )
    if p.ndim == 0:
        raise ValueError(f"`{names[0]}` and `{names[1]}` need at least one dimension.")
    ax = _numerics.normalize_axes(axis, p.ndim)
    return _numerics.upcast(p), _numerics.upcast(q), p.dtype, ax


@_numerics.compiled(check=_check_base)
def self_information(p: ArrayLike, *, base: ArrayLike | None = None) -> jax.Array:
    r"""Self-information (surprisal) of each probability, elementwise.

    .. math::
        I(p) = -\log p

    ``+inf`` at ``p = 0``, where the gradient is 0.

    Args:
      p: probabilities, any shape.
      base: the logarithm's base (``None``: nats; ``2``: bits).

    Returns:
      An array of ``p``'s shape and dtype.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.self_information(jnp.array([0.5, 0.25]), base=2))
      [1. 2.]
    """
    p = _numerics.as_float_array(p, "p")
    work = _numerics.upcast(p)
    # +inf at p = 0 held constant (the double where): a zero cotangent there gives a
    # zero gradient, not 0·(-1/0) = NaN.
    nonzero = work != 0
    info = jnp.where(nonzero, -jnp.log(jnp.where(nonzero, work, 1.0)), jnp.inf)
    return _in_base(info, base).astype(p.dtype)


@_numerics.compiled("axis", check=_check_base)
def entropy(p: ArrayLike, axis: Axis = -1, *, base: ArrayLike | None = None) -> jax.Array:
    r"""Shannon entropy of the distributions along ``axis``.

    .. math::
        H(p) = -\sum_i p_i \log p_i, \qquad 0 \log 0 = 0

    ``p`` is used as given (not renormalised). The gradient at ``p_i = 0`` is 0; a
    negative or NaN ``p_i`` gives NaN. A subnormal ``p_i`` (kept on GPU, zero on CPU)
    counts as the smallest normal number inside the log, an absolute error below it.
    For logits, :func:`entropy_from_logits` is more accurate.

    Args:
      p: probabilities; each slice along ``axis`` a distribution.
      axis: the axis or axes of the outcomes (``None``: all).
      base: the logarithm's base (``None``: nats; ``2``: bits).

    Returns:
      ``p``'s shape without ``axis``, in ``p``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.entropy(jnp.array([0.5, 0.5, 0.0]), base=2))
      1.0
    """
    work, dtype, axes, _ = _prepare(p, "p", axis, None)
    return _in_base(0.0 - jnp.sum(xlogx(work), axis=axes), base).astype(dtype)


@_numerics.compiled("axis", check=_check_base)
def entropy_from_logits(
    logits: ArrayLike,
    axis: Axis = -1,
    *,
    where: ArrayLike | None = None,
    base: ArrayLike | None = None,
) -> jax.Array:
    r"""Entropy of ``softmax(logits)``, computed from the logits without ``log 0``.

    .. math::
        H = \log \sum_j e^{z_j} - \sum_i \operatorname{softmax}(z)_i\, z_i,
        \qquad z = x - \max x

    Exact at extreme logits (``[1e4, -1e4]`` gives 0, with finite gradient and
    Hessian); a fully masked (or empty) row gives 0 with gradient 0, a NaN logit
    (outside the mask) NaN.

    Args:
      logits: unnormalised log-probabilities.
      axis: the class axis or axes (``None``: all).
      where: optional boolean mask broadcastable to ``logits``.
      base: the logarithm's base (``None``: nats; ``2``: bits).

    Returns:
      ``logits``' shape without ``axis``, in ``logits``' dtype.

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.entropy_from_logits(jnp.zeros(4), base=2), 4))
      2.0
    """
    x, dtype, axes, mask = _prepare(logits, "logits", axis, where)
    if _is_empty(x, axes):
        return jnp.zeros(_numerics.reduced_shape(x.shape, axes, False), dtype)
    _, z, e, s = _numerics.shifted_exp(x, axes, mask)
    zero, s_safe = _numerics.nonzero_or_one(s)
    p = e / s_safe
    # Entries with p = 0 (masked, -inf or underflowed) contribute 0·z = 0, z may be -inf.
    z_safe = jnp.where(e > 0, z, jnp.zeros_like(z))
    h = jnp.log(s_safe) - jnp.sum(p * z_safe, axis=axes, keepdims=True)
    h = jnp.where(zero, jnp.zeros_like(h), h)
    return _in_base(jnp.squeeze(h, axis=axes), base).astype(dtype)


@_numerics.compiled("axis", check=_check_base)
def cross_entropy(
    p: ArrayLike, q: ArrayLike, axis: Axis = -1, *, base: ArrayLike | None = None
) -> jax.Array:
    r"""Cross-entropy :math:`H(p, q)` of distributions (not of logits: see ``losses``).

    .. math::
        H(p, q) = -\sum_i p_i \log q_i, \qquad 0 \log q = 0

    ``+inf`` where some ``p_i > 0 = q_i``. ``H(p, q) = H(p) + KL(p‖q)``.

    Args:
      p: the true distributions.
      q: the model distributions, same shape and dtype as ``p``.
      axis: the axis of the outcomes.
      base: the logarithm's base (``None``: nats; ``2``: bits).

    Returns:
      ``p``'s shape without ``axis``, in ``p``'s dtype.

    Example:
      >>> import jaxreg
      >>> p = jnp.array([1.0, 0.0])
      >>> print(jaxreg.cross_entropy(p, jnp.array([0.5, 0.5]), base=2))
      1.0
    """
    p, q, dtype, ax = _prepare_pair(p, q, axis)
    return _in_base(0.0 - jnp.sum(safe_xlogy(p, q), axis=ax), base).astype(dtype)


@_numerics.compiled("axis", check=_check_base)
def kl_divergence(
    p: ArrayLike, q: ArrayLike, axis: Axis = -1, *, base: ArrayLike | None = None
) -> jax.Array:
    r"""Kullback–Leibler divergence :math:`KL(p \| q)` of distributions.

    .. math::
        KL(p\|q) = \sum_i p_i \log \frac{p_i}{q_i} = H(p, q) - H(p)

    ``0`` where ``p_i = 0`` (also when ``q_i = 0``, with gradient 0); ``+inf`` where
    ``p_i > 0 = q_i``. Unlike ``torch.nn.functional.kl_div``, the arguments are
    probabilities in the textbook order, and the result is per distribution.

    Args:
      p: the true distributions.
      q: the approximating distributions, same shape and dtype as ``p``.
      axis: the axis of the outcomes.
      base: the logarithm's base (``None``: nats; ``2``: bits).

    Returns:
      ``p``'s shape without ``axis``, in ``p``'s dtype.

    Example:
      >>> import jaxreg
      >>> p, q = jnp.array([0.5, 0.5]), jnp.array([0.25, 0.75])
      >>> print(jnp.round(jaxreg.kl_divergence(p, q), 4))
      0.1438
    """
    p, q, dtype, ax = _prepare_pair(p, q, axis)
    return _in_base(_kl(p, q, ax), base).astype(dtype)


def _kl(p: jax.Array, q: jax.Array, axis: tuple[int, ...]) -> jax.Array:
    return jnp.sum(rel_entr(p, q), axis=axis)


# --- torch's F.kl_div: log-probabilities first, then the target ------------------------


def _check_kl_div(*, reduction: str, **_: object) -> None:
    if reduction not in _KL_DIV_REDUCTIONS:
        raise ValueError(
            f"`reduction` must be one of {_KL_DIV_REDUCTIONS} (torch's F.kl_div), got "
            f"{reduction!r}; 'batchmean' is the KL divergence averaged over the batch."
        )


@_numerics.compiled("reduction", "log_target", check=_check_kl_div)
def kl_div(
    log_q: ArrayLike,
    target: ArrayLike,
    *,
    reduction: str = "mean",
    log_target: bool = False,
) -> jax.Array:
    r"""torch's ``F.kl_div(input, target)``: the *log*-probabilities ``log q`` first.

    .. math::
        \ell_i = p_i (\log p_i - \log q_i), \qquad
        \ell_i = e^{\log p_i} (\log p_i - \log q_i) \ 	ext{(``log_target=True``)}

    summed (``"sum"``), summed and divided by the batch size ``target.shape[0]``
    (``"batchmean"``: the mean KL divergence of the rows when each row is a
    distribution), divided by the number of *elements* (``"mean"``, torch's default,
    which is **not** the KL divergence) or returned elementwise (``"none"``).

    The argument order is torch's and is the usual trap: the first argument is
    ``log q``, the log-probabilities of the *approximating* (model) distribution, and
    the second is the target ``p`` — the result is ``KL(p ‖ q)``. It exists so that
    ported code (``F.kl_div(log_q, p, reduction="batchmean")``) keeps its meaning
    verbatim; new code can use :func:`kl_divergence` ``(p, q)`` (textbook order,
    probabilities, one value per distribution along ``axis``, ``base=``) or
    :func:`kl_divergence_from_logits`. Log-space inputs (``log_q`` and, with
    ``log_target``, ``log p``) are used as they are: no ``exp``/``log`` round trip.

    Conventions (``kl_divergence``'s, where torch gives NaN): ``p_i = 0`` (or
    ``log p_i = -inf``) contributes 0, also where ``log q_i = -inf``, with gradient 0
    for ``log q`` (and ``-log q_i`` for ``p_i``, the derivative of ``-p log q``);
    ``p_i > 0`` with ``log q_i = -inf`` gives ``+inf``. A NaN in either argument gives
    NaN. ``"mean"`` and ``"batchmean"`` over no elements give 0 (torch: NaN).

    Args:
      log_q: ``log q``, log-probabilities of the model, any shape (torch's ``input``).
      target: ``p`` (or ``log p`` with ``log_target=True``), same shape and dtype.
      reduction: ``"none"``, ``"mean"``, ``"batchmean"`` or ``"sum"``.
      log_target: whether ``target`` holds log-probabilities.

    Returns:
      A scalar, or ``log_q``'s shape for ``"none"``; in ``log_q``'s dtype.

    Example:
      >>> from jaxreg.information import kl_div
      >>> p = jnp.array([[0.5, 0.5], [1.0, 0.0]])
      >>> log_q = jnp.log(jnp.array([[0.25, 0.75], [0.5, 0.5]]))
      >>> print(f"{kl_div(log_q, p, reduction='batchmean'):.4f}")  # the rows' mean KL(p‖q)
      0.4185
      >>> print(f"{kl_div(log_q, jnp.log(p), reduction='sum', log_target=True):.4f}")
      0.8370
    """
    log_q = _numerics.as_float_array(log_q, "log_q")
    target = _numerics.as_float_array(target, "target")
    _numerics.check_same_shape(log_q, target, "log_q", "target")
    if log_q.dtype != target.dtype:
        raise TypeError(
            f"`log_q` and `target` must have the same dtype, got {log_q.dtype} and {target.dtype}."
        )
    dtype = log_q.dtype
    log_q, target = _numerics.upcast(log_q), _numerics.upcast(target)
    if log_target:
        pointwise = rel_entr_log_log(target, log_q)
    else:
        pointwise = rel_entr_log(target, log_q)
    if reduction == "none":
        return pointwise.astype(dtype)
    total = jnp.sum(pointwise)
    if reduction == "mean":
        total = total / max(pointwise.size, 1)  # a static count; 0 elements: 0, not NaN
    elif reduction == "batchmean" and pointwise.ndim:
        total = total / max(pointwise.shape[0], 1)
    return total.astype(dtype)


@_numerics.compiled("axis")
def kl_divergence_from_logits(
    p_logits: ArrayLike, q_logits: ArrayLike, axis: Axis = -1
) -> jax.Array:
    r"""``KL(softmax(p_logits) ‖ softmax(q_logits))``, from the logits, in nats.

    .. math::
        KL = \sum_i p_i \big(\log p_i - \log q_i\big), \quad
        \log p = \operatorname{log\_softmax}(p\_logits)

    Stable at extreme logits; classes with ``p_i = 0`` contribute 0.

    Args:
      p_logits: logits of the true distributions.
      q_logits: logits of the approximating distributions, same shape and dtype.
      axis: the class axis.

    Returns:
      The logits' shape without ``axis``, in their dtype.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.kl_divergence_from_logits(jnp.zeros(3), jnp.zeros(3)))
      0.0
    """
    p_logits, q_logits, dtype, ax = _prepare_pair(
        p_logits, q_logits, axis, names=("p_logits", "q_logits")
    )
    log_p = log_softmax(p_logits, ax)
    log_q = log_softmax(q_logits, ax)
    p = _softmax(p_logits, ax, None)
    positive = p > 0
    diff = jnp.where(positive, log_p - log_q, jnp.zeros_like(log_p))
    return jnp.sum(p * diff, axis=ax).astype(dtype)


@_numerics.compiled("axis", check=_check_base)
def js_divergence(
    p: ArrayLike, q: ArrayLike, axis: Axis = -1, *, base: ArrayLike | None = None
) -> jax.Array:
    r"""Jensen–Shannon divergence, symmetric and bounded by ``log 2``.

    .. math::
        JS(p, q) = \tfrac12 KL(p \| m) + \tfrac12 KL(q \| m), \qquad m = \tfrac12 (p + q)

    (``scipy.spatial.distance.jensenshannon`` returns its square root.)

    Args:
      p, q: distributions of the same shape and dtype.
      axis: the axis of the outcomes.
      base: the logarithm's base (``None``: nats; ``2``: bits, then ``JS <= 1``).

    Returns:
      ``p``'s shape without ``axis``, in ``p``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.js_divergence(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), base=2))
      1.0
    """
    p, q, dtype, ax = _prepare_pair(p, q, axis)
    m = 0.5 * (p + q)
    return _in_base(0.5 * (_kl(p, m, ax) + _kl(q, m, ax)), base).astype(dtype)
