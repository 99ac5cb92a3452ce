"""torch twin of :mod:`jaxreg.optim`: ``torch.optim.SGD/Adam/AdamW`` with masks and schedules.

The torch API differs by nature: an optimizer is bound to its parameters, so every
function here takes ``params`` first (a pytree of tensors, e.g. a list or a dict of named
tensors, or an ``nn.Module``) and then jaxreg's arguments, and returns a
``torch.optim.Optimizer``:

- :func:`sgd`, :func:`adam`, :func:`adamw` are ``torch.optim.SGD/Adam/AdamW`` with two
  parameter groups: the leaves selected by ``mask`` get ``weight_decay``, the others
  ``weight_decay=0`` (they are still stepped), exactly jaxreg's ``mask``;
- a callable ``learning_rate`` (``step -> lr``, e.g. an optax schedule) becomes a
  ``torch.optim.lr_scheduler.LambdaLR`` on a base rate of 1, stepped automatically after
  every ``optimizer.step()`` (also available as ``optimizer.lr_scheduler``), so step ``t``
  uses ``learning_rate(t)`` as in optax.

The proximal steps (L1, elastic net, group lasso, ISTA) are in :mod:`torch_ref.proximal`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from torch_ref import _numerics
from torch_ref._transforms import LearningRate, Params, attach_schedule, base_lr, param_groups

__all__ = ["sgd", "adam", "adamw"]

AdamT = TypeVar("AdamT", torch.optim.Adam, torch.optim.AdamW)


def sgd(
    params: Params,
    learning_rate: LearningRate,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    mask: Any = None,
) -> torch.optim.SGD:
    """``torch.optim.SGD`` with jaxreg's mask and schedule; mirrors :func:`jaxreg.optim.sgd`.

    Args:
      params: a pytree of tensors (a list, a dict of named tensors) or an ``nn.Module``.
      learning_rate: a non-negative float or a schedule ``step -> lr``.
      momentum, dampening, weight_decay, nesterov: as ``torch.optim.SGD``
        (``dampening`` must lie in [0, 1]).
      mask: the leaves that get weight decay (like ``params``, or a callable on it).

    Returns:
      A ``torch.optim.SGD`` (with ``lr_scheduler`` set when ``learning_rate`` is a schedule).

    Example:
      >>> import torch
      >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
      >>> opt = sgd([w], 0.1, momentum=0.9, weight_decay=0.1)
      >>> w.grad = torch.tensor([0.5, 0.5])
      >>> opt.step()
      >>> print(w.detach().numpy().round(4))
      [ 0.94 -2.03]
    """
    _numerics.check_in_unit_interval(dampening, "dampening")
    _numerics.check_nonnegative(weight_decay, "weight_decay")
    groups = param_groups(params, mask, {"weight_decay": weight_decay}, {"weight_decay": 0.0})
    opt = torch.optim.SGD(
        groups,
        lr=base_lr(learning_rate),
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
    )
    return attach_schedule(opt, learning_rate)


def _adam(
    cls: type[AdamT],
    params: Params,
    learning_rate: LearningRate,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    mask: Any,
) -> AdamT:
    _numerics.check_nonnegative(weight_decay, "weight_decay")
    groups = param_groups(params, mask, {"weight_decay": weight_decay}, {"weight_decay": 0.0})
    opt = cls(groups, lr=base_lr(learning_rate), betas=(b1, b2), eps=eps)
    attach_schedule(opt, learning_rate)
    return opt


def adam(
    params: Params,
    learning_rate: LearningRate = 1e-3,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mask: Any = None,
) -> torch.optim.Adam:
    """``torch.optim.Adam`` (coupled L2) with mask and schedule; mirrors :func:`jaxreg.optim.adam`.

    Args:
      params: a pytree of tensors (a list, a dict of named tensors) or an ``nn.Module``.
      learning_rate: a non-negative float or a schedule ``step -> lr``.
      b1, b2, eps, weight_decay: torch's ``betas=(b1, b2)``, ``eps``, ``weight_decay``.
      mask: the leaves that get weight decay.

    Returns:
      A ``torch.optim.Adam``.

    Example:
      >>> import torch
      >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
      >>> opt = adam([w], 0.1)
      >>> w.grad = torch.tensor([0.5, -0.5])
      >>> opt.step()
      >>> print(w.detach().numpy().round(4))
      [ 0.9 -1.9]
    """
    return _adam(torch.optim.Adam, params, learning_rate, b1, b2, eps, weight_decay, mask)


def adamw(
    params: Params,
    learning_rate: LearningRate = 1e-3,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    mask: Any = None,
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with mask and schedule; mirrors :func:`jaxreg.optim.adamw`.

    Args:
      params: a pytree of tensors (a list, a dict of named tensors) or an ``nn.Module``.
      learning_rate: a non-negative float or a schedule ``step -> lr``.
      b1, b2, eps, weight_decay: torch's ``betas=(b1, b2)``, ``eps``, ``weight_decay``
        (decoupled, multiplied by the learning rate, default ``1e-2``).
      mask: the leaves that get weight decay.

    Returns:
      A ``torch.optim.AdamW``.

    Example:
      >>> import torch
      >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
      >>> opt = adamw([w], 0.1, weight_decay=0.5)
      >>> w.grad = torch.tensor([0.5, -0.5])
      >>> opt.step()
      >>> print(w.detach().numpy().round(4))
      [ 0.85 -1.8 ]
    """
    return _adam(torch.optim.AdamW, params, learning_rate, b1, b2, eps, weight_decay, mask)
