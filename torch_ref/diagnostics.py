"""PyTorch twin of :mod:`jaxreg.diagnostics`: the five model entropies and the
confidence penalty, with the same names, arguments and definitions.

Raw torch has none of these; they are built from ``torch_ref.information``
(entropy from logits, ``0·log 0 = 0``) and torch primitives. Each is finite on
negative values and zeros (the study notes' ``-Σ x log x`` of raw numbers is NaN
there). ``histogram_entropy`` uses ``torch.histc``-style equal-width bins.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from torch_ref import _numerics
from torch_ref.information import entropy, entropy_from_logits, xlogy

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


def output_entropy(logits: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Mirrors :func:`jaxreg.output_entropy`: mean entropy of ``softmax(logits)``, nats."""
    x = _numerics.as_float_array(logits, "logits")
    return entropy_from_logits(_numerics.upcast(x), axis).mean().to(x.dtype)


def _magnitude_entropy(x: torch.Tensor, axis: int) -> torch.Tensor:
    # |x| with derivative sign(x) (0 at 0), like jaxreg's safe_abs.
    a = x * torch.sign(x).detach()
    # Scale invariant: divide by the (constant) largest magnitude first, as jaxreg does.
    m = a.detach().amax(dim=axis, keepdim=True)
    a = a / torch.where((m > 0) & torch.isfinite(m), m, torch.ones_like(m))
    total = a.sum(dim=axis, keepdim=True)
    positive = total > 0
    p = a / torch.where(positive, total, torch.ones_like(total))
    h = 0.0 - xlogy(p, p).sum(dim=axis, keepdim=True)
    return torch.where(positive, h, torch.zeros_like(h)).squeeze(axis)


def magnitude_entropy(x: torch.Tensor) -> torch.Tensor:
    """Mirrors :func:`jaxreg.magnitude_entropy`: entropy of ``|x| / Σ|x|`` over all entries."""
    x = _numerics.as_float_array(x, "x")
    return _magnitude_entropy(_numerics.upcast(x).reshape(-1), 0).to(x.dtype)


def activation_entropy(activations: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Mirrors :func:`jaxreg.activation_entropy`: mean per-example magnitude entropy."""
    h = _numerics.as_float_array(activations, "activations")
    ax = _numerics.normalize_axis(axis, max(h.dim(), 1))
    return _magnitude_entropy(_numerics.upcast(h), ax).mean().to(h.dtype)


def _flat_tree(tree: Any, name: str) -> torch.Tensor:
    leaves = [_numerics.as_float_array(leaf, name) for leaf in _numerics.tree_leaves(tree)]
    if not leaves:
        raise ValueError(f"`{name}` has no tensor leaves.")
    dtype = leaves[0].dtype
    for leaf in leaves[1:]:
        dtype = torch.promote_types(dtype, leaf.dtype)
    return torch.cat([_numerics.upcast(leaf.to(dtype)).reshape(-1) for leaf in leaves])


def gradient_entropy(grads: Any) -> torch.Tensor:
    """Mirrors :func:`jaxreg.gradient_entropy`: magnitude entropy of all gradient entries."""
    return _magnitude_entropy(_flat_tree(grads, "grads"), 0)


def parameter_entropy(params: Any) -> torch.Tensor:
    """Mirrors :func:`jaxreg.parameter_entropy`: magnitude entropy of all parameters."""
    return _magnitude_entropy(_flat_tree(params, "params"), 0)


def histogram_entropy(
    x: torch.Tensor, *, bins: int = 64, range: tuple[float, float] | None = None
) -> torch.Tensor:
    """Mirrors :func:`jaxreg.histogram_entropy`: entropy of a ``bins``-bin histogram.

    Values outside ``range`` are clipped into the end bins (``torch.histc`` would
    drop them); the gradient is 0.
    """
    x = _numerics.as_float_array(x, "x")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer, got {bins!r}.")
    v = _numerics.upcast(x).detach().reshape(-1)
    if range is None:
        low, high = v.min(), v.max()
    else:
        if not range[0] < range[1]:
            raise ValueError(f"`range` must be (low, high) with low < high, got {range}.")
        low, high = (torch.tensor(r, dtype=v.dtype) for r in range)
    width = high - low
    scale = torch.where(width > 0, bins / torch.where(width > 0, width, 1.0), 0.0)
    index = torch.clamp(torch.floor((v - low) * scale), 0, bins - 1).long()
    counts = torch.zeros(bins, dtype=v.dtype).index_add_(0, index, torch.ones_like(v))
    return entropy(counts / v.numel()).to(x.dtype)


def error_entropy(residuals: torch.Tensor, *, bandwidth: float | None = None) -> torch.Tensor:
    """Mirrors :func:`jaxreg.error_entropy`: Rényi quadratic entropy, Gaussian Parzen window."""
    r = _numerics.as_float_array(residuals, "residuals")
    e = _numerics.upcast(r).reshape(-1)
    n = e.numel()
    if n < 2:
        raise ValueError(f"`residuals` needs at least 2 entries, got {n}.")
    if bandwidth is None:
        std = e.detach().std(correction=0)
        sigma = 1.06 * std * n ** (-0.2)
        sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    else:
        if bandwidth < 0:
            raise ValueError(f"`bandwidth` must be non-negative, got {bandwidth}.")
        sigma = torch.tensor(bandwidth, dtype=e.dtype)
    var = 2.0 * sigma * sigma
    d = e[:, None] - e[None, :]
    potential = torch.exp(-d * d / (2.0 * var)).mean() / torch.sqrt(2.0 * math.pi * var)
    return (-torch.log(potential)).to(r.dtype)


def entropy_report(
    *,
    logits: torch.Tensor | None = None,
    activations: torch.Tensor | None = None,
    grads: Any = None,
    params: Any = None,
    residuals: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Mirrors :func:`jaxreg.entropy_report`: the entropies of whatever was given."""
    out: dict[str, torch.Tensor] = {}
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


def confidence_penalty(logits: torch.Tensor, strength: float, axis: int = -1) -> torch.Tensor:
    """Mirrors :func:`jaxreg.confidence_penalty`: ``-strength`` times the output entropy."""
    return -strength * output_entropy(logits, axis)
