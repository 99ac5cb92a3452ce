"""L1, L2, elastic-net and group-lasso penalties over pytrees of parameters.

Every penalty takes a pytree and an optional ``mask`` that selects the leaves it
applies to: a pytree of bools with the structure of ``params``, or a callable
``params -> mask`` such as :func:`weights_only` (decay weights, not biases).

Scaling conventions (DESIGN.md): ``l2_penalty`` is ``½Σw²``, so that
``λ·l2_penalty`` has gradient ``λ·w``, exactly torch's ``weight_decay=λ``; the
elastic net is scikit-learn's ``l1_ratio·Σ|w| + (1-l1_ratio)·½Σw²``; group lasso
weights each group by the square root of its size (Yuan & Lin, 2006). All
gradients are 0 at 0 (the subgradient torch uses for ``|w|`` and for ``‖w_g‖``).

Note that gradient descent on a penalty never produces exact zeros; for sparsity,
use the proximal steps in :mod:`jaxreg.optim`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxreg import _numerics
from jaxreg.norms import vector_norm

Mask = Any  # a pytree of bools with the structure of params, or params -> such a pytree


def weights_only(params: Any) -> Any:
    """A mask that is True for leaves with ``ndim >= 2`` (weight matrices, kernels).

    Biases, scales and other vectors are left out, the usual choice for weight decay.

    Example:
      >>> import jaxreg
      >>> params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}
      >>> print(jaxreg.weights_only(params))
      {'bias': False, 'kernel': True}
    """
    return jax.tree_util.tree_map(lambda w: jnp.ndim(w) >= 2, params)


def resolve_mask(params: Any, mask: Mask | None, name: str = "mask") -> Any:
    """``mask`` as a pytree of Python bools with the structure of ``params``.

    ``None`` selects every leaf; a callable is applied to ``params``. A mask whose
    structure differs from ``params`` raises a ``ValueError`` naming ``name``.
    """
    if mask is None:
        return jax.tree_util.tree_map(lambda _: True, params)
    if callable(mask):
        mask = mask(params)
    params_def = jax.tree_util.tree_structure(params)
    mask_def = jax.tree_util.tree_structure(mask)
    if params_def != mask_def:
        raise ValueError(
            f"`{name}` must have the structure of the parameters: got {mask_def}, expected "
            f"{params_def}. Build it with `jax.tree_util.tree_map(lambda w: ..., params)`, "
            f"or pass a callable such as `jaxreg.weights_only`."
        )
    return mask


def _masked_leaves(params: Any, mask: Mask | None) -> list[tuple[str, jax.Array]]:
    mask = resolve_mask(params, mask)
    flat_params = jax.tree_util.tree_flatten_with_path(params)[0]
    flat_mask = jax.tree_util.tree_leaves(mask)
    out = []
    for (path, leaf), keep in zip(flat_params, flat_mask, strict=True):
        if not _numerics.is_concrete(keep):
            where = jax.tree_util.keystr(path)
            raise TypeError(f"`mask` must hold Python bools, not traced arrays (at {where}).")
        if bool(keep):
            name = f"params{jax.tree_util.keystr(path)}"
            out.append((name, _numerics.as_float_array(leaf, name)))
    return out


def _sum_over_leaves(
    params: Any, mask: Mask | None, per_leaf: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """``Σ_leaves per_leaf(w)``, reduced in float32 or wider, in the leaves' promoted dtype."""
    leaves = [w for _, w in _masked_leaves(params, mask)]
    if not leaves:
        return jnp.zeros((), dtype=jnp.result_type(float))
    dtype = functools.reduce(jnp.promote_types, [w.dtype for w in leaves])
    work = _numerics.compute_dtype(dtype)
    total = functools.reduce(jnp.add, [per_leaf(w.astype(work)) for w in leaves])
    return total.astype(dtype)


def _l1(w: jax.Array) -> jax.Array:
    return jnp.sum(_numerics.safe_abs(w))


def _half_sq(w: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(w * w)


@_numerics.compiled("mask")
def l1_penalty(params: Any, *, mask: Mask | None = None) -> jax.Array:
    r"""The L1 penalty :math:`\sum_w \sum_i |w_i|` over the selected leaves.

    Its gradient is ``sign(w)``, 0 at 0 (the subgradient torch uses).

    Args:
      params: a pytree of floating arrays.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.l1_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}))
      6.0
    """
    return _sum_over_leaves(params, mask, _l1)


@_numerics.compiled("mask")
def l2_penalty(params: Any, *, mask: Mask | None = None) -> jax.Array:
    r"""The L2 penalty :math:`\tfrac12 \sum_w \sum_i w_i^2` over the selected leaves.

    The ½ makes ``λ·l2_penalty(params)`` have gradient ``λ·w``: adding it to a loss
    is torch's ``weight_decay=λ`` for SGD.

    Args:
      params: a pytree of floating arrays.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.l2_penalty({"w": jnp.array([1.0, -2.0])}))
      2.5
    """
    return _sum_over_leaves(params, mask, _half_sq)


@_numerics.compiled("l1_ratio", "mask")
def elastic_net_penalty(
    params: Any, *, l1_ratio: float = 0.5, mask: Mask | None = None
) -> jax.Array:
    r"""The elastic-net penalty, scikit-learn's mix of L1 and ½L2.

    .. math::
        \rho \sum |w_i| + (1 - \rho)\, \tfrac12 \sum w_i^2, \qquad \rho = \text{l1\_ratio}

    Args:
      params: a pytree of floating arrays.
      l1_ratio: ``ρ`` in [0, 1]; 1 is the lasso, 0 is ridge.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.elastic_net_penalty({"w": jnp.array([1.0, -2.0])}, l1_ratio=0.5))
      2.75
    """
    _numerics.check_in_unit_interval(l1_ratio, "l1_ratio")
    return _sum_over_leaves(
        params, mask, lambda w: l1_ratio * _l1(w) + (1.0 - l1_ratio) * _half_sq(w)
    )


@_numerics.compiled("axis", "mask")
def group_lasso_penalty(params: Any, *, axis: int = -1, mask: Mask | None = None) -> jax.Array:
    r"""The group-lasso penalty (Yuan & Lin, 2006): each group's L2 norm, weighted by √size.

    .. math::
        \sum_g \sqrt{|g|}\; \|w_g\|_2

    For each leaf, ``axis`` is reduced and every other index is a group: with a
    kernel ``(in, out)`` and ``axis=-1`` the groups are the rows, one per input
    feature, so the penalty can switch whole input features off. A 1-D leaf is one
    group; a scalar leaf is a group of size 1. The gradient of an all-zero group is 0.

    Args:
      params: a pytree of floating arrays.
      axis: the axis reduced within each group.
      mask: a pytree of bools (or a callable on ``params``) selecting the leaves.

    Returns:
      A scalar.

    References:
      Yuan & Lin, "Model selection and estimation in regression with grouped
      variables", JRSS B 68 (2006).

    Example:
      >>> import jaxreg
      >>> w = jnp.array([[3.0, 4.0], [0.0, 0.0]])  # two groups of size 2
      >>> print(jnp.round(jaxreg.group_lasso_penalty({"w": w}), 4))
      7.0711
    """

    def per_leaf(w: jax.Array) -> jax.Array:
        if w.ndim == 0:
            return _l1(w)
        ax = _numerics.normalize_axis(axis, w.ndim)
        return math.sqrt(w.shape[ax]) * jnp.sum(vector_norm(w, 2, axis=ax))

    return _sum_over_leaves(params, mask, per_leaf)
