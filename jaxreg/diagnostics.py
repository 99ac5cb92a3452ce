"""Model diagnostics: five well-defined entropies of a model in training, and an
entropy regularizer.

The study notes this library grew from track "the entropy" of a network's
outputs, activations, gradients, errors and parameters by computing
``-Σ x log x`` of the raw numbers — which is NaN as soon as one of them is
negative, and not an entropy of anything when they are not a distribution. Each
function here says which distribution it takes the entropy of. All are in nats
(divide by ``log 2`` for bits).

* :func:`output_entropy` — mean entropy of the predictive distributions
  ``softmax(logits)``: high when the model hesitates, 0 when it is certain. It
  falls as a classifier fits its data; label smoothing and
  :func:`confidence_penalty` raise it.
* :func:`magnitude_entropy` — entropy of ``|x| / Σ|x|``: how evenly the magnitude
  is spread over the entries. ``log n`` when all ``n`` entries have the same
  magnitude, 0 when one entry holds all of it. L1 regularization (sparsity)
  lowers it; L2 spreads weight and keeps it high.
* :func:`activation_entropy`, :func:`gradient_entropy`,
  :func:`parameter_entropy` — magnitude entropy of a layer's activations (per
  example, averaged), of all gradient entries, and of all parameters.
* :func:`histogram_entropy` — discrete entropy of a histogram of the values (the
  shape of their distribution, independent of scale).
* :func:`error_entropy` — Rényi's quadratic entropy of the residuals, estimated
  with a Gaussian Parzen window (Principe's minimum-error-entropy criterion): low
  when the errors are concentrated, whatever their mean.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg import _numerics
from jaxreg._entropy_terms import xlogx
from jaxreg.information import entropy, entropy_from_logits

__all__ = [
    "activation_entropy",
    "confidence_penalty",
    "entropy_report",
    "error_entropy",
    "gradient_entropy",
    "histogram_entropy",
    "magnitude_entropy",
    "output_entropy",
    "parameter_entropy",
]


@_numerics.compiled("axis")
def output_entropy(logits: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Mean entropy of the predictive distributions ``softmax(logits)``, in nats.

    .. math::
        \frac{1}{N} \sum_{n} H\big(\operatorname{softmax}(x_n)\big)

    Between 0 (certain predictions) and ``log C`` (uniform).

    Args:
      logits: ``[..., C]`` logits; every other axis is averaged over.
      axis: the class axis.

    Returns:
      A scalar in ``logits``' dtype.

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.output_entropy(jnp.zeros((5, 4))), 4))
      1.3863
    """
    x = _numerics.as_float_array(logits, "logits")
    return jnp.mean(entropy_from_logits(_numerics.upcast(x), axis)).astype(x.dtype)


def _magnitude_entropy(x: jax.Array, axis: Any) -> jax.Array:
    a = _numerics.safe_abs(x)
    # p = |x| / Σ|x| is scale invariant: divide by the (constant) largest magnitude
    # first, so that neither the value nor the gradient under- or overflows.
    m = jax.lax.stop_gradient(jnp.max(a, axis=axis, keepdims=True))
    # 1 where the max is 0 or inf; a NaN max stays NaN (and so does everything after).
    a = a / jnp.where((m == 0) | jnp.isinf(m), jnp.ones_like(m), m)
    total = jnp.sum(a, axis=axis, keepdims=True)
    zero, total_safe = _numerics.nonzero_or_one(total)
    p = a / total_safe
    h = 0.0 - jnp.sum(xlogx(p), axis=axis, keepdims=True)
    return jnp.squeeze(jnp.where(zero, jnp.zeros_like(h), h), axis=axis)


@_numerics.compiled()
def magnitude_entropy(x: ArrayLike) -> jax.Array:
    r"""Entropy of the magnitudes of all entries of ``x``, normalised to a distribution.

    .. math::
        H\Big(\frac{|x|}{\sum_i |x_i|}\Big) = -\sum_i p_i \log p_i,
        \qquad p_i = \frac{|x_i|}{\sum_j |x_j|}

    ``log n`` for ``n`` entries of equal magnitude, 0 for one non-zero entry, and 0
    for an all-zero ``x``. Finite for negative entries (the sign is dropped) and
    differentiable, with gradient 0 at zero entries.

    Args:
      x: any real floating array (flattened).

    Returns:
      A scalar in ``x``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.magnitude_entropy(jnp.array([1.0, -1.0, 1.0, -1.0])), 4))
      1.3863
      >>> print(jaxreg.magnitude_entropy(jnp.array([0.0, -3.0, 0.0])))
      0.0
    """
    x = _numerics.as_float_array(x, "x")
    return _magnitude_entropy(jnp.ravel(_numerics.upcast(x)), 0).astype(x.dtype)


