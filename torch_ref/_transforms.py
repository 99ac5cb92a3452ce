"""What the torch optimizers of :mod:`torch_ref.optim` and :mod:`torch_ref.proximal` share.

Private to the package (mirror of ``jaxreg._transforms``): the types of their arguments,
the two torch param groups a ``mask`` makes (the selected leaves with one set of options,
the others with another), and a learning-rate schedule as a ``LambdaLR`` stepped after
every ``optimizer.step()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils import _pytree as pytree

from torch_ref import _numerics

__all__ = [
    "LearningRate",
    "Params",
    "attach_schedule",
    "base_lr",
    "leaves_and_flags",
    "param_groups",
]

Params = Any  # a pytree of tensors (list, tuple, dict), an iterable of them, or an nn.Module
LearningRate = float | Callable[[int], Any]


def leaves_and_flags(params: Params, mask: Any) -> tuple[list[torch.Tensor], list[bool]]:
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


def param_groups(params: Params, mask: Any, on: dict[str, Any], off: dict[str, Any]) -> list[dict]:
    """Two torch param groups: masked-in leaves with ``on`` options, the rest with ``off``."""
    leaves, flags = leaves_and_flags(params, mask)
    selected = [p for p, f in zip(leaves, flags, strict=True) if f]
    others = [p for p, f in zip(leaves, flags, strict=True) if not f]
    groups = [{"params": selected, **on}, {"params": others, **off}]
    return [g for g in groups if g["params"]]


def base_lr(learning_rate: LearningRate) -> float:
    """The optimizer's ``lr``: the rate itself, or 1 when a schedule will scale it."""
    _numerics.check_nonnegative(learning_rate, "learning_rate")
    return 1.0 if callable(learning_rate) else float(learning_rate)


def attach_schedule(optimizer: torch.optim.Optimizer, learning_rate: LearningRate):
    """For a schedule, a ``LambdaLR`` on base lr 1, stepped after every ``optimizer.step()``."""
    if callable(learning_rate):
        scheduler = LambdaLR(optimizer, lr_lambda=lambda step: float(learning_rate(step)))
        optimizer.register_step_post_hook(lambda *_: scheduler.step())
        optimizer.lr_scheduler = scheduler  # type: ignore[attr-defined]  # (kept alive)
    return optimizer
