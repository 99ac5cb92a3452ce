"""Regularized optimizers as optax transforms: torch-exact SGD/Adam/AdamW and proximal steps.

Every optimizer here is a short :func:`optax.chain` of small pieces, like optax's own
``adamw``:

- :func:`sgd`, :func:`adam` and :func:`adamw` reproduce ``torch.optim.SGD``, ``Adam``
  and ``AdamW`` step for step (same update order, same bias corrections), so a JAX
  training run follows its torch twin to rounding error;
- :func:`l1_proximal`, :func:`elastic_net_proximal` and :func:`group_lasso_proximal`
  are chained *after* an optimizer and replace the parameters it produced by the
  proximal map of a penalty; :func:`proximal_sgd` is ISTA.

Weight-decay masks work like torch parameter groups with ``weight_decay=0``: a leaf
whose mask is False is still stepped, it only gets no decay (as with
``optax.add_decayed_weights(wd, mask=...)``; wrapping a whole optimizer in
``optax.masked`` would instead leave such leaves unstepped). The masking is our own
rather than ``optax.masked`` for three reasons: torch's exact order and rounding (the
decay ``g + λ·w`` enters before SGD's momentum and Adam's moments, or after Adam's
direction for AdamW); elementwise boolean masks, which ``optax.masked`` cannot take (it
branches on each mask leaf in Python); and one resolver shared with the penalties
(:mod:`jaxreg._masks`): masks matched to the params by path, nnx States and filters
(``mask=nnx.PathContains("kernel")``), errors that name the first mismatching path. Under
``nnx.Optimizer(model, tx, wrt=nnx.Param)``, ``tx.init`` sees Variables and
``tx.update`` plain arrays; path matching makes a mask work for both.

Proximal steps produce exact zeros. A subgradient L1 penalty added to the loss never
does: its iterates oscillate around zero with amplitude ``lr·strength``, so sparsity
needs the proximal map (soft-thresholding).

Every numeric hyperparameter (``learning_rate``, ``momentum``, ``dampening``,
``weight_decay``, ``b1``, ``b2``, ``eps``, ``strength``, ``l1_ratio``, ``l1``, ``l2``) may be
a JAX array, traced or not: ``jax.jit(lambda lr: sgd(lr).update(...))`` compiles once for
every value, and ``optax.inject_hyperparams`` works, with results equal to the Python
float call (a Python ``0`` skips work that torch skips; an array zero takes a ``where``
with the same result). The checks that need values are skipped for traced ones. Masks go
in ``static_args`` (``inject_hyperparams`` would take a callable mask for a schedule):
``optax.inject_hyperparams(jaxreg.adamw, static_args=("mask",))(learning_rate=1e-3,
weight_decay=1e-2, mask=jaxreg.weights_only)``. ``nesterov`` chooses the code path.

Learning-rate schedules are called with a count of JAX's default integer type, so under
x64 a float64 run gets a float64 learning rate, as torch's ``LambdaLR`` computes in Python
floats (optax's own int32 count makes most optax schedules float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import _masks
from jaxreg._numerics import (
    check_in_unit_interval,
    check_nonnegative,
    is_concrete,
    normalize_axis,
)

__all__ = [
    "sgd",
    "adam",
    "adamw",
    "l1_proximal",
    "elastic_net_proximal",
    "group_lasso_proximal",
    "proximal_sgd",
]

Scalar = float | jax.Array  # a Python number or a JAX array, traced or not
ScalarOrSchedule = Scalar | Callable[[jax.Array], Any]
MaskOrFn = Any  # None, a pytree of bools / boolean arrays, params -> mask, or an nnx filter


# --------------------------------------------------------------------------- internals


def _map_selected(
    mask: MaskOrFn | None,
    fn: Callable[[jax.Array, jax.Array], jax.Array],
    updates: Any,
    params: Any,
    remembered: _masks.Remembered,
) -> Any:
    """``fn(u, p)`` on the selected leaves (entries) of ``updates``, ``u`` elsewhere.

    Through the one resolver: a False leaf is not computed on; an elementwise mask is a
    double where (``fn`` sees unselected entries of ``u`` and ``p`` as zeros).
    ``remembered`` holds what ``init`` resolved from nnx Variables (see ``MaskState``).
    """
    selections = [e.selection for e in _masks.resolve(params, mask, remembered=remembered)]
    flat, treedef = jax.tree.flatten(updates)
    out = [
        _masks.select(k, fn, u, u, p)
        for u, p, k in zip(flat, jax.tree.leaves(params), selections, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def _check_learning_rate(learning_rate: ScalarOrSchedule, name: str = "learning_rate") -> None:
    check_nonnegative(learning_rate, name)


def _is_number(x: Any) -> bool:
    """A Python (or NumPy) number: decided in Python. Arrays, traced or not, are data."""
    return isinstance(x, int | float | np.number)


def _unless_zero(x: Any, if_zero: jax.Array, compute: Callable[[], jax.Array]) -> jax.Array:
    """``compute()``, or ``if_zero`` where the hyperparameter ``x`` is 0 (torch's
    ``if x != 0``). A Python number decides in Python; an array takes a ``where`` with the
    same result, so a traced 0 gives what a Python 0 gives (NaN computes)."""
    if _is_number(x):
        return if_zero if x == 0 else compute()
    return jnp.where(jnp.asarray(x) == 0, if_zero, compute())


def _lr_at(learning_rate: ScalarOrSchedule, count: jax.Array) -> Any:
    """The learning rate of step ``count`` (a schedule is called, a constant returned)."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _scalar(x: Any, like: jax.Array) -> jax.Array:
    """A hyperparameter (Python float or array) cast to the dtype of ``like``."""
    return jnp.asarray(x, dtype=like.dtype)


