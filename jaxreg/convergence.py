r"""Norm convergence: track ‖Δw‖, ‖Δw‖/‖w‖ and ‖g‖ during training, and stop on them.

A training run has converged (in norm) when its steps have become small compared with
the parameters themselves:

.. math::
    \|w_{t+1} - w_t\|_p \le \mathrm{tol} \cdot \max(\|w_{t+1}\|_p, 1)

(relative for large parameters, absolute near zero). :func:`convergence_update`
measures the three norms after every step, with any ``ord`` of
:func:`jaxreg.norms.global_norm`; :func:`has_converged` is a traced boolean that can
drive a ``lax.while_loop``; :func:`minimize` is that loop, jitted as a whole.

A broken run never reads as converged: :func:`has_converged` is False when ``‖Δw‖`` or
``‖w‖`` is NaN or infinite, and :func:`minimize` stops at the first step with a
non-finite loss, gradient, step or parameter norm and reports ``converged=False``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxreg._numerics import check_nonnegative
from jaxreg.norms import global_norm

__all__ = [
    "ConvergenceState",
    "convergence_init",
    "convergence_update",
    "has_converged",
    "minimize",
    "MinimizeResult",
]

#: The quantities recorded by :func:`minimize`'s history, in this order.
HISTORY_KEYS = ("step_norm", "relative_step", "grad_norm", "param_norm")


class ConvergenceState(NamedTuple):
    """The norms of the last step.

    Attributes:
      count: number of updates recorded (int scalar).
      params: the parameters after the last update (to form the next ``Δw``).
      step_norm: ``‖Δw‖`` of the last update; ``inf`` before the first one.
      relative_step: ``‖Δw‖ / ‖w‖`` (0 when both are 0, ``inf`` when only ``‖w‖`` is,
        NaN when either is NaN); ``inf`` before the first update.
      grad_norm: ``‖g‖`` of the gradient that made the last update; ``inf`` before it.
      param_norm: ``‖w‖`` after the last update.
    """

    count: jax.Array  # type: ignore[assignment]  # (shadows tuple.count, as optax's states do)
    params: Any
    step_norm: jax.Array
    relative_step: jax.Array
    grad_norm: jax.Array
    param_norm: jax.Array


def convergence_init(params: Any, *, ord: Any = 2) -> ConvergenceState:
    """The state before any update: no step taken, so every step norm is ``inf``.

    Args:
      params: the initial parameters, a pytree of floating arrays.
      ord: the norm of ``‖w‖`` (any ``ord`` of :func:`jaxreg.norms.global_norm`).

    Returns:
      A :class:`ConvergenceState` (scalars in the promoted dtype of the leaves).

    Example:
      >>> state = convergence_init({"w": jnp.array([3.0, 4.0])})
      >>> print(state.param_norm, state.step_norm, has_converged(state))
      5.0 inf False
    """
    param_norm = global_norm(params, ord)
    inf = jnp.full((), jnp.inf, param_norm.dtype)
    count = jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.int64))
    return ConvergenceState(count, params, inf, inf, inf, param_norm)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    """``num / den`` for non-negative norms: 0 when both are 0, ``inf`` when only ``den`` is,
    NaN when either is NaN (the guards test ``== 0``, so NaN takes the dividing branch)."""
    zero = den == 0
    # Double where: the division never sees a zero denominator.
    ratio = num / jnp.where(zero, jnp.ones_like(den), den)
    # x/0 for x > 0 is inf; a NaN numerator stays NaN.
    over_zero = jnp.where(num == 0, jnp.zeros_like(num), jnp.where(jnp.isnan(num), num, jnp.inf))
    return jnp.where(zero, over_zero, ratio)


def convergence_update(
    state: ConvergenceState, params: Any, grads: Any, *, ord: Any = 2
) -> ConvergenceState:
    r"""Records one update: the new ``params`` and the ``grads`` that produced them.

    .. math::
        s = \|w_{t+1} - w_t\|_p, \quad r = s / \|w_{t+1}\|_p, \quad \gamma = \|g_t\|_p

    Args:
      state: the state after the previous update (or :func:`convergence_init`).
      params: the parameters after this update, same structure as ``state.params``.
      grads: the gradient used for this update, same structure.
      ord: any ``ord`` of :func:`jaxreg.norms.global_norm` (2, 1, ``inf``, ...).

    Returns:
      The new :class:`ConvergenceState`.

    Example:
      >>> state = convergence_init(jnp.array([3.0, 4.0]))
      >>> state = convergence_update(state, jnp.array([3.0, 4.5]), jnp.array([0.0, -1.0]))
      >>> print(state.step_norm, jnp.round(state.relative_step, 4), state.grad_norm)
      0.5 0.0925 1.0
    """
    dtype = state.step_norm.dtype
    delta = jax.tree.map(lambda new, old: new - old, params, state.params)
    step = global_norm(delta, ord).astype(dtype)
    param_norm = global_norm(params, ord).astype(dtype)
    grad_norm = global_norm(grads, ord).astype(dtype)
    return ConvergenceState(
        count=state.count + 1,
        params=params,
        step_norm=step,
        relative_step=_safe_ratio(step, param_norm),
        grad_norm=grad_norm,
        param_norm=param_norm,
    )


def has_converged(state: ConvergenceState, *, tol: Any = 1e-6) -> jax.Array:
    r"""Whether the last step was small: ``‖Δw‖ <= tol · max(‖w‖, 1)``, both norms finite.

    .. math::
        \|\Delta w\|_p \le \mathrm{tol} \cdot \max(\|w\|_p, 1),
        \qquad \|\Delta w\|_p, \|w\|_p < \infty

    A traced boolean scalar, usable as a ``lax.while_loop`` condition. False before the
    first update (the step norm is ``inf`` then) and whenever ``‖Δw‖`` or ``‖w‖`` is NaN
    or infinite: a broken run is never converged. The test is ``<=``, so ``tol=0`` holds
    after an exactly zero step.

    Args:
      state: a :class:`ConvergenceState`.
      tol: non-negative tolerance (a Python number or a traced scalar).

    Returns:
      A boolean scalar array.

    Example:
      >>> state = convergence_init(jnp.array([3.0, 4.0]))
      >>> state = convergence_update(state, jnp.array([3.0, 4.0 + 1e-7]), jnp.zeros(2))
      >>> print(has_converged(state, tol=1e-6), has_converged(state, tol=1e-9))
      True False
      >>> print(has_converged(state._replace(step_norm=jnp.array(jnp.nan)), tol=1e30))
      False
    """
    check_nonnegative(tol, "tol")
    dtype = state.step_norm.dtype
    step, norm = state.step_norm, state.param_norm
    scale = jnp.maximum(norm, jnp.ones((), dtype))
    # NaN compares False, but the finiteness is explicit: an inf tol must not pass an inf
    # step, and the result must not hinge on how a comparison is written.
    finite = jnp.isfinite(step) & jnp.isfinite(norm)
    return finite & (step <= jnp.asarray(tol, dtype) * scale)


class MinimizeResult(NamedTuple):
    """What :func:`minimize` returns.

    Attributes:
      params: the parameters after the last update (those of the failing step when the
        run broke).
      num_steps: the number of updates taken (int scalar).
      history: a dict of ``[max_steps]`` arrays ``"step_norm"``, ``"relative_step"``,
        ``"grad_norm"`` and ``"param_norm"``; entry ``i`` is after update ``i + 1``,
        entries past ``num_steps`` are ``inf`` (no step was taken there).
      converged: boolean scalar, True only if :func:`has_converged` held at the last
        step and every step had a finite loss, gradient, step and parameter norm. False
        with ``num_steps == max_steps``: out of steps; False with fewer steps: the run
        broke (NaN or inf) at step ``num_steps``.
    """

    params: Any
    num_steps: jax.Array
    history: dict[str, jax.Array]
    converged: jax.Array


def minimize(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    optimizer: optax.GradientTransformation,
    *,
    max_steps: int,
    tol: Any,
    ord: Any = 2,
) -> MinimizeResult:
    r"""Runs ``optimizer`` on ``loss_fn`` until norm convergence, in one jitted ``while_loop``.

    .. math::
        \text{stop when}\quad \|w_{t+1} - w_t\|_{\mathrm{ord}}
        \le \mathrm{tol} \cdot \max(\|w_{t+1}\|_{\mathrm{ord}}, 1)

    Steps until :func:`has_converged`, until ``max_steps`` updates, or until a step is
    broken: its loss, gradient norm, step norm or parameter norm is NaN or infinite (the
    run stops there instead of iterating to ``max_steps``). Check ``result.converged``:
    ``num_steps < max_steps`` alone does not mean convergence.

    Args:
      loss_fn: ``params -> scalar loss`` (hashable, e.g. a module-level function or a
        ``functools.partial``: it is a static argument of the jitted loop).
      params: the initial parameters, a pytree of floating arrays.
      optimizer: an :class:`optax.GradientTransformation` (e.g. :func:`jaxreg.optim.sgd`).
      max_steps: the largest number of updates (a positive int).
      tol: non-negative tolerance of the stopping test (may be traced).
      ord: the norm used for ``‖Δw‖``, ``‖w‖`` and ``‖g‖``.

    Returns:
      A :class:`MinimizeResult` ``(params, num_steps, history, converged)``.

    Example:
      >>> import optax
      >>> loss = lambda w: 0.5 * jnp.sum((w - jnp.array([1.0, -2.0])) ** 2)
      >>> result = minimize(loss, jnp.zeros(2), optax.sgd(0.5), max_steps=100, tol=1e-8)
      >>> print(jnp.round(result.params, 5), result.converged, int(result.num_steps) < 100)
      [ 1. -2.] True True
      >>> print(jnp.round(result.history["step_norm"][:3], 4))
      [1.118  0.559  0.2795]
      >>> diverging = minimize(loss, jnp.zeros(2), optax.sgd(1e300), max_steps=100, tol=1e-8)
      >>> print(diverging.converged, int(diverging.num_steps))
      False 2
    """
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive int, got {max_steps!r}.")
    check_nonnegative(tol, "tol")
    return _minimize(
        params, tol, loss_fn=loss_fn, optimizer=optimizer, max_steps=max_steps, ord=ord
    )


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "max_steps", "ord"))
def _minimize(params, tol, *, loss_fn, optimizer, max_steps, ord) -> MinimizeResult:
    conv = convergence_init(params, ord=ord)
    history = {k: jnp.full((max_steps,), jnp.inf, conv.step_norm.dtype) for k in HISTORY_KEYS}
    finite = jnp.ones((), bool)  # every step so far had finite loss and norms

    def cond(carry):
        _, _, conv, _, finite = carry
        return (conv.count < max_steps) & finite & ~has_converged(conv, tol=tol)

    def body(carry):
        params, opt_state, conv, history, _ = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        conv = convergence_update(conv, params, grads, ord=ord)
        history = {k: h.at[conv.count - 1].set(getattr(conv, k)) for k, h in history.items()}
        norms = jnp.stack([conv.step_norm, conv.param_norm, conv.grad_norm])
        finite = jnp.isfinite(loss) & jnp.all(jnp.isfinite(norms))
        return params, opt_state, conv, history, finite

    carry = (params, optimizer.init(params), conv, history, finite)
    params, _, conv, history, finite = jax.lax.while_loop(cond, body, carry)
    return MinimizeResult(params, conv.count, history, finite & has_converged(conv, tol=tol))
