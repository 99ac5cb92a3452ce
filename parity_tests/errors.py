"""Tolerances and per-leaf errors: the one place where "agree" is defined.

Every comparison of the harness (:func:`parity_tests.harness.compare`), of whole
models (:mod:`parity_tests.models`) and of training runs (:mod:`parity_tests.training`)
reduces to :func:`leaf_error` on pairs of arrays named by their path, against one
row of :data:`TOLERANCES` (or :data:`TRAJECTORY_TOLERANCES` for training runs).

An error is norm-wise per leaf: ``abs = max|jax - torch|`` over the finite entries of
that leaf, ``rel = abs / max|torch|``; a leaf agrees when ``abs <= max(rtol·max|torch|,
atol)``, its non-finite entries sit at the same places with the same values, and no NaN
appears on either side. One leaf per array, so a small bias gradient is judged
against its own scale and not hidden by a large weight gradient.

This module uses NumPy only (and ``ml_dtypes`` for bfloat16).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np

__all__ = [
    "DTYPES",
    "LOW_PRECISION_DTYPES",
    "TOLERANCES",
    "TRAJECTORY_TOLERANCES",
    "LeafError",
    "Tolerance",
    "format_table",
    "is_floating",
    "leaf_error",
    "numpy_dtype",
    "worst",
]

#: The dtypes a registered case runs by default.
DTYPES: tuple[str, ...] = ("float32", "float64")
#: The low-precision dtypes with a row of their own in :data:`TOLERANCES` (opt in per case).
LOW_PRECISION_DTYPES: tuple[str, ...] = ("bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Norm-wise tolerance: pass when ``max|a-b| <= max(rtol * max|b|, atol)``."""

    rtol: float
    atol: float


#: The one tolerance table, per dtype, for values and gradients alike.
#:
#: float32/float64: a few ulps of the largest entry after reductions (2^-23 = 1.2e-7,
#: 2^-52 = 2.2e-16), with room for the different summation orders of the two libraries.
#: bfloat16/float16: both frameworks reduce in float32 and round each result to the
#: storage dtype (half an ulp each), so two correct results differ by up to one ulp of
#: the largest entry, 2^-7 (bf16, 8 significand bits) or 2^-10 (fp16, 11 bits); a VJP or
#: a composite function rounds its intermediates once more, hence two ulps: bf16
#: ``rtol = 2^-6 = 1.56e-2`` (``torch.testing.assert_close`` uses 1.6e-2) and fp16
#: ``rtol = 2^-9 = 1.95e-3`` (torch: 1e-3 elementwise, one ulp; this table is norm-wise
#: and allows two). ``atol = 1e-5`` as torch's, for leaves whose entries are all near 0.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
    "float64": Tolerance(rtol=1e-12, atol=1e-14),
    "bfloat16": Tolerance(rtol=2.0**-6, atol=1e-5),
    "float16": Tolerance(rtol=2.0**-9, atol=1e-5),
}

#: Parameters and losses after N optimizer steps (:func:`parity_tests.training.compare_training`).
#: Rounding differences of one step are fed back into the next, and Adam divides by
#: ``sqrt(v) + eps``, so 20 steps need more room than one evaluation: float64 1e-10
#: (issue 12's acceptance bound for 20 steps of SGD with momentum and of AdamW), float32
#: 1e-4 (measured 20 AdamW steps of a small MLP agree to ~1e-6; 100x margin).
TRAJECTORY_TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=1e-4, atol=1e-6),
    "float64": Tolerance(rtol=1e-10, atol=1e-14),
}


