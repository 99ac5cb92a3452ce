"""torch twin of :mod:`jaxreg.optim`: ``torch.optim`` with masks, schedules and prox steps.

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
  uses ``learning_rate(t)`` as in optax;
- :func:`l1_proximal`, :func:`elastic_net_proximal`, :func:`group_lasso_proximal` return a
  :class:`ProximalStep` optimizer whose ``step()`` replaces each parameter by its proximal
  point (call it right after the optimizer it follows); :func:`proximal_sgd` is
  ``torch.optim.SGD`` followed by the prox (ISTA), as :class:`ProximalSGD`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR
from torch.utils import _pytree as pytree

from torch_ref import _numerics

__all__ = [
    "sgd",
    "adam",
    "adamw",
    "l1_proximal",
    "elastic_net_proximal",
    "group_lasso_proximal",
    "proximal_sgd",
    "ProximalStep",
    "ProximalSGD",
]

Params = Any  # a pytree of tensors (list, tuple, dict), an iterable of them, or an nn.Module
LearningRate = float | Callable[[int], Any]
Prox = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


# --------------------------------------------------------------------------- internals


def _leaves_and_flags(params: Params, mask: Any) -> tuple[list[torch.Tensor], list[bool]]:
    """The parameter tensors and, for each, whether ``mask`` selects it.

    ``params`` is a pytree of tensors (``torch.utils._pytree``: dicts, lists, tuples) or an
    ``nn.Module`` (its named parameters); ``mask`` is None, a pytree of bools with the same
    structure, or a callable on ``params`` returning one.
    """
    if isinstance(params, torch.nn.Module):
        params = dict(params.named_parameters())
    elif isinstance(params, torch.Tensor):
        params = [params]
    elif not isinstance(params, Mapping | list | tuple):
        params = list(params)
    leaves = pytree.tree_leaves(params)
    if mask is None:
        return leaves, [True] * len(leaves)
    tree = mask(params) if callable(mask) else mask
    if pytree.tree_structure(tree) != pytree.tree_structure(params):
        raise ValueError(
            f"`mask` must have the structure of the params: got {pytree.tree_structure(tree)}, "
            f"expected {pytree.tree_structure(params)}. Build it with "
            "`torch.utils._pytree.tree_map(lambda w: ..., params)` or pass a callable."
        )
    return leaves, [bool(b) for b in pytree.tree_leaves(tree)]


def _groups(params: Params, mask: Any, on: dict[str, Any], off: dict[str, Any]) -> list[dict]:
    """Two torch param groups: masked-in leaves with ``on`` options, the rest with ``off``."""
    leaves, flags = _leaves_and_flags(params, mask)
    selected = [p for p, f in zip(leaves, flags, strict=True) if f]
    others = [p for p, f in zip(leaves, flags, strict=True) if not f]
    groups = [{"params": selected, **on}, {"params": others, **off}]
    return [g for g in groups if g["params"]]


def _base_lr(learning_rate: LearningRate) -> float:
    """The optimizer's ``lr``: the rate itself, or 1 when a schedule will scale it."""
    _numerics.check_nonnegative(learning_rate, "learning_rate")
    return 1.0 if callable(learning_rate) else float(learning_rate)


def _attach_schedule(optimizer: torch.optim.Optimizer, learning_rate: LearningRate):
    """For a schedule, a ``LambdaLR`` on base lr 1, stepped after every ``optimizer.step()``."""
    if callable(learning_rate):
        scheduler = LambdaLR(optimizer, lr_lambda=lambda step: float(learning_rate(step)))
        optimizer.register_step_post_hook(lambda *_: scheduler.step())
        optimizer.lr_scheduler = scheduler
    return optimizer


