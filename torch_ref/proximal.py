"""torch twin of :mod:`jaxreg.proximal`: proximal steps as torch optimizers, exact zeros.

As in :mod:`torch_ref.optim`, every function takes ``params`` first (a pytree of tensors
or an ``nn.Module``) and then jaxreg's arguments, and returns a ``torch.optim.Optimizer``;
``mask`` selects the leaves the penalty applies to and a callable ``learning_rate``
becomes a ``LambdaLR``, as there.

- :func:`l1_proximal`, :func:`elastic_net_proximal`, :func:`group_lasso_proximal` return a
  :class:`ProximalStep` optimizer whose ``step()`` replaces each parameter by its proximal
  point (call it right after the optimizer it follows, with the same learning rate);
- :func:`proximal_sgd` is ``torch.optim.SGD`` followed by the prox (ISTA), as
  :class:`ProximalSGD`.

torch has no proximal optimizers: the prox of L1 is torch's own ``F.softshrink``, the
group prox is written with ``torch.linalg.vector_norm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from torch_ref import _numerics
from torch_ref._transforms import LearningRate, Params, attach_schedule, base_lr, param_groups

__all__ = [
    "l1_proximal",
    "elastic_net_proximal",
    "group_lasso_proximal",
    "proximal_sgd",
    "ProximalStep",
    "ProximalSGD",
]

Prox = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


# --------------------------------------------------------------------------- proximal maps


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
    groups = param_groups(params, mask, {"regularize": True}, {"regularize": False})
    opt = ProximalStep(groups, prox, {"lr": base_lr(learning_rate), **options})
    return attach_schedule(opt, learning_rate)


def l1_proximal(
    params: Params, strength: float, learning_rate: LearningRate, *, mask: Any = None
) -> ProximalStep:
    """Soft-thresholding (``F.softshrink`` by ``lr·strength``).

    Mirrors :func:`jaxreg.proximal.l1_proximal`; call ``step()`` after the optimizer it follows.

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

    Mirrors :func:`jaxreg.proximal.elastic_net_proximal`.

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
    """Block soft-thresholding over ``axis``; mirrors :func:`jaxreg.proximal.group_lasso_proximal`.

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
    """ISTA, as :class:`ProximalSGD`; mirrors :func:`jaxreg.proximal.proximal_sgd`.

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
    opt = ProximalSGD(param_groups(params, mask, on, off), lr=base_lr(learning_rate))
    return attach_schedule(opt, learning_rate)