def numpy_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of a dtype name (``"bfloat16"`` through ``ml_dtypes``)."""
    return np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)


def is_floating(dtype: Any) -> bool:
    """Whether a NumPy dtype is a real floating dtype, bfloat16 included."""
    dtype = np.dtype(dtype)
    return bool(np.issubdtype(dtype, np.floating)) or dtype == np.dtype(ml_dtypes.bfloat16)


def _float64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, in any float dtype (NumPy has no bfloat16)
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        return x.numpy()
    return np.asarray(x, dtype=np.float64)


def _fmt(x: float) -> str:
    return f"{x:.17g}" if np.isfinite(x) else str(x)


@dataclasses.dataclass(frozen=True)
class LeafError:
    """How one named array compares: the norm-wise error and its worst entry.

    Attributes:
      name: the leaf's path, e.g. ``value[0]``, ``grad[1]``, ``blocks.0.fc.weight``.
      abs: ``max|jax - torch|`` over the entries finite on both sides.
      rel: ``abs / max|torch|`` (0 when both are 0).
      scale: ``max|torch|`` over the finite entries.
      allowed: ``max(rtol * scale, atol)``, the largest ``abs`` that passes.
      index: the index of the worst entry (``None`` when nothing finite was compared).
      jax_value, torch_value: both values at ``index``.
      over: how many entries differ by more than ``allowed``, of ``size``.
      size: the number of entries.
      problems: what is wrong (empty when the leaf agrees).
    """

    name: str
    abs: float
    rel: float
    scale: float
    allowed: float
    index: tuple[int, ...] | None = None
    jax_value: float = float("nan")
    torch_value: float = float("nan")
    over: int = 0
    size: int = 0
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def ratio(self) -> float:
        """``abs / allowed``: above 1 means over tolerance; ranks the worst leaf."""
        if self.problems and not self.abs > self.allowed:  # NaN, shape, placement
            return float("inf")
        return self.abs / self.allowed if self.allowed > 0 else float("inf")

    def describe(self) -> str:
        """One line in the manner of ``torch.testing.assert_close``."""
        if self.index is None:
            return f"{self.name}: " + "; ".join(self.problems or ("nothing finite to compare",))
        text = (
            f"{self.name}: {self.over} / {self.size} entries over tolerance; greatest "
            f"difference {self.abs:.3e} (rel {self.rel:.3e}, allowed {self.allowed:.3e}) at "
            f"index {self.index}: jax {_fmt(self.jax_value)}, torch {_fmt(self.torch_value)}"
        )
        others = [p for p in self.problems if "over tolerance" not in p]
        return "; ".join([text, *others])


def leaf_error(name: str, got: Any, want: Any, tol: Tolerance) -> LeafError:
    """Compares one JAX array (``got``) with its torch twin (``want``), norm-wise.

    Args:
      name: the leaf's path, used in every message.
      got, want: arrays (NumPy, JAX or torch, any float dtype) of the same shape.
      tol: the row of the tolerance table.

    Returns:
      A :class:`LeafError`; ``passed`` is False on an error over tolerance, a shape
      mismatch, a NaN on either side or non-finite entries that differ.
    """
    g, w = _float64(got), _float64(want)
    if g.shape != w.shape:
        return LeafError(
            name,
            np.inf,
            np.inf,
            np.nan,
            np.nan,
            problems=(f"{name}: shape {g.shape} vs torch {w.shape}",),
        )
    problems = []
    if np.isnan(g).any():
        problems.append(f"{name}: jax has NaN")
    if np.isnan(w).any():
        problems.append(f"{name}: torch has NaN")
    finite = np.isfinite(g) & np.isfinite(w)
    if not np.array_equal(g[~finite], w[~finite], equal_nan=True):
        problems.append(f"{name}: non-finite entries differ")
    if not finite.any():
        return LeafError(name, 0.0, 0.0, 0.0, tol.atol, size=g.size, problems=tuple(problems))
    with np.errstate(invalid="ignore"):  # inf - inf where both sides are infinite
        diff = np.where(finite, np.abs(g - w), 0.0)
    flat = int(np.argmax(diff))
    index = tuple(int(i) for i in np.unravel_index(flat, g.shape))
    err = float(diff.flat[flat])
    scale = float(np.max(np.abs(w[finite])))
    allowed = max(tol.rtol * scale, tol.atol)
    rel = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
    if err > allowed:
        problems.insert(0, f"{name}: error {err:.3e} (rel {rel:.3e}) over tolerance")
    return LeafError(
        name,
        err,
        rel,
        scale,
        allowed,
        index=index,
        jax_value=float(g[index]),
        torch_value=float(w[index]),
        over=int(np.count_nonzero(diff > allowed)),
        size=g.size,
        problems=tuple(problems),
    )


def worst(leaves: Sequence[LeafError]) -> LeafError | None:
    """The leaf furthest over (or closest to) its tolerance; ``None`` for no leaves."""
    return max(leaves, key=lambda leaf: leaf.ratio, default=None)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, as wide as their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )
