"""Private helpers shared by the torch_ref modules (mirror of ``jaxreg._numerics``):
argument checks and torch's reductions with jaxreg's conventions."""

from __future__ import annotations

import torch

__all__ = ["check_class_ids"]


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
