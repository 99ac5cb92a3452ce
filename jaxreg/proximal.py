"""Proximal steps as optax transforms: L1, elastic net and group lasso with exact zeros.

A proximal step replaces the parameters an optimizer produced by the proximal map of a
penalty. A subgradient L1 penalty added to the loss never gives exact zeros: its
iterates oscillate around zero with amplitude ``lr·strength``, so sparsity needs the
proximal map (soft-thresholding). This module holds

- :func:`l1_proximal`, :func:`elastic_net_proximal` and :func:`group_lasso_proximal`,
  chained *after* an optimizer with the same learning rate
  (``optax.chain(sgd(lr), l1_proximal(s, lr))``);
- :func:`proximal_sgd`, ISTA: a gradient step, then the prox of ``l1·‖w‖₁ + l2·½‖w‖²``;
- their building blocks: :func:`proximal_step` (any prox as a transform) and
  :func:`soft_threshold` (the prox of ``t·‖·‖₁``, also used by :mod:`jaxreg.solvers`).

The torch-exact optimizers they follow are in :mod:`jaxreg.optim`. A ``mask`` selects the
leaves (or entries) the penalty applies to, in any form :mod:`jaxreg.optim` takes (the one
resolver, ``jaxreg._masks``); the other leaves keep the optimizer's step. Every numeric
hyperparameter (``learning_rate``, ``strength``, ``l1_ratio``, ``l1``, ``l2``) may be a JAX
array, traced or not, with results equal to the Python float call (under
``optax.inject_hyperparams``, list ``mask`` in ``static_args``); learning-rate schedules see
the same count as in :mod:`jaxreg.optim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import _masks
from jaxreg._numerics import check_in_unit_interval, check_nonnegative, normalize_axis
from jaxreg._transforms import (
    MaskOrFn,
    Scalar,
    ScalarOrSchedule,
    check_learning_rate,
    lr_at,
    map_selected,
    require_params,
    scalar_like,
    unless_zero,
    wide,
    zero_count,
)
from jaxreg.optim import scale_by_learning_rate

__all__ = [
    "l1_proximal",
    "elastic_net_proximal",
    "group_lasso_proximal",
    "proximal_sgd",
]


class ProximalState(NamedTuple):
    """The number of updates applied so far (for schedules) and the resolved mask."""

    count: jax.Array  # type: ignore[assignment]  # (optax's name; shadows tuple.count)
    mask: _masks.Remembered


# --------------------------------------------------------------------------- pieces


def proximal_step(
    prox: Callable[[jax.Array, Any], jax.Array],
    learning_rate: ScalarOrSchedule,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    """Replaces ``params + updates`` by ``prox(params + updates, lr)`` on the masked leaves.

    The returned updates are ``prox(z, lr) - params``, so ``optax.apply_updates`` lands on
    the proximal point; where the prox is exactly zero, ``params + (-params)`` is exactly
    zero too.
    """
    check_learning_rate(learning_rate)

    def init_fn(params):
        return ProximalState(zero_count(), _masks.remember(params, mask))

    def update_fn(updates, state, params=None):
        require_params(params, "proximal step")
        lr = lr_at(learning_rate, state.count)
        # With an elementwise mask, unselected entries are zeros for the prox (so a
        # group's norm is over its selected entries) and keep the optimizer's update.
        updates = map_selected(mask, lambda u, p: prox(p + u, lr) - p, updates, params, state.mask)
        return updates, ProximalState(optax.safe_increment(state.count), state.mask)

    return optax.GradientTransformation(init_fn, update_fn)


def soft_threshold(z: jax.Array, threshold: Any) -> jax.Array:
    """``sign(z)·max(|z| - t, 0)``: the proximal map of ``t·‖·‖₁`` (torch's ``softshrink``).

    Computed as ``z - clip(z, -t, t)``: the same bits as ``softshrink`` (``z ∓ t`` outside,
    ``+0`` inside). ``threshold`` is a scalar or an array broadcastable to ``z``'s shape.
    """
    t = jnp.broadcast_to(scalar_like(threshold, z), z.shape)
    return z - jnp.clip(z, -t, t)


def _l1_l2_prox(l1: Any, l2: Any) -> Callable[[jax.Array, Any], jax.Array]:
    """The prox of ``lr·(l1·‖w‖₁ + l2·½‖w‖²)``: soft-threshold by ``lr·l1``, then divide
    by ``1 + lr·l2`` (each skipped where its strength is zero, as torch_ref does)."""

    def prox(z, lr):
        lr = wide(lr)
        out = unless_zero(l1, z, lambda: soft_threshold(z, lr * wide(l1)))
        return unless_zero(l2, out, lambda: out / scalar_like(1 + lr * wide(l2), z))

    return prox


def _group_prox(strength: Any, axis: int) -> Callable[[jax.Array, Any], jax.Array]:
    """Block soft-thresholding of every group (``axis`` reduced), threshold ``lr·s·√size``."""

    def prox(z, lr):
        if z.ndim == 0:
            raise ValueError(
                "`group_lasso_proximal` needs leaves of rank >= 1 (groups are reduced over "
                f"`axis`={axis}); exclude scalar leaves with `mask`."
            )
        ax = normalize_axis(axis, z.ndim)
        t = scalar_like(wide(lr) * wide(strength) * math.sqrt(z.shape[ax]), z)
        sumsq = jnp.sum(z * z, axis=ax, keepdims=True)
        # Written so that a NaN (in the group or in t) takes the computing branch.
        drop = sumsq <= t * t
        # Double where: the square root and the division only see kept (nonzero) groups,
        # so neither the value nor its gradient can be NaN at finite inputs.
        norm = jnp.sqrt(jnp.where(drop, jnp.ones_like(sumsq), sumsq))
        scale = jnp.where(drop, jnp.zeros_like(norm), 1 - t / norm)
        return z * jnp.broadcast_to(scale, z.shape)

    return prox


# --------------------------------------------------------------------------- optimizers


def l1_proximal(
    strength: Scalar, learning_rate: ScalarOrSchedule, *, mask: MaskOrFn | None = None
) -> optax.GradientTransformation:
    r"""Soft-thresholding after the step: the proximal map of ``strength·‖w‖₁``.

    .. math::
        w \leftarrow \operatorname{sign}(w)\,\max(|w| - \eta s, 0)

    Chain it after an optimizer with the same learning rate
    (``optax.chain(sgd(lr), l1_proximal(s, lr))``). Weights that cross zero land on
    exactly 0; a subgradient penalty ``s·sign(w)`` added to the gradient never does.

    Args:
      strength: ``s >= 0``.
      learning_rate: ``η`` of the step this follows (float or schedule).
      mask: leaves (or entries) to threshold, in any form :func:`~jaxreg.sgd`
        takes; the others are left as the optimizer set them.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
      >>> from jaxreg.optim import sgd
      >>> params = {"w": jnp.array([0.05, -1.0])}
      >>> opt = optax.chain(sgd(0.1), l1_proximal(1.0, 0.1))
      >>> updates, _ = opt.update({"w": jnp.zeros(2)}, opt.init(params), params)
      >>> print(jnp.round(optax.apply_updates(params, updates)["w"], 4))
      [ 0.  -0.9]
    """
    check_nonnegative(strength, "strength")
    return proximal_step(_l1_l2_prox(strength, 0.0), learning_rate, mask)


def elastic_net_proximal(
    strength: Scalar,
    learning_rate: ScalarOrSchedule,
    *,
    l1_ratio: Scalar = 0.5,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    r"""The proximal map of ``strength·(ρ‖w‖₁ + (1-ρ)·½‖w‖²)`` (sklearn's elastic net).

    .. math::
        w \leftarrow \frac{\operatorname{sign}(w)\max(|w| - \eta s \rho, 0)}
        {1 + \eta s (1 - \rho)}

    Args:
      strength: ``s >= 0``.
      learning_rate: ``η`` of the step this follows (float or schedule).
      l1_ratio: ``ρ`` in [0, 1]; 1 is :func:`l1_proximal`.
      mask: leaves (or entries) to regularize, in any form :func:`~jaxreg.sgd` takes.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
      >>> from jaxreg.optim import sgd
      >>> params = {"w": jnp.array([0.05, -1.0])}
      >>> opt = optax.chain(sgd(0.1), elastic_net_proximal(1.0, 0.1, l1_ratio=0.5))
      >>> updates, _ = opt.update({"w": jnp.zeros(2)}, opt.init(params), params)
      >>> print(jnp.round(optax.apply_updates(params, updates)["w"], 4))
      [ 0.     -0.9048]
    """
    check_nonnegative(strength, "strength")
    check_in_unit_interval(l1_ratio, "l1_ratio")
    prox = _l1_l2_prox(strength * l1_ratio, strength * (1 - l1_ratio))
    return proximal_step(prox, learning_rate, mask)


def group_lasso_proximal(
    strength: Scalar,
    learning_rate: ScalarOrSchedule,
    *,
    axis: int = -1,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    r"""Block soft-thresholding: the proximal map of ``strength·Σ_g √size_g·‖w_g‖₂``.

    .. math::
        w_g \leftarrow w_g \max\Bigl(0, 1 - \frac{\eta s \sqrt{|g|}}{\|w_g\|_2}\Bigr)

    Groups: ``axis`` is reduced and every other index is a group (Yuan & Lin), so with
    ``axis=-1`` on a ``(in, out)`` kernel each input row is a group; whole groups become
    exactly zero.

    Args:
      strength: ``s >= 0``.
      learning_rate: ``η`` of the step this follows (float or schedule).
      axis: the axis reduced within a group.
      mask: leaves (or entries) to regularize, in any form :func:`~jaxreg.sgd`
        takes (scalar leaves must be masked out). With an elementwise mask a group's norm
        is over its selected entries.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
      >>> from jaxreg.optim import sgd
      >>> params = {"w": jnp.array([[0.1, 0.1], [3.0, 4.0]])}
      >>> opt = optax.chain(sgd(0.1), group_lasso_proximal(1.0, 0.1))
      >>> updates, _ = opt.update({"w": jnp.zeros((2, 2))}, opt.init(params), params)
      >>> print(jnp.round(optax.apply_updates(params, updates)["w"], 3))
      [[0.    0.   ]
       [2.915 3.887]]
    """
    check_nonnegative(strength, "strength")
    return proximal_step(_group_prox(strength, axis), learning_rate, mask)


def proximal_sgd(
    learning_rate: ScalarOrSchedule,
    *,
    l1: Scalar = 0.0,
    l2: Scalar = 0.0,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    r"""ISTA: a gradient step, then the prox of ``l1·‖w‖₁ + l2·½‖w‖²``.

    .. math::
        w_{t+1} = \frac{\operatorname{sign}(z)\max(|z| - \eta\, l_1, 0)}{1 + \eta\, l_2},
        \quad z = w_t - \eta \nabla f(w_t)

    With ``f(w) = 1/(2n)‖y - Xw‖²`` and ``η <= n/‖X‖₂²`` the iterates converge to
    ``sklearn.linear_model.Lasso(alpha=l1)``'s coefficients, zeros exactly zero.

    Args:
      learning_rate: ``η``, a non-negative float or an optax schedule.
      l1, l2: non-negative strengths.
      mask: leaves (or entries) that get the regularizer, in any form
        :func:`~jaxreg.sgd` takes; the others are stepped without it.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
      >>> params = {"w": jnp.array([0.05, -1.0])}
      >>> opt = proximal_sgd(0.1, l1=1.0)
      >>> updates, _ = opt.update({"w": jnp.array([0.0, 1.0])}, opt.init(params), params)
      >>> print(jnp.round(optax.apply_updates(params, updates)["w"], 4))
      [ 0. -1.]
    """
    check_learning_rate(learning_rate)
    check_nonnegative(l1, "l1")
    check_nonnegative(l2, "l2")
    return optax.chain(
        scale_by_learning_rate(learning_rate),
        proximal_step(_l1_l2_prox(l1, l2), learning_rate, mask),
    )
