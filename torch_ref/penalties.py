"""PyTorch twin of :mod:`jaxreg.penalties`: the same names, arguments and conventions.

torch has no penalty functions (it folds L2 into the optimizers' ``weight_decay``),
so these are written from ``torch.linalg.vector_norm`` and sums, over pytrees of
tensors (nested dicts/lists/tuples, as ``torch.utils._pytree`` flattens them;
``None`` is an empty subtree, as in JAX). Masks are pytrees of bools with the structure
of ``params`` (boolean tensors as leaves select entries), or callables on ``params``;
jaxreg's path matching, prefixes and nnx filters have no torch counterpart. The
scalings are jaxreg's: ``l2_penalty = ½Σw²`` (so ``λ·l2_penalty`` has gradient ``λ·w``,
torch's ``weight_decay=λ``), scikit-learn's elastic net, and Yuan & Lin's
``√size``-weighted group lasso. All gradients are 0 at 0, as torch's ``abs`` and norms give.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

from torch_ref import _numerics
from torch_ref.norms import vector_norm

__all__ = [
    "elastic_net_penalty",
    "group_lasso_penalty",
    "l1_penalty",
    "l2_penalty",
    "weights_only",
]

Mask = Any  # a pytree of bools with the structure of params, or params -> such a pytree


def weights_only(params: Any) -> Any:
    """A mask that is True for leaves with ``ndim >= 2`` (weight matrices, kernels).

    Mirrors :func:`jaxreg.penalties.weights_only` (torch's equivalent is a
    parameter group of the biases with ``weight_decay=0``).

    Args:
      params: a pytree of tensors.

    Returns:
      A pytree of Python bools with the structure of ``params``.

    Example:
      >>> import torch
      >>> from torch_ref.penalties import weights_only
      >>> print(weights_only({"kernel": torch.ones(2, 3), "bias": torch.ones(3)}))
      {'kernel': True, 'bias': False}
    """
    return pytree.tree_map(lambda w: None if w is None else w.ndim >= 2, params)


def _selected_leaves(params: Any, mask: Mask | None) -> list[torch.Tensor]:
    """The leaves of ``params`` that ``mask`` selects, as floating tensors (a boolean
    tensor leaf of ``mask`` selects entries: the others become zeros)."""
    if mask is None:
        pairs = [(w, True) for w in pytree.tree_leaves(params)]
    else:
        if callable(mask):
            mask = mask(params)
        try:
            paired = pytree.tree_map(lambda w, keep: (w, keep), params, mask)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"`mask` must have the structure of the parameters ({error}). Build it with "
                f"`torch.utils._pytree.tree_map(lambda w: ..., params)`, or pass a callable "
                f"such as `weights_only`."
            ) from None
        pairs = pytree.tree_leaves(paired, is_leaf=lambda x: isinstance(x, tuple))
    out = []
    for w, keep in pairs:
        if w is None:
            continue
        if isinstance(keep, torch.Tensor) and keep.ndim > 0:
            # An elementwise mask: unselected entries count as zeros (jaxreg's double where).
            w = _numerics.as_float_array(w, "params leaf")
            out.append(torch.where(keep, w, torch.zeros_like(w)))
        elif bool(keep):
            out.append(_numerics.as_float_array(w, "params leaf"))
    return out


def _sum_over_leaves(
    params: Any, mask: Mask | None, per_leaf: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``Σ_leaves per_leaf(w)``, reduced in float32 or wider, in the leaves' promoted dtype."""
    leaves = _selected_leaves(params, mask)
    if not leaves:
        return torch.zeros(())
    dtype = functools.reduce(torch.promote_types, [w.dtype for w in leaves])
    work = _numerics.compute_dtype(dtype)
    total = functools.reduce(torch.add, [per_leaf(w.to(work)) for w in leaves])
    return total.to(dtype)


