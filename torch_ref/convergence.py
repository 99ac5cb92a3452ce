r"""torch twin of :mod:`jaxreg.convergence`: norm-convergence tracking and a stopping loop.

The same state, tests and history as jaxreg, on tensors (norms from
:func:`torch_ref.norms.global_norm`, i.e. ``torch.linalg.vector_norm`` of the flattened
leaves). :func:`minimize` is the usual ``zero_grad / backward / step`` loop, stopping when

.. math::
    \|w_{t+1} - w_t\|_p \le \mathrm{tol} \cdot \max(\|w_{t+1}\|_p, 1).
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
]

HISTORY_KEYS = ("step_norm", "relative_step", "grad_norm", "param_norm")


class ConvergenceState(NamedTuple):
    """The norms of the last step (see :class:`jaxreg.convergence.ConvergenceState`)."""

    count: torch.Tensor
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
    """``num / den``: 0 when both are 0, ``inf`` when only ``den`` is."""
    positive = den > 0
    ratio = num / torch.where(positive, den, torch.ones_like(den))
    fallback = torch.where(num > 0, torch.full_like(num, torch.inf), torch.zeros_like(num))
    return torch.where(positive, ratio, fallback)


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


def has_converged(state: ConvergenceState, *, tol: float = 1e-6) -> torch.Tensor:
    """``‖Δw‖ <= tol · max(‖w‖, 1)``; mirrors :func:`jaxreg.convergence.has_converged`."""
    if tol < 0:
        raise ValueError(f"`tol` must be non-negative, got {tol}.")
    scale = torch.clamp(state.param_norm, min=1.0)
    return state.step_norm <= tol * scale


def minimize(
    loss_fn: Callable[[Any], torch.Tensor],
    params: Any,
    optimizer: torch.optim.Optimizer | Callable[[Any], torch.optim.Optimizer],
    *,
    max_steps: int,
    tol: float,
    ord: Any = 2,
) -> tuple[Any, torch.Tensor, dict[str, torch.Tensor]]:
    """Steps ``optimizer`` on ``loss_fn`` until norm convergence; mirrors
    :func:`jaxreg.convergence.minimize`.

    torch optimizers are bound to their parameters, so ``optimizer`` is either one built on
    ``params`` or a callable ``params -> optimizer`` (e.g. ``lambda p: torch_ref.optim.sgd(p,
    0.1)``). ``params`` (a pytree of leaf tensors with ``requires_grad``) are updated in place.

    Returns:
      ``(params, num_steps, history)`` as jaxreg: ``history`` holds ``[max_steps]`` tensors
      (``"step_norm"``, ``"relative_step"``, ``"grad_norm"``, ``"param_norm"``), ``inf``
      past ``num_steps``.

    Example:
      >>> import torch
      >>> w = torch.zeros(2, requires_grad=True)
      >>> loss = lambda w: 0.5 * torch.sum((w - torch.tensor([1.0, -2.0])) ** 2)
      >>> opt = lambda p: torch.optim.SGD([p], lr=0.5)
      >>> w, n, history = minimize(loss, w, opt, max_steps=100, tol=1e-8)
      >>> print(w.detach().numpy().round(5), int(n) < 100)
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
    while int(state.count) < max_steps and not bool(has_converged(state, tol=tol)):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(params).backward()
        grads = pytree.tree_unflatten([p.grad.detach().clone() for p in leaves], spec)
        optimizer.step()
        with torch.no_grad():
            state = convergence_update(state, params, grads, ord=ord)
            for k, h in history.items():
                h[int(state.count) - 1] = getattr(state, k)
    return params, state.count, history
