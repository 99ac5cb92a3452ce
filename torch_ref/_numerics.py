"""Private helpers shared by the torch_ref modules (mirror of ``jaxreg._numerics``):
argument checks and torch's reductions with jaxreg's conventions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = [
    "as_float_array",
    "check_class_ids",
    "check_in_unit_interval",
    "check_nonnegative",
    "check_reduction",
    "check_same_shape",
    "compute_dtype",
    "normalize_axes",
    "normalize_axis",
    "tree_leaves",
    "upcast",
]

REDUCTIONS = ("none", "mean", "sum")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def as_float_array(x: Any, name: str) -> torch.Tensor:
    """``x`` as a real floating tensor, or a ``TypeError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(float(x) if type(x) is int else x)
    if not x.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating tensor (real), got dtype {x.dtype}; "
            f"convert it first, e.g. `{name}.float()`."
        )
    return x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a reduction runs in: float32 for bf16/fp16, else ``dtype``."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in its compute dtype (float32 for low-precision floats)."""
    return x.to(compute_dtype(x.dtype))


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"`{name}`={axis} is out of range for a tensor of rank {ndim}.")
    return axis % ndim


def normalize_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int or a sequence) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = tuple(sorted({normalize_axis(a, ndim) for a in axes}))
    if len(out) != len(axes):
        raise ValueError(f"`axis` has repeated entries: {axis}.")
    return out


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of a pytree (dict/list/tuple nesting); ``None`` is an empty subtree."""
    return [leaf for leaf in pytree.tree_leaves(tree) if leaf is not None]


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}.")


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; broadcast explicitly if that is what you mean."
        )


def check_nonnegative(value: Any, name: str) -> None:
    """``ValueError`` unless ``value >= 0`` (a callable, e.g. a schedule, is not checked)."""
    if not callable(value) and float(value) < 0:
        raise ValueError(f"`{name}` must be non-negative, got {float(value)}.")


def check_in_unit_interval(value: Any, name: str) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {float(value)}.")


def check_class_ids(
    labels: torch.Tensor, num_classes: int, ignore_index: int, name: str = "labels"
) -> None:
    """``ValueError`` naming the first label that is neither a class id in
    ``[0, num_classes)`` nor ``ignore_index`` (jaxreg's message; torch's own error names
    neither position nor fix)."""
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        where = tuple(int(i) for i in torch.nonzero(bad)[0])
        position = where[0] if len(where) == 1 else where
        raise ValueError(
            f"`{name}` holds {int(labels[where])} at position {position}, which is neither a "
            f"class id in [0, {num_classes}) nor `ignore_index`={ignore_index}. Fix the "
            f"labels, or pass the value that marks rows to skip as `ignore_index` (torch's "
            f"default is -100). Traced labels out of range give that row a NaN loss and "
            f"gradient."
        )
