"""What every example shares: its command line, figure saving, progress bars, torch checks."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_QUICK = False


class _Parser(argparse.ArgumentParser):
    def parse_args(self, *args: Any, **kwargs: Any) -> argparse.Namespace:  # type: ignore[override]
        global _QUICK
        namespace = super().parse_args(*args, **kwargs)
        _QUICK = bool(getattr(namespace, "quick", False))
        return namespace


def parser(description: str, *, trains: bool = True) -> argparse.ArgumentParser:
    """The standard command line: ``--quick``, ``--out DIR`` and (for training) ``--torch``.

    ``--quick`` also makes :func:`save` write small draft figures (no layout pass).
    """
    p = _Parser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny settings, for smoke tests")
    p.add_argument("--out", type=Path, default=Path("plots"), help="folder for the PNG figures")
    if trains:
        p.add_argument(
            "--torch",
            action="store_true",
            help="also run the PyTorch twin from the same initial weights and compare",
        )
    return p


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: Path, name: str) -> Path:
    """Saves ``fig`` as ``out/name.png`` and closes it; returns the path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    if _QUICK:  # a draft: same content, low resolution, no layout pass
        fig.savefig(path, dpi=55)
    else:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    pyplot().close(fig)
    print(f"wrote {path}")
    return path


def progress(iterable: Iterable | int, desc: str, **kwargs: Any):
    """A tqdm progress bar (silent when not attached to a terminal or under pytest)."""
    from tqdm.auto import tqdm

    if isinstance(iterable, int):
        iterable = range(iterable)
    disable = kwargs.pop("disable", None)
    if disable is None:
        disable = "PYTEST_CURRENT_TEST" in os.environ
    return tqdm(iterable, desc=desc, leave=False, disable=disable, **kwargs)


def report_difference(name: str, jax_curve: Sequence[float], torch_curve: Sequence[float]) -> float:
    """Prints and returns the largest absolute difference between two curves."""
    a = np.asarray(jax_curve, dtype=np.float64)
    b = np.asarray(torch_curve, dtype=np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    rel = diff / scale if scale else diff
    print(f"{name}: largest |jax - torch| = {diff:.3e} (relative {rel:.3e}) over {a.size} points")
    return diff
