"""Torch-exact optimizers as optax transforms: :func:`sgd`, :func:`adam`, :func:`adamw`.

Each reproduces ``torch.optim.SGD``, ``Adam`` or ``AdamW`` step for step (same update
order, same bias corrections, same rounding), so a JAX training run follows its torch
twin to rounding error. Each is a short :func:`optax.chain` of the small pieces defined
here, like optax's own ``adamw``: :func:`add_decayed_weights` (torch's coupled L2),
:func:`trace_torch_momentum`, :func:`scale_by_torch_adam` and
:func:`scale_by_learning_rate`. The proximal optimizers, which produce exact zeros
(L1, elastic net, group lasso, ISTA), are in :mod:`jaxreg.proximal`.

Weight-decay masks work like torch parameter groups with ``weight_decay=0``: a leaf
whose mask is False is still stepped, it only gets no decay (as with
``optax.add_decayed_weights(wd, mask=...)``; wrapping a whole optimizer in
``optax.masked`` would instead leave such leaves unstepped). The masking is our own
rather than ``optax.masked`` for three reasons: torch's exact order and rounding (the
decay ``g + λ·w`` enters before SGD's momentum and Adam's moments, or after Adam's
direction for AdamW); elementwise boolean masks, which ``optax.masked`` cannot take (it
branches on each mask leaf in Python); and one resolver shared with the penalties and the
proximal steps (``jaxreg._masks``): masks matched to the params by path, nnx States
and filters (``mask=nnx.PathContains("kernel")``), errors that name the first mismatching
path. Under ``nnx.Optimizer(model, tx, wrt=nnx.Param)``, ``tx.init`` sees Variables and
``tx.update`` plain arrays; path matching makes a mask work for both.

Every numeric hyperparameter (``learning_rate``, ``momentum``, ``dampening``,
``weight_decay``, ``b1``, ``b2``, ``eps``) may be a JAX array, traced or not:
``jax.jit(lambda lr: sgd(lr).update(...))`` compiles once for every value, and
``optax.inject_hyperparams`` works, with results equal to the Python float call (a Python
``0`` skips work that torch skips; an array zero takes a ``where`` with the same result).
The checks that need values are skipped for traced ones. Masks go in ``static_args``
(``inject_hyperparams`` would take a callable mask for a schedule):
``optax.inject_hyperparams(jaxreg.adamw, static_args=("mask",))(learning_rate=1e-3,
weight_decay=1e-2, mask=jaxreg.weights_only)``. ``nesterov`` chooses the code path.

Learning-rate schedules are called with a count of JAX's default integer type, so under
x64 a float64 run gets a float64 learning rate, as torch's ``LambdaLR`` computes in Python
floats (optax's own int32 count makes most optax schedules float32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg import _masks
from jaxreg._numerics import check_in_unit_interval, check_nonnegative, is_concrete
from jaxreg._transforms import (
    MaskOrFn,
    Scalar,
    ScalarOrSchedule,
    check_learning_rate,
    is_number,
    lr_at,
    map_selected,
    require_params,
    scalar_like,
    unless_zero,
    wide,
    zero_count,
)

__all__ = ["sgd", "adam", "adamw"]


# --------------------------------------------------------------------------- states


class MaskState(NamedTuple):
    """What ``init`` resolved of the mask (static: the flags of a Variable-type filter,
    which ``update`` cannot see on the plain arrays ``nnx.Optimizer`` passes it)."""

    mask: _masks.Remembered


class CountState(NamedTuple):
    """The number of updates applied so far (for learning-rate schedules)."""

    count: jax.Array  # type: ignore[assignment]  # (optax's name; shadows tuple.count)


class TorchMomentumState(NamedTuple):
    """torch's momentum buffer and the number of updates applied so far."""

    count: jax.Array  # type: ignore[assignment]  # (optax's name; shadows tuple.count)
    momentum_buffer: Any


class TorchAdamState(NamedTuple):
    """torch Adam's step count and first and second moments (``exp_avg``, ``exp_avg_sq``)."""

    count: jax.Array  # type: ignore[assignment]  # (optax's name; shadows tuple.count)
    mu: Any
    nu: Any


# --------------------------------------------------------------------------- pieces