def _soft_threshold(p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
    """Prox of ``lr·(l1·‖w‖₁ + l2·½‖w‖²)``: ``softshrink`` by ``lr·l1``, over ``1 + lr·l2``."""
    lr, l1, l2 = group["lr"], group["l1"], group["l2"]
    out = F.softshrink(p, lr * l1) if l1 != 0 else p
    return out / (1 + lr * l2) if l2 != 0 else out


def _block_soft_threshold(p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
    """Group prox: scale each group (``axis`` reduced) by ``max(0, 1 - lr·s·√size/‖w_g‖)``."""
    if p.ndim == 0:
        raise ValueError(
            "`group_lasso_proximal` needs leaves of rank >= 1; exclude scalars with `mask`."
        )
    axis = group["axis"]
    t = group["lr"] * group["strength"] * math.sqrt(p.shape[axis])
    norm = torch.linalg.vector_norm(p, dim=axis, keepdim=True)
    drop = norm <= t  # a NaN norm (or t) takes the computing branch: the group is NaN
    scale = torch.where(drop, 0.0, 1 - t / torch.where(drop, torch.ones_like(norm), norm))
    return p * scale


# --------------------------------------------------------------------------- optimizers


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
    groups = _groups(params, mask, {"weight_decay": weight_decay}, {"weight_decay": 0.0})
    opt = torch.optim.SGD(
        groups,
        lr=_base_lr(learning_rate),
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
    )
    return _attach_schedule(opt, learning_rate)


def _adam(
    cls: type[torch.optim.Optimizer],
    params: Params,
    learning_rate: LearningRate,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    mask: Any,
) -> torch.optim.Optimizer:
    _numerics.check_nonnegative(weight_decay, "weight_decay")
    groups = _groups(params, mask, {"weight_decay": weight_decay}, {"weight_decay": 0.0})
    opt = cls(groups, lr=_base_lr(learning_rate), betas=(b1, b2), eps=eps)
    return _attach_schedule(opt, learning_rate)


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


# --------------------------------------------------------------------------- proximal steps


class ProximalStep(torch.optim.Optimizer):
    """An optimizer whose ``step()`` replaces each parameter by ``prox(param, group)``.

    Gradients are not used: call ``step()`` right after the optimizer it follows, with the
    same learning rate. Groups whose ``"regularize"`` option is False are left unchanged.
    """

    def __init__(self, params: Any, prox: Prox, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self._prox = prox

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        apply_prox(self, self._prox)
        return loss


def apply_prox(optimizer: torch.optim.Optimizer, prox: Prox) -> None:
    """Replaces every parameter of the groups marked ``regularize`` by its proximal point."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            if group["regularize"]:
                for p in group["params"]:
                    p.copy_(prox(p, group))


def _proximal(
    params: Params, learning_rate: LearningRate, mask: Any, prox: Prox, options: dict[str, Any]
) -> ProximalStep:
    groups = _groups(params, mask, {"regularize": True}, {"regularize": False})
    opt = ProximalStep(groups, prox, {"lr": _base_lr(learning_rate), **options})
    return _attach_schedule(opt, learning_rate)


def l1_proximal(
    params: Params, strength: float, learning_rate: LearningRate, *, mask: Any = None
) -> ProximalStep:
    """Soft-thresholding (``F.softshrink`` by ``lr·strength``).

    Mirrors :func:`jaxreg.optim.l1_proximal`; call ``step()`` after the optimizer it follows.

    Example:
      >>> import torch
      >>> w = torch.tensor([0.05, -1.0])
      >>> l1_proximal([w], 1.0, 0.1).step()
      >>> print(w.numpy().round(4))
      [ 0.  -0.9]
    """
    _numerics.check_nonnegative(strength, "strength")
    return _proximal(params, learning_rate, mask, _soft_threshold, {"l1": strength, "l2": 0.0})


def elastic_net_proximal(
    params: Params,
    strength: float,
    learning_rate: LearningRate,
    *,
    l1_ratio: float = 0.5,
    mask: Any = None,
) -> ProximalStep:
    """The prox of ``strength·(ρ‖w‖₁ + (1-ρ)·½‖w‖²)``.

    Mirrors :func:`jaxreg.optim.elastic_net_proximal`.

    Example:
      >>> import torch
      >>> w = torch.tensor([0.05, -1.0])
      >>> elastic_net_proximal([w], 1.0, 0.1, l1_ratio=0.5).step()
      >>> print(w.numpy().round(4))
      [ 0.     -0.9048]
    """
    _numerics.check_nonnegative(strength, "strength")
    _numerics.check_in_unit_interval(l1_ratio, "l1_ratio")
    options = {"l1": strength * l1_ratio, "l2": strength * (1 - l1_ratio)}
    return _proximal(params, learning_rate, mask, _soft_threshold, options)


def group_lasso_proximal(
    params: Params,
    strength: float,
    learning_rate: LearningRate,
    *,
    axis: int = -1,
    mask: Any = None,
) -> ProximalStep:
    """Block soft-thresholding over ``axis``; mirrors :func:`jaxreg.optim.group_lasso_proximal`.

    Example:
      >>> import torch
      >>> w = torch.tensor([[0.1, 0.1], [3.0, 4.0]])
      >>> group_lasso_proximal([w], 1.0, 0.1).step()
      >>> print(w.numpy().round(3))
      [[0.    0.   ]
       [2.915 3.887]]
    """
    _numerics.check_nonnegative(strength, "strength")
    options = {"strength": strength, "axis": axis}
    return _proximal(params, learning_rate, mask, _block_soft_threshold, options)


class ProximalSGD(torch.optim.SGD):
    """``torch.optim.SGD`` followed by the prox of ``l1·‖w‖₁ + l2·½‖w‖²`` (ISTA).

    The prox runs as a step post-hook, with the step's own ``lr``, on the groups marked
    ``regularize``.
    """

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.register_step_post_hook(lambda opt, *_: apply_prox(opt, _soft_threshold))


def proximal_sgd(
    params: Params,
    learning_rate: LearningRate,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    mask: Any = None,
) -> ProximalSGD:
    """ISTA, as :class:`ProximalSGD`; mirrors :func:`jaxreg.optim.proximal_sgd`.

    Args:
      params: a pytree of tensors (a list, a dict of named tensors) or an ``nn.Module``.
      learning_rate: a non-negative float or a schedule ``step -> lr``.
      l1, l2: non-negative strengths.
      mask: leaves excluded from the regularizer (never from the step).

    Example:
      >>> import torch
      >>> w = torch.tensor([0.05, -1.0], requires_grad=True)
      >>> opt = proximal_sgd([w], 0.1, l1=1.0)
      >>> w.grad = torch.tensor([0.0, 1.0])
      >>> opt.step()
      >>> print(w.detach().numpy().round(4))
      [ 0. -1.]
    """
    _numerics.check_nonnegative(l1, "l1")
    _numerics.check_nonnegative(l2, "l2")
    on = {"regularize": True, "l1": l1, "l2": l2}
    off = {"regularize": False, "l1": 0.0, "l2": 0.0}
    opt = ProximalSGD(_groups(params, mask, on, off), lr=_base_lr(learning_rate))
    return _attach_schedule(opt, learning_rate)
