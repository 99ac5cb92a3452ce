r"""torch twin of :mod:`jaxreg.convergence`: norm-convergence tracking and a stopping loop.

The same state, tests and history as jaxreg, on tensors (norms from
:func:`torch_ref.norms.global_norm`, i.e. ``torch.linalg.vector_norm`` of the flattened
leaves). :func:`minimize` is the usual ``zero_grad / backward / step`` loop, stopping when

.. math::
    \|w_{t+1} - w_t\|_p \le \mathrm{tol} \cdot \max(\|w_{t+1}\|_p, 1),

and stopping (not converged) at the first step with a NaN or infinite loss, gradient, step
or parameter norm, as jaxreg.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch.utils import _pytree as pytree

from torch_ref.norms import global_norm

__all__ = [
    "ConvergenceState",
    "convergence_init",
    "convergence_update",
    "has_converged",
    "minimize",
    "MinimizeResult",
]

HISTORY_KEYS = ("step_norm", "relative_step", "grad_norm", "param_norm")


class ConvergenceState(NamedTuple):
    """The norms of the last step (see :class:`jaxreg.convergence.ConvergenceState`)."""

    count: torch.Tensor  # type: ignore[assignment]  # (shadows tuple.count)
    params: Any
    step_norm: torch.Tensor
    relative_step: torch.Tensor
    grad_norm: torch.Tensor
    param_norm: torch.Tensor


def _snapshot(params: Any) -> Any:
    """A copy (optimizers update tensors in place); differentiable, as jaxreg's state."""
    return pytree.tree_map(lambda p: p.clone(), params)


def convergence_init(params: Any, *, ord: Any = 2) -> ConvergenceState:
    """The state before any update; mirrors :func:`jaxreg.convergence.convergence_init`.

    Example:
      >>> import torch
      >>> state = convergence_init({"w": torch.tensor([3.0, 4.0])})
      >>> print(state.param_norm.item(), state.step_norm.item(), has_converged(state).item())
      5.0 inf False
    """
    params = _snapshot(params)
    param_norm = global_norm(params, ord)
    inf = torch.full((), torch.inf, dtype=param_norm.dtype)
    count = torch.zeros((), dtype=torch.int64)
    return ConvergenceState(count, params, inf, inf, inf, param_norm)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``: 0 when both are 0, ``inf`` when only ``den`` is, NaN when either is."""
    zero = den == 0
    ratio = num / torch.where(zero, torch.ones_like(den), den)
    inf = torch.full_like(num, torch.inf)
    over_zero = torch.where(num == 0, torch.zeros_like(num), torch.where(num.isnan(), num, inf))
    return torch.where(zero, over_zero, ratio)


def convergence_update(
    state: ConvergenceState, params: Any, grads: Any, *, ord: Any = 2
) -> ConvergenceState:
    """Records one update; mirrors :func:`jaxreg.convergence.convergence_update`.

    Example:
      >>> import torch
      >>> state = convergence_init(torch.tensor([3.0, 4.0]))
      >>> state = convergence_update(state, torch.tensor([3.0, 4.5]), torch.tensor([0.0, -1.0]))
      >>> print(state.step_norm.item(), round(state.relative_step.item(), 4))
      0.5 0.0925
    """
    dtype = state.step_norm.dtype
    params = _snapshot(params)
    delta = pytree.tree_map(lambda new, old: new - old, params, state.params)
    step = global_norm(delta, ord).to(dtype)
    param_norm = global_norm(params, ord).to(dtype)
    grad_norm = global_norm(grads, ord).to(dtype)
    return ConvergenceState(
        state.count + 1, params, step, _safe_ratio(step, param_norm), grad_norm, param_norm
    )


def has_converged(state: ConvergenceState, *, tol: Any = 1e-6) -> torch.Tensor:
    """``‖Δw‖ <= tol · max(‖w‖, 1)`` with both norms finite; mirrors
    :func:`jaxreg.convergence.has_converged` (False on a NaN or infinite step)."""
    if float(tol) < 0:
        raise ValueError(f"`tol` must be non-negative, got {tol}.")
    step, norm = state.step_norm, state.param_norm
    scale = torch.clamp(norm, min=1.0)
    finite = torch.isfinite(step) & torch.isfinite(norm)
    return finite & (step <= tol * scale)


class MinimizeResult(NamedTuple):
    """What :func:`minimize` returns; mirrors :class:`jaxreg.convergence.MinimizeResult`."""

    params: Any
    num_steps: torch.Tensor
    history: dict[str, torch.Tensor]
    converged: torch.Tensor


def minimize(
    loss_fn: Callable[[Any], torch.Tensor],
    params: Any,
    optimizer: torch.optim.Optimizer | Callable[[Any], torch.optim.Optimizer],
    *,
    max_steps: int,
    tol: float,
    ord: Any = 2,
) -> MinimizeResult:
    """Steps ``optimizer`` on ``loss_fn`` until norm convergence; mirrors
    :func:`jaxreg.convergence.minimize`.

    torch optimizers are bound to their parameters, so ``optimizer`` is either one built on
    ``params`` or a callable ``params -> optimizer`` (e.g. ``lambda p: torch_ref.optim.sgd(p,
    0.1)``). ``params`` (a pytree of leaf tensors with ``requires_grad``) are updated in place.
    Stops early, not converged, at the first step whose loss, gradient norm, step norm or
    parameter norm is NaN or infinite.

    Returns:
      A :class:`MinimizeResult` ``(params, num_steps, history, converged)`` as jaxreg:
      ``history`` holds ``[max_steps]`` tensors (``"step_norm"``, ``"relative_step"``,
      ``"grad_norm"``, ``"param_norm"``), ``inf`` past ``num_steps``; ``converged`` is a
      boolean tensor, True only if the norm test held at a finite last step.

    Example:
      >>> import torch
      >>> w = torch.zeros(2, requires_grad=True)
      >>> loss = lambda w: 0.5 * torch.sum((w - torch.tensor([1.0, -2.0])) ** 2)
      >>> opt = lambda p: torch.optim.SGD([p], lr=0.5)
      >>> result = minimize(loss, w, opt, max_steps=100, tol=1e-8)
      >>> print(result.params.detach().numpy().round(5), result.converged.item())
      [ 1. -2.] True
    """
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive int, got {max_steps!r}.")
    if not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer(params)
    with torch.no_grad():
        state = convergence_init(params, ord=ord)
    history = {
        k: torch.full((max_steps,), torch.inf, dtype=state.step_norm.dtype) for k in HISTORY_KEYS
    }
    leaves, spec = pytree.tree_flatten(params)
    finite = torch.ones((), dtype=torch.bool)
    while int(state.count) < max_steps and finite and not has_converged(state, tol=tol):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(params)
        loss.backward()
        grads = pytree.tree_unflatten([p.grad.detach().clone() for p in leaves], spec)
        optimizer.step()
        with torch.no_grad():
            state = convergence_update(state, params, grads, ord=ord)
            for k, h in history.items():
                h[int(state.count) - 1] = getattr(state, k)
            norms = torch.stack([state.step_norm, state.param_norm, state.grad_norm])
            finite = torch.isfinite(loss.detach()) & torch.all(torch.isfinite(norms))
    return MinimizeResult(params, state.count, history, finite & has_converged(state, tol=tol))