def add_decayed_weights(
    weight_decay: Any, mask: MaskOrFn | None = None
) -> optax.GradientTransformation:
    r"""Adds ``weight_decay · params`` to the updates of the masked leaves (torch's coupled L2).

    .. math::
        g \leftarrow g + \lambda w

    Leaves whose mask is False pass through unchanged (no decay); they are still stepped
    by whatever follows in the chain.
    """
    check_nonnegative(weight_decay, "weight_decay")

    def init_fn(params):
        return MaskState(_masks.remember(params, mask))

    def update_fn(updates, state, params=None):
        require_params(params, "add_decayed_weights")
        if is_number(weight_decay) and weight_decay == 0:
            return updates, state

        def decay(u, p):
            # torch: grad.add(param, alpha=weight_decay), i.e. g + wd * p.
            return unless_zero(weight_decay, u, lambda: u + scalar_like(weight_decay, p) * p)

        return map_selected(mask, decay, updates, params, state.mask), state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Multiplies the updates by ``-learning_rate`` (a constant or ``schedule(count)``).

    Like ``optax.scale_by_learning_rate``, but a schedule sees a count of JAX's default
    integer type, so its value is float64 whenever x64 is enabled (torch's ``LambdaLR``
    computes in Python floats), and the rate is cast to each leaf's dtype.
    """
    check_learning_rate(learning_rate)

    def init_fn(params):
        del params
        return CountState(zero_count())

    def update_fn(updates, state, params=None):
        del params
        lr = lr_at(learning_rate, state.count)
        # torch: param.add_(grad, alpha=-lr), i.e. p + (-lr) * g.
        updates = jax.tree.map(lambda g: -scalar_like(lr, g) * g, updates)
        return updates, CountState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def trace_torch_momentum(
    momentum: Any, *, dampening: Any = 0.0, nesterov: Any = False
) -> optax.GradientTransformation:
    r"""torch SGD's momentum: first step ``buf = g``, then ``buf = μ·buf + (1-τ)·g``.

    .. math::
        b_1 = g_1, \quad b_t = \mu b_{t-1} + (1 - \tau) g_t, \quad
        d_t = g_t + \mu b_t \text{ (nesterov) or } b_t

    With ``momentum == 0`` the direction is the gradient (as torch, whatever ``dampening``
    is); a Python ``0`` makes this the identity, with no buffer in the state, while an
    array momentum (traced, or from ``optax.inject_hyperparams``) keeps the buffer, so the
    state has the same structure whatever value it takes.
    """
    if is_number(momentum) and momentum == 0:
        return optax.identity()

    def init_fn(params):
        return TorchMomentumState(zero_count(), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0

        def buffer(g, b):
            mu, keep = scalar_like(momentum, g), scalar_like(1 - wide(dampening), g)
            # torch: buf.mul_(momentum).add_(grad, alpha=1 - dampening), and buf = grad first.
            return jnp.where(first, g, b * mu + keep * g)

        def direction(g, b):
            mu = scalar_like(momentum, g)
            # An array momentum may be 0 at run time: torch then uses the gradient itself.
            return unless_zero(momentum, g, lambda: _where_flag(nesterov, lambda: g + mu * b, b))

        buf = jax.tree.map(buffer, updates, state.momentum_buffer)
        out = jax.tree.map(direction, updates, buf)
        return out, TorchMomentumState(optax.safe_increment(state.count), buf)

    return optax.GradientTransformation(init_fn, update_fn)


def _where_flag(flag: Any, if_true: Callable[[], jax.Array], if_false: jax.Array) -> jax.Array:
    """``if_true()`` when the (possibly traced) boolean ``flag`` holds, else ``if_false``."""
    if is_concrete(flag):
        return if_true() if bool(flag) else if_false
    return jnp.where(flag, if_true(), if_false)


def scale_by_torch_adam(b1: Any, b2: Any, eps: Any) -> optax.GradientTransformation:
    r"""torch Adam's direction ``m̂ / (√v / √(1-β₂ᵗ) + ε)`` with ``m̂ = m / (1-β₁ᵗ)``.

    .. math::
        m_t = m_{t-1} + (1-\beta_1)(g_t - m_{t-1}), \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        d_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    ε is added *after* dividing by ``√(1-β₂ᵗ)`` (torch), not before (optax's ``eps``).
    """

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return TorchAdamState(zero_count(), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        # torch keeps the step count and bias corrections in Python floats (double).
        t = (state.count + 1).astype(wide(0.0).dtype)
        w1, w2 = 1 - wide(b1), 1 - wide(b2)
        inv_bc1 = 1 / (1 - wide(b1) ** t)
        sqrt_bc2 = jnp.sqrt(1 - wide(b2) ** t)

        def first_moment(g, m):
            # torch: exp_avg.lerp_(grad, 1 - beta1); lerp switches form at weight 0.5.
            w = scalar_like(w1, g)
            low = lambda: m + w * (g - m)  # noqa: E731
            return _where_flag(w1 < 0.5, low, g - (g - m) * (1 - w))

        def second_moment(g, v):
            # torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2).
            return v * scalar_like(b2, v) + scalar_like(w2, g) * g * g

        def direction(m, v):
            denom = jnp.sqrt(v) / scalar_like(sqrt_bc2, v) + scalar_like(eps, v)
            return scalar_like(inv_bc1, m) * m / denom

        mu = jax.tree.map(first_moment, updates, state.mu)
        nu = jax.tree.map(second_moment, updates, state.nu)
        out = jax.tree.map(direction, mu, nu)
        return out, TorchAdamState(optax.safe_increment(state.count), mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- optimizers


def sgd(
    learning_rate: ScalarOrSchedule,
    *,
    momentum: Scalar = 0.0,
    dampening: Scalar = 0.0,
    weight_decay: Scalar = 0.0,
    nesterov: bool = False,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    r"""Stochastic gradient descent exactly as ``torch.optim.SGD``.

    .. math::
        g_t \leftarrow g_t + \lambda w_t, \quad
        b_t = \mu b_{t-1} + (1-\tau) g_t \ (b_1 = g_1), \quad
        w_{t+1} = w_t - \eta_t\, (g_t + \mu b_t \text{ if nesterov else } b_t)

    Args:
      learning_rate: ``η``, a non-negative float or an optax schedule ``step -> lr``
        (torch: ``LambdaLR``).
      momentum: ``μ >= 0``.
      dampening: ``τ`` in [0, 1] (torch applies it from the second step on).
      weight_decay: ``λ >= 0``, added to the gradient *before* momentum (coupled L2,
        the gradient of ``λ·l2_penalty``).
      nesterov: Nesterov momentum, a code-path flag (a Python bool); needs
        ``momentum > 0`` and ``dampening == 0`` (as torch).
      mask: which leaves (or entries) get weight decay: ``None`` (all), a pytree of bools
        matched to the params by path (boolean arrays as leaves select entries), a
        callable on the params returning one (e.g. ``weights_only``), or an nnx filter
        (``nnx.PathContains("kernel")``). False leaves are a torch param group with
        ``weight_decay=0``: they are still stepped. Under ``optax.inject_hyperparams``
        list it in ``static_args``.

    Returns:
      An :class:`optax.GradientTransformation`; its updates are ``w_{t+1} - w_t``.

    Example:
      >>> import optax
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> opt = sgd(0.1, momentum=0.9, weight_decay=0.1)
      >>> state = opt.init(params)
      >>> grads = {"w": jnp.array([0.5, 0.5])}
      >>> updates, state = opt.update(grads, state, params)
      >>> print(jnp.round(optax.apply_updates(params, updates)["w"], 4))
      [ 0.94 -2.03]
    """
    check_learning_rate(learning_rate)
    check_nonnegative(momentum, "momentum")
    check_in_unit_interval(dampening, "dampening")
    if all(map(is_concrete, (nesterov, momentum, dampening))) and (
        nesterov and (momentum <= 0 or dampening != 0)
    ):
        raise ValueError(
            "`nesterov=True` requires `momentum > 0` and `dampening == 0` (as torch.optim.SGD); "
            f"got momentum={momentum}, dampening={dampening}."
        )
    return optax.chain(
        add_decayed_weights(weight_decay, mask),
        trace_torch_momentum(momentum, dampening=dampening, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def _check_adam(b1: Any, b2: Any, eps: Any) -> None:
    for name, b in (("b1", b1), ("b2", b2)):
        if is_concrete(b) and not 0.0 <= float(b) < 1.0:
            raise ValueError(f"`{name}` must lie in [0, 1), got {b}.")
    check_nonnegative(eps, "eps")


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    *,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: Scalar = 0.0,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    r"""Adam exactly as ``torch.optim.Adam``, with coupled L2 (``weight_decay`` added to g).

    .. math::
        w_{t+1} = w_t - \frac{\eta_t}{1-\beta_1^t}\,
        \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon},
        \quad m, v \text{ moments of } g_t + \lambda w_t

    Args:
      learning_rate: ``η``, a non-negative float or an optax schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: ``ε >= 0``, added after the bias correction of ``√v`` (torch), unlike
        ``optax.adam``.
      weight_decay: ``λ >= 0``, coupled: added to the gradient, so it is rescaled by the
        adaptive denominator (prefer :func:`adamw`).
      mask: which leaves get weight decay (see :func:`sgd`).

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> opt = adam(0.1)
      >>> updates, _ = opt.update({"w": jnp.array([0.5, -0.5])}, opt.init(params), params)
      >>> print(jnp.round(updates["w"], 4))
      [-0.1  0.1]
    """
    check_learning_rate(learning_rate)
    _check_adam(b1, b2, eps)
    return optax.chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_torch_adam(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    *,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: Scalar = 1e-2,
    mask: MaskOrFn | None = None,
) -> optax.GradientTransformation:
    r"""AdamW exactly as ``torch.optim.AdamW``: decoupled decay, multiplied by the learning rate.

    .. math::
        w_{t+1} = w_t (1 - \eta_t \lambda) - \frac{\eta_t}{1-\beta_1^t}\,
        \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    Args:
      learning_rate: ``η``, a non-negative float or an optax schedule.
      b1, b2: moment decay rates in [0, 1).
      eps: ``ε >= 0`` (torch placement, see :func:`adam`).
      weight_decay: ``λ >= 0``, default ``1e-2`` (torch; optax's default is ``1e-4``).
      mask: which leaves get weight decay (see :func:`sgd`).

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> params = {"w": jnp.array([1.0, -2.0])}
      >>> opt = adamw(0.1, weight_decay=0.5)
      >>> updates, _ = opt.update({"w": jnp.array([0.5, -0.5])}, opt.init(params), params)
      >>> print(jnp.round(updates["w"], 4))
      [-0.15  0.2 ]
    """
    check_learning_rate(learning_rate)
    _check_adam(b1, b2, eps)
    return optax.chain(
        scale_by_torch_adam(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