def _wide(x: Any) -> jax.Array:
    """``x`` in the widest enabled float (float64 under x64), where torch uses Python floats."""
    return jnp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


def _require_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(
            f"`{name}` needs the current params: call `update(updates, state, params)`."
        )


class MaskState(NamedTuple):
    """What ``init`` resolved of the mask (static: the flags of a Variable-type filter,
    which ``update`` cannot see on the plain arrays ``nnx.Optimizer`` passes it)."""

    mask: _masks.Remembered


class ProximalState(NamedTuple):
    """The number of updates applied so far (for schedules) and the resolved mask."""

    count: jax.Array
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


def _zero_count() -> jax.Array:
    """A step counter in JAX's default integer (int64 under x64): schedules evaluated at an
    int32 count compute in float32, which would make float64 runs drift from torch."""
    return jnp.zeros([], jax.dtypes.canonicalize_dtype(jnp.int64))


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
        _require_params(params, "add_decayed_weights")
        if _is_number(weight_decay) and weight_decay == 0:
            return updates, state

        def decay(u, p):
            # torch: grad.add(param, alpha=weight_decay), i.e. g + wd * p.
            return _unless_zero(weight_decay, u, lambda: u + _scalar(weight_decay, p) * p)

        return _map_selected(mask, decay, updates, params, state.mask), state

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Multiplies the updates by ``-learning_rate`` (a constant or ``schedule(count)``).

    Like ``optax.scale_by_learning_rate``, but a schedule sees a count of JAX's default
    integer type, so its value is float64 whenever x64 is enabled (torch's ``LambdaLR``
    computes in Python floats), and the rate is cast to each leaf's dtype.
    """
    _check_learning_rate(learning_rate)

    def init_fn(params):
        del params
        return CountState(_zero_count())

    def update_fn(updates, state, params=None):
        del params
        lr = _lr_at(learning_rate, state.count)
        # torch: param.add_(grad, alpha=-lr), i.e. p + (-lr) * g.
        updates = jax.tree.map(lambda g: -_scalar(lr, g) * g, updates)
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
    if _is_number(momentum) and momentum == 0:
        return optax.identity()

    def init_fn(params):
        return TorchMomentumState(_zero_count(), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0

        def buffer(g, b):
            mu, keep = _scalar(momentum, g), _scalar(1 - _wide(dampening), g)
            # torch: buf.mul_(momentum).add_(grad, alpha=1 - dampening), and buf = grad first.
            return jnp.where(first, g, b * mu + keep * g)

        def direction(g, b):
            mu = _scalar(momentum, g)
            # An array momentum may be 0 at run time: torch then uses the gradient itself.
            return _unless_zero(momentum, g, lambda: _where_flag(nesterov, lambda: g + mu * b, b))

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
        return TorchAdamState(_zero_count(), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        # torch keeps the step count and bias corrections in Python floats (double).
        t = (state.count + 1).astype(_wide(0.0).dtype)
        w1, w2 = 1 - _wide(b1), 1 - _wide(b2)
        inv_bc1 = 1 / (1 - _wide(b1) ** t)
        sqrt_bc2 = jnp.sqrt(1 - _wide(b2) ** t)

        def first_moment(g, m):
            # torch: exp_avg.lerp_(grad, 1 - beta1); lerp switches form at weight 0.5.
            w = _scalar(w1, g)
            low = lambda: m + w * (g - m)  # noqa: E731
            return _where_flag(w1 < 0.5, low, g - (g - m) * (1 - w))

        def second_moment(g, v):
            # torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2).
            return v * _scalar(b2, v) + _scalar(w2, g) * g * g

        def direction(m, v):
            denom = jnp.sqrt(v) / _scalar(sqrt_bc2, v) + _scalar(eps, v)
            return _scalar(inv_bc1, m) * m / denom

        mu = jax.tree.map(first_moment, updates, state.mu)
        nu = jax.tree.map(second_moment, updates, state.nu)
        out = jax.tree.map(direction, mu, nu)
        return out, TorchAdamState(optax.safe_increment(state.count), mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


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
    _check_learning_rate(learning_rate)

    def init_fn(params):
        return ProximalState(_zero_count(), _masks.remember(params, mask))

    def update_fn(updates, state, params=None):
        _require_params(params, "proximal step")
        lr = _lr_at(learning_rate, state.count)
        # With an elementwise mask, unselected entries are zeros for the prox (so a
        # group's norm is over its selected entries) and keep the optimizer's update.
        updates = _map_selected(mask, lambda u, p: prox(p + u, lr) - p, updates, params, state.mask)
        return updates, ProximalState(optax.safe_increment(state.count), state.mask)

    return optax.GradientTransformation(init_fn, update_fn)


def soft_threshold(z: jax.Array, threshold: Any) -> jax.Array:
    """``sign(z)·max(|z| - t, 0)``: the proximal map of ``t·‖·‖₁`` (torch's ``softshrink``).

    Computed as ``z - clip(z, -t, t)``: the same bits as ``softshrink`` (``z ∓ t`` outside,
    ``+0`` inside). ``threshold`` is a scalar or an array broadcastable to ``z``'s shape.
    """
    t = jnp.broadcast_to(_scalar(threshold, z), z.shape)
    return z - jnp.clip(z, -t, t)


def _l1_l2_prox(l1: Any, l2: Any) -> Callable[[jax.Array, Any], jax.Array]:
    """The prox of ``lr·(l1·‖w‖₁ + l2·½‖w‖²)``: soft-threshold by ``lr·l1``, then divide
    by ``1 + lr·l2`` (each skipped where its strength is zero, as torch_ref does)."""

    def prox(z, lr):
        lr = _wide(lr)
        out = _unless_zero(l1, z, lambda: soft_threshold(z, lr * _wide(l1)))
        return _unless_zero(l2, out, lambda: out / _scalar(1 + lr * _wide(l2), z))

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
        t = _scalar(_wide(lr) * _wide(strength) * math.sqrt(z.shape[ax]), z)
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
    _check_learning_rate(learning_rate)
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
    _check_learning_rate(learning_rate)
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
    _check_learning_rate(learning_rate)
    _check_adam(b1, b2, eps)
    return optax.chain(
        scale_by_torch_adam(b1, b2, eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# --------------------------------------------------------------------------- proximal steps


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
      mask: leaves (or entries) to threshold, in any form :func:`sgd` takes; the others
        are left as the optimizer set them.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
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
      mask: leaves (or entries) to regularize, in any form :func:`sgd` takes.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
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
      mask: leaves (or entries) to regularize, in any form :func:`sgd` takes (scalar
        leaves must be masked out). With an elementwise mask a group's norm is over its
        selected entries.

    Returns:
      An :class:`optax.GradientTransformation`.

    Example:
      >>> import optax
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
      mask: leaves (or entries) that get the regularizer, in any form :func:`sgd` takes;
        the others are stepped without it.

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
    _check_learning_rate(learning_rate)
    check_nonnegative(l1, "l1")
    check_nonnegative(l2, "l2")
    return optax.chain(
        scale_by_learning_rate(learning_rate),
        proximal_step(_l1_l2_prox(l1, l2), learning_rate, mask),
    )