@_numerics.compiled("axis")
def activation_entropy(activations: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Mean over examples of the magnitude entropy of the units' activations.

    .. math::
        \frac{1}{N} \sum_n H\Big(\frac{|h_n|}{\sum_j |h_{nj}|}\Big)

    High when each example spreads its activation over many units, low when a few
    units carry it (sparse or collapsed representations).

    Args:
      activations: ``[..., units]``; every axis but ``axis`` is averaged over.
      axis: the units axis.

    Returns:
      A scalar in ``activations``' dtype.

    Example:
      >>> import jaxreg
      >>> h = jnp.array([[1.0, -1.0], [2.0, 0.0]])
      >>> print(jnp.round(jaxreg.activation_entropy(h), 4))  # (log 2 + 0) / 2
      0.3466
    """
    h = _numerics.as_float_array(activations, "activations")
    ax = _numerics.normalize_axis(axis, max(h.ndim, 1))
    return jnp.mean(_magnitude_entropy(_numerics.upcast(h), ax)).astype(h.dtype)


def _flat_tree(tree: Any, name: str) -> jax.Array:
    leaves = [
        _numerics.as_float_array(leaf, f"{name}{jax.tree_util.keystr(path)}")
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]
    if not leaves:
        raise ValueError(f"`{name}` has no array leaves.")
    work = _numerics.compute_dtype(functools.reduce(jnp.promote_types, [w.dtype for w in leaves]))
    return jnp.concatenate([jnp.ravel(leaf).astype(work) for leaf in leaves])


@_numerics.compiled()
def gradient_entropy(grads: Any) -> jax.Array:
    r"""Magnitude entropy of all gradient entries of a pytree, taken together.

    Low when a few parameters receive most of the gradient, ``log n`` when all
    ``n`` receive the same magnitude.

    Args:
      grads: a pytree of floating arrays.

    Returns:
      A scalar (float32 for low-precision leaves).

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.gradient_entropy({"w": jnp.ones((2, 2))}), 4))
      1.3863
    """
    return _magnitude_entropy(_flat_tree(grads, "grads"), 0)


@_numerics.compiled()
def parameter_entropy(params: Any) -> jax.Array:
    r"""Magnitude entropy of all parameters of a pytree, taken together.

    L1 regularization drives it down (mass concentrates on few weights), L2
    keeps it high (weights shrink together).

    Args:
      params: a pytree of floating arrays.

    Returns:
      A scalar (float32 for low-precision leaves).

    Example:
      >>> import jaxreg
      >>> print(jaxreg.parameter_entropy({"w": jnp.array([0.0, 5.0]), "b": jnp.zeros(1)}))
      0.0
    """
    return _magnitude_entropy(_flat_tree(params, "params"), 0)


def _check_histogram(*, bins: Any, range: Any, **_: Any) -> None:
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer, got {bins!r}.")
    if range is not None:
        if len(range) != 2:
            raise ValueError(f"`range` must be a pair (low, high), got {range!r}.")
        if all(map(_numerics.is_concrete, range)) and not float(range[0]) < float(range[1]):
            raise ValueError(f"`range` must be (low, high) with low < high, got {range}.")


@_numerics.compiled("bins", check=_check_histogram)
def histogram_entropy(
    x: ArrayLike, *, bins: int = 64, range: tuple[ArrayLike, ArrayLike] | None = None
) -> jax.Array:
    r"""Discrete Shannon entropy of a histogram of the values of ``x``.

    .. math::
        -\sum_{k=1}^{\text{bins}} \hat p_k \log \hat p_k, \qquad
        \hat p_k = \frac{\#\{i : x_i \in \text{bin}_k\}}{n}

    Uniform samples over ``k`` bins give about ``log k``; a constant gives 0; a NaN in
    ``x`` gives NaN. The histogram is piecewise constant in ``x``, so the gradient is
    0: use it to monitor, not to regularize.

    Args:
      x: any real floating array (flattened).
      bins: the number of equal-width bins.
      range: ``(low, high)``, numbers or (traced) scalars; values outside are
        clipped into the end bins. Defaults to ``(min(x), max(x))``.

    Returns:
      A scalar in ``x``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.histogram_entropy(jnp.arange(16.0), bins=4), 4))
      1.3863
    """
    x = _numerics.as_float_array(x, "x")
    v = jax.lax.stop_gradient(jnp.ravel(_numerics.upcast(x)))
    if range is None:
        low, high = jnp.min(v), jnp.max(v)
    else:
        low, high = (jnp.asarray(r, v.dtype) for r in range)
    width = high - low
    positive = width > 0
    scale = jnp.where(positive, bins / jnp.where(positive, width, 1.0), 0.0)
    index = jnp.clip(jnp.floor((v - low) * scale), 0, bins - 1).astype(jnp.int32)
    counts = jnp.zeros(bins, v.dtype).at[index].add(1.0)
    h = entropy(counts / v.size)
    # A NaN value falls in no bin (its index is arbitrary): the entropy is NaN.
    return jnp.where(jnp.any(jnp.isnan(v)), jnp.nan, h).astype(x.dtype)


def _check_bandwidth(*, bandwidth: Any, **_: Any) -> None:
    if bandwidth is not None:
        _numerics.check_nonnegative(bandwidth, "bandwidth")


@_numerics.compiled(check=_check_bandwidth)
def error_entropy(residuals: ArrayLike, *, bandwidth: ArrayLike | None = None) -> jax.Array:
    r"""Rényi's quadratic entropy of the residuals, with a Gaussian Parzen window.

    .. math::
        H_2(e) = -\log \frac{1}{N^2} \sum_{i,j} G_{\sigma\sqrt2}(e_i - e_j)

    the minimum-error-entropy criterion (Principe, 2010): small when the errors
    are concentrated around any common value, large when they are spread. It is
    differentiable; its cost is ``O(N²)`` in the number of residuals.

    Args:
      residuals: any real floating array (flattened).
      bandwidth: the kernel width ``σ`` (may be traced); by default Silverman's rule
        ``1.06·std(e)·N^{-1/5}`` (held constant under differentiation).

    Returns:
      A scalar in nats, in ``residuals``' dtype.

    References:
      J. C. Principe, *Information Theoretic Learning*, Springer (2010), ch. 2.

    Example:
      >>> import jaxreg
      >>> narrow = jaxreg.error_entropy(jnp.linspace(-0.1, 0.1, 50), bandwidth=0.05)
      >>> wide = jaxreg.error_entropy(jnp.linspace(-1.0, 1.0, 50), bandwidth=0.05)
      >>> print(bool(narrow < wide))
      True
    """
    r = _numerics.as_float_array(residuals, "residuals")
    e = jnp.ravel(_numerics.upcast(r))
    n = e.size
    if n < 2:
        raise ValueError(f"`residuals` needs at least 2 entries, got {n}.")
    if bandwidth is None:
        std = jax.lax.stop_gradient(jnp.std(e))
        sigma = 1.06 * std * n ** (-0.2)
        sigma = jnp.where(sigma == 0, 1.0, sigma)  # a constant: any width gives log-density 0
    else:
        sigma = jnp.asarray(bandwidth, e.dtype)
    var = 2.0 * sigma * sigma  # the pairwise kernel has width σ√2
    d = e[:, None] - e[None, :]
    information_potential = jnp.mean(jnp.exp(-d * d / (2.0 * var))) / jnp.sqrt(2.0 * math.pi * var)
    return (-jnp.log(information_potential)).astype(r.dtype)


def entropy_report(
    *,
    logits: ArrayLike | None = None,
    activations: ArrayLike | None = None,
    grads: Any = None,
    params: Any = None,
    residuals: ArrayLike | None = None,
) -> dict[str, jax.Array]:
    """The five entropies of a model at one step, for whatever was given.

    Args:
      logits: the model's outputs, for :func:`output_entropy`.
      activations: a hidden layer's activations ``[batch, units]``, for
        :func:`activation_entropy`.
      grads: the gradient pytree, for :func:`gradient_entropy`.
      params: the parameter pytree, for :func:`parameter_entropy`.
      residuals: prediction errors, for :func:`error_entropy`.

    Returns:
      A dict with keys among ``"output"``, ``"activation"``, ``"gradient"``,
      ``"parameter"``, ``"error"``.

    Example:
      >>> import jaxreg
      >>> report = jaxreg.entropy_report(logits=jnp.zeros((2, 2)), params={"w": jnp.ones(4)})
      >>> print({k: round(float(v), 4) for k, v in report.items()})
      {'output': 0.6931, 'parameter': 1.3863}
    """
    out: dict[str, jax.Array] = {}
    if logits is not None:
        out["output"] = output_entropy(logits)
    if activations is not None:
        out["activation"] = activation_entropy(activations)
    if grads is not None:
        out["gradient"] = gradient_entropy(grads)
    if params is not None:
        out["parameter"] = parameter_entropy(params)
    if residuals is not None:
        out["error"] = error_entropy(residuals)
    return out


@_numerics.compiled("axis")
def confidence_penalty(logits: ArrayLike, strength: float, axis: int = -1) -> jax.Array:
    r"""The confidence penalty (Pereyra et al., 2017): ``-strength`` times the output entropy.

    .. math::
        -\beta \cdot \frac{1}{N} \sum_n H\big(\operatorname{softmax}(x_n)\big)

    Adding it to a loss that is minimised *maximises* the output entropy,
    discouraging over-confident predictions; a negative ``strength`` minimises it.

    Args:
      logits: ``[..., C]`` logits.
      strength: ``β``.
      axis: the class axis.

    Returns:
      A scalar in ``logits``' dtype.

    References:
      Pereyra, Tucker, Chorowski, Kaiser, Hinton, "Regularizing neural networks
      by penalizing confident output distributions", ICLR workshop (2017).

    Example:
      >>> import jaxreg
      >>> print(jnp.round(jaxreg.confidence_penalty(jnp.zeros((1, 2)), 0.5), 4))
      -0.3466
    """
    return -strength * output_entropy(logits, axis)
