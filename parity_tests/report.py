"""The parity report: every registered case x dtype x device, in one table.

Usage::

    python -m parity_tests [--filter SUBSTRING] [--device cpu|gpu] [--markdown]

Cases are collected from the ``CASES`` list of every ``parity_tests/test_*.py``
module. The exit status is 1 when any comparison fails.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

import jax
import torch

import parity_tests
from parity_tests.harness import (
    TOLERANCES,
    ParityCase,
    ParityResult,
    available_devices,
    run_case,
)


def collect_cases() -> list[ParityCase]:
    """All ``CASES`` of the ``parity_tests.test_*`` modules, in module order."""
    cases: list[ParityCase] = []
    for info in sorted(pkgutil.iter_modules(parity_tests.__path__), key=lambda m: m.name):
        if info.name.startswith("test_"):
            module = importlib.import_module(f"parity_tests.{info.name}")
            cases.extend(getattr(module, "CASES", []))
    return cases


def _row(r: ParityResult, markdown: bool) -> str:
    cells = [
        r.name,
        r.reference,
        r.dtype,
        r.device,
        f"{r.value_rel:.1e}",
        f"{r.grad_rel:.1e}",
        f"{r.tolerance.rtol:.0e}",
        "pass" if r.passed else "FAIL",
    ]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    widths = [44, 9, 7, 3, 9, 9, 5, 4]
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parity_tests", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--filter", default="", help="run only cases whose name contains this")
    parser.add_argument("--device", choices=["cpu", "gpu"], help="only this device (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)

    devices = [d.name for d in available_devices() if args.device in (None, d.name)]
    if not devices:
        print(f"device {args.device!r} is not available", file=sys.stderr)
        return 2
    cases = [c for c in collect_cases() if args.filter in c.name]
    print(
        f"jaxreg parity report: jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__}, devices {devices}"
    )
    print("errors are norm-wise relative: max|jax - ref| / max|ref|, values and VJPs\n")
    header = ["function", "reference", "dtype", "dev", "value err", "grad err", "tol", ""]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        widths = [44, 9, 7, 3, 9, 9, 5, 4]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    failures: list[ParityResult] = []
    total = 0
    start = time.perf_counter()
    for case in cases:
        for device in devices:
            for dtype in case.dtypes:
                try:
                    result = run_case(case, dtype, device)
                except Exception as e:  # a crash is a failure of that row, not of the report
                    result = ParityResult(
                        case.name,
                        case.reference,
                        dtype,
                        device,
                        float("nan"),
                        float("nan"),
                        float("nan"),
                        float("nan"),
                        TOLERANCES[dtype],
                        False,
                        (f"{type(e).__name__}: {e}",),
                    )
                total += 1
                print(_row(result, args.markdown), flush=True)
                if not result.passed:
                    failures.append(result)
    print(
        f"\n{total - len(failures)} passed, {len(failures)} failed "
        f"({len(cases)} cases, {time.perf_counter() - start:.1f} s)"
    )
    for f in failures:
        print("  " + str(f))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