def _l1(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(w, 1)


def _half_sq(w: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.sum(w * w)


def l1_penalty(params: Any, *, mask: Mask | None = None) -> torch.Tensor:
    r"""The L1 penalty :math:`\sum_w \sum_i |w_i|` over the selected leaves.

    Mirrors :func:`jaxreg.penalties.l1_penalty`; gradient ``sign(w)``, 0 at 0.

    Args:
      params: a pytree of floating tensors.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar tensor.

    Example:
      >>> import torch
      >>> from torch_ref.penalties import l1_penalty
      >>> print(l1_penalty({"w": torch.tensor([1.0, -2.0]), "b": torch.tensor([3.0])}).item())
      6.0
    """
    return _sum_over_leaves(params, mask, _l1)


def l2_penalty(params: Any, *, mask: Mask | None = None) -> torch.Tensor:
    r"""The L2 penalty :math:`\tfrac12 \sum_w \sum_i w_i^2` over the selected leaves.

    Mirrors :func:`jaxreg.penalties.l2_penalty`. ``λ·l2_penalty(params)`` added to a
    loss has gradient ``λ·w``: the same step as ``torch.optim.SGD(weight_decay=λ)``.

    Args:
      params: a pytree of floating tensors.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar tensor.

    Example:
      >>> import torch
      >>> from torch_ref.penalties import l2_penalty
      >>> print(l2_penalty({"w": torch.tensor([1.0, -2.0])}).item())
      2.5
    """
    return _sum_over_leaves(params, mask, _half_sq)


def elastic_net_penalty(
    params: Any, *, l1_ratio: float = 0.5, mask: Mask | None = None
) -> torch.Tensor:
    r"""The elastic-net penalty, scikit-learn's mix of L1 and ½L2.

    Mirrors :func:`jaxreg.penalties.elastic_net_penalty`.

    .. math::
        \rho \sum |w_i| + (1 - \rho)\, \tfrac12 \sum w_i^2, \qquad \rho = \text{l1\_ratio}

    Args:
      params: a pytree of floating tensors.
      l1_ratio: ``ρ`` in [0, 1]; 1 is the lasso, 0 is ridge.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar tensor.

    Example:
      >>> import torch
      >>> from torch_ref.penalties import elastic_net_penalty
      >>> print(elastic_net_penalty({"w": torch.tensor([1.0, -2.0])}).item())
      2.75
    """
    if not 0.0 <= float(l1_ratio) <= 1.0:
        raise ValueError(f"`l1_ratio` must lie in [0, 1], got {float(l1_ratio)}.")
    return _sum_over_leaves(
        params, mask, lambda w: l1_ratio * _l1(w) + (1.0 - l1_ratio) * _half_sq(w)
    )


def group_lasso_penalty(params: Any, *, axis: int = -1, mask: Mask | None = None) -> torch.Tensor:
    r"""The group-lasso penalty (Yuan & Lin, 2006): each group's L2 norm, weighted by √size.

    Mirrors :func:`jaxreg.penalties.group_lasso_penalty` (torch has none).

    .. math::
        \sum_g \sqrt{|g|}\; \|w_g\|_2

    For each leaf, ``axis`` is reduced and every other index is a group; a 1-D leaf
    is one group, a scalar leaf a group of size 1. An all-zero group has gradient 0.

    Args:
      params: a pytree of floating tensors.
      axis: the axis reduced within each group.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar tensor.

    Example:
      >>> import torch
      >>> from torch_ref.penalties import group_lasso_penalty
      >>> w = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # two groups of size 2
      >>> print(round(group_lasso_penalty({"w": w}).item(), 4))
      7.0711
    """

    def per_leaf(w: torch.Tensor) -> torch.Tensor:
        if w.ndim == 0:
            return _l1(w)
        ax = _numerics.normalize_axis(axis, w.ndim)
        return math.sqrt(w.shape[ax]) * vector_norm(w, 2, axis=ax).sum()

    return _sum_over_leaves(params, mask, per_leaf)
