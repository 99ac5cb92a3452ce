"""L1, L2, elastic-net and group-lasso penalties over pytrees of parameters.

Every penalty takes a pytree and an optional ``mask`` that selects the leaves (or
entries) it applies to: a pytree of bools matched to ``params`` by path, with boolean
arrays as leaves where entries are selected, a callable ``params -> mask`` such as
:func:`weights_only` (decay weights, not biases), or an nnx filter (``nnx.Param``,
``nnx.PathContains("kernel")``). The optimizers of :mod:`jaxreg.optim` and
:mod:`jaxreg.proximal` take the same masks (one resolver, ``jaxreg._masks``). Leaves
masked out by a Python bool are never computed on; a NaN in an unselected leaf or entry
takes no part in the value or the gradient, a NaN in a selected one makes the penalty NaN.

Numeric hyperparameters (``l1_ratio``) may be traced; ``axis`` is static.

Scaling conventions: ``l2_penalty`` is ``½Σw²``, so that
``λ·l2_penalty`` has gradient ``λ·w``, exactly torch's ``weight_decay=λ``; the
elastic net is scikit-learn's ``l1_ratio·Σ|w| + (1-l1_ratio)·½Σw²``; group lasso
weights each group by the square root of its size (Yuan & Lin, 2006). All
gradients are 0 at 0 (the subgradient torch uses for ``|w|`` and for ``‖w_g‖``).

Note that gradient descent on a penalty never produces exact zeros; for sparsity,
use the proximal steps in :mod:`jaxreg.proximal`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxreg import _masks, _numerics
from jaxreg.norms import vector_norm

__all__ = [
    "elastic_net_penalty",
    "group_lasso_penalty",
    "l1_penalty",
    "l2_penalty",
    "weights_only",
]

#: ``None``, a pytree of bools (or boolean arrays) matched to params by path, a callable
#: ``params -> mask``, or an nnx filter; see ``jaxreg._masks``.
Mask = Any

_INTEGER_LEAF_FIX = (
    "If `params` is an nnx State holding BatchNorm statistics or RNG counters, pass "
    "`nnx.state(model, nnx.Param)` or `mask=nnx.Param`."
)


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
    """``mask`` resolved against ``params``: a pytree with the containers of ``params``
    whose leaves (``nnx.Variable``\\ s included) are Python bools or boolean arrays of the
    leaf's shape.

    ``None`` selects every leaf; a callable is applied to ``params``; an nnx filter is
    applied to each leaf's path and Variable; a pytree is matched by path. A mask that
    does not fit raises a ``ValueError`` naming ``name`` and the first mismatching path.

    Example:
      >>> import jaxreg
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
      >>> print(resolve_mask(params, jaxreg.weights_only))
      {'b': False, 'w': True}
    """
    leaves = [e.selection for e in _masks.resolve(params, mask, name)]
    treedef = jax.tree_util.tree_structure(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _selected(params: Any, mask: Mask | None) -> tuple[list[jax.Array], list[jax.Array | None]]:
    """The selected leaves (floating, or a ``TypeError`` naming the path) and, for each, its
    elementwise boolean mask (None for a whole leaf). Unselected leaves are left out, so
    they are never computed on."""
    leaves, masks = [], []
    for entry in _masks.resolve(params, mask):
        if entry.selection is False:
            continue
        dtype = jnp.result_type(entry.value)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"`{entry.path}` has dtype {dtype}; penalties need floating leaves. "
                f"{_INTEGER_LEAF_FIX}"
            )
        leaves.append(jnp.asarray(entry.value))
        masks.append(None if entry.selection is True else entry.selection)
    return leaves, masks


def _l1(w: jax.Array) -> jax.Array:
    return jnp.sum(_numerics.safe_abs(w))


def _half_sq(w: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(w * w)


def _group(w: jax.Array, axis: int) -> jax.Array:
    """``√size · Σ_g ‖w_g‖₂`` with ``axis`` reduced (a scalar leaf is one group of size 1)."""
    if w.ndim == 0:
        return _l1(w)
    ax = _numerics.normalize_axis(axis, w.ndim)
    return math.sqrt(w.shape[ax]) * jnp.sum(vector_norm(w, 2, axis=ax))


@_numerics.compiled("kind", "axis")
def _penalty_sum(
    leaves: list[jax.Array],
    masks: list[jax.Array | None],
    l1_ratio: Any = None,
    *,
    kind: str,
    axis: int = -1,
) -> jax.Array:
    """``Σ_leaves penalty(w)``, reduced in float32 or wider, in the leaves' promoted dtype.

    Unselected entries of an elementwise mask are zeros for the penalty (the where comes
    first, so a NaN there reaches neither the value nor the gradient).
    """
    if not leaves:
        return jnp.zeros((), dtype=jnp.result_type(float))
    dtype = functools.reduce(jnp.promote_types, [w.dtype for w in leaves])
    work = _numerics.compute_dtype(dtype)

    def per_leaf(w: jax.Array, m: jax.Array | None) -> jax.Array:
        w = w.astype(work) if m is None else _masks.zero_unselected(m, w.astype(work))
        if kind == "l1":
            return _l1(w)
        if kind == "l2":
            return _half_sq(w)
        if kind == "group_lasso":
            return _group(w, axis)
        rho = jnp.asarray(l1_ratio, work)
        return rho * _l1(w) + (1 - rho) * _half_sq(w)

    total = functools.reduce(jnp.add, map(per_leaf, leaves, masks))
    return total.astype(dtype)


def l1_penalty(params: Any, *, mask: Mask | None = None) -> jax.Array:
    r"""The L1 penalty :math:`\sum_w \sum_i |w_i|` over the selected leaves.

    Its gradient is ``sign(w)``, 0 at 0 (the subgradient torch uses).

    Args:
      params: a pytree of floating arrays (an ``nnx.State`` too). Penalise
        ``nnx.state(model, nnx.Param)`` or pass ``mask=nnx.Param``: a whole model state
        also holds BatchNorm statistics (silently penalised) and RNG counters (integer
        leaves raise a ``TypeError`` naming their path).
      mask: which leaves (or entries) to penalise: ``None`` (all), a pytree of bools
        matched to ``params`` by path (boolean arrays as leaves select entries), a
        callable ``params -> mask`` such as :func:`weights_only`, or an nnx filter such
        as ``nnx.Param`` or ``nnx.PathContains("kernel")``.

    Returns:
      A scalar.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.l1_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}))
      6.0
    """
    return _penalty_sum(*_selected(params, mask), kind="l1")


def l2_penalty(params: Any, *, mask: Mask | None = None) -> jax.Array:
    r"""The L2 penalty :math:`\tfrac12 \sum_w \sum_i w_i^2` over the selected leaves.

    The ½ makes ``λ·l2_penalty(params)`` have gradient ``λ·w``: adding it to a loss
    is torch's ``weight_decay=λ`` for SGD.

    Args:
      params: a pytree of floating arrays (see :func:`l1_penalty` for nnx States).
      mask: which leaves (or entries) to penalise: ``None`` (all), a pytree of bools
        matched to ``params`` by path (boolean arrays as leaves select entries), a
        callable ``params -> mask`` such as :func:`weights_only`, or an nnx filter such
        as ``nnx.Param`` or ``nnx.PathContains("kernel")``.

    Returns:
      A scalar.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.l2_penalty({"w": jnp.array([1.0, -2.0])}))
      2.5
      >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
      >>> print(jaxreg.l2_penalty(params, mask={"w": jnp.array([True, False]), "b": False}))
      0.5
    """
    return _penalty_sum(*_selected(params, mask), kind="l2")


def elastic_net_penalty(
    params: Any, *, l1_ratio: ArrayLike = 0.5, mask: Mask | None = None
) -> jax.Array:
    r"""The elastic-net penalty, scikit-learn's mix of L1 and ½L2.

    .. math::
        \rho \sum |w_i| + (1 - \rho)\, \tfrac12 \sum w_i^2, \qquad \rho = \text{l1\_ratio}

    Args:
      params: a pytree of floating arrays (see :func:`l1_penalty` for nnx States).
      l1_ratio: ``ρ`` in [0, 1]; 1 is the lasso, 0 is ridge. May be traced (checked
        only when concrete); a new value does not recompile.
      mask: which leaves (or entries) to penalise: ``None`` (all), a pytree of bools
        matched to ``params`` by path (boolean arrays as leaves select entries), a
        callable ``params -> mask`` such as :func:`weights_only`, or an nnx filter such
        as ``nnx.Param`` or ``nnx.PathContains("kernel")``.

    Returns:
      A scalar.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.elastic_net_penalty({"w": jnp.array([1.0, -2.0])}, l1_ratio=0.5))
      2.75
    """
    _numerics.check_in_unit_interval(l1_ratio, "l1_ratio")
    return _penalty_sum(*_selected(params, mask), l1_ratio, kind="elastic_net")


def group_lasso_penalty(params: Any, *, axis: int = -1, mask: Mask | None = None) -> jax.Array:
    r"""The group-lasso penalty (Yuan & Lin, 2006): each group's L2 norm, weighted by √size.

    .. math::
        \sum_g \sqrt{|g|}\; \|w_g\|_2

    For each leaf, ``axis`` is reduced and every other index is a group: with a
    kernel ``(in, out)`` and ``axis=-1`` the groups are the rows, one per input
    feature, so the penalty can switch whole input features off. A 1-D leaf is one
    group; a scalar leaf is a group of size 1. The gradient of an all-zero group is 0.
    With an elementwise mask the unselected entries count as zeros (``|g|`` is still
    the length of ``axis``).

    Args:
      params: a pytree of floating arrays (see :func:`l1_penalty` for nnx States).
      axis: the axis reduced within each group.
      mask: which leaves (or entries) to penalise: ``None`` (all), a pytree of bools
        matched to ``params`` by path (boolean arrays as leaves select entries), a
        callable ``params -> mask`` such as :func:`weights_only`, or an nnx filter such
        as ``nnx.Param`` or ``nnx.PathContains("kernel")``.

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
    return _penalty_sum(*_selected(params, mask), kind="group_lasso", axis=axis)
