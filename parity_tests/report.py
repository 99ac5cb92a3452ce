"""The parity report: every registered case x dtype x device, in one table.

Usage::

    python -m parity_tests [--filter SUBSTRING] [--device cpu|gpu] [--markdown]
                           [--cases MODULE_OR_FILE ...]

By default the cases are the built-in ones, collected from every
``parity_tests/test_*.py`` module. ``--cases`` runs your own instead (repeat it for
several; ``--cases parity_tests`` adds the built-in ones): a module name importable
from the current directory (``my_project.parity_cases``), a ``.py`` file, or a package
(then its ``test_*`` modules). From each module the report takes, in order, the cases
it gave to :func:`parity_tests.harness.register`, its ``CASES`` list, and any other
module-level :class:`~parity_tests.harness.ParityCase`. The exit
status is 1 when any comparison fails (a module that cannot be imported is a failure),
2 when the device is not available.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pkgutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import jax
import torch

from parity_tests.harness import (
    TOLERANCES,
    ParityCase,
    ParityResult,
    available_devices,
    registered_cases,
    run_case,
)

__all__ = ["collect_cases", "main"]


def _import(spec: str) -> ModuleType:
    """A module by name (the current directory first on the path) or by ``.py`` file."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).resolve()
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import {spec!r} as a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does; the console script does not
    return importlib.import_module(spec)


def _unique(cases: Iterable[ParityCase]) -> list[ParityCase]:
    """Each case once (a case may be registered and in ``CASES`` too), in order."""
    return list({id(c): c for c in cases}.values())


def _module_cases(spec: str) -> list[ParityCase]:
    """The cases of one module: those it registered, ``CASES``, the module-level ones."""
    module = _import(spec)
    if hasattr(module, "__path__"):  # a package: its test_* modules
        return collect_cases(module)
    found = list(registered_cases(module.__name__))
    found += [c for c in getattr(module, "CASES", []) if isinstance(c, ParityCase)]
    found += [v for v in vars(module).values() if isinstance(v, ParityCase)]
    return _unique(found)


def collect_cases(
    package: ModuleType | None = None, *, errors: list[str] | None = None
) -> list[ParityCase]:
    """The cases of every ``test_*`` module of ``package`` (default: ``parity_tests``).

    A module that cannot be imported is skipped and described in ``errors`` (when
    given; else the error is raised).
    """
    if package is None:
        import parity_tests as package
    cases: list[ParityCase] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("test_"):
            try:
                cases.extend(_module_cases(f"{package.__name__}.{info.name}"))
            except Exception as e:
                if errors is None:
                    raise
                errors.append(f"{package.__name__}.{info.name}: {type(e).__name__}: {e}")
    return cases


#: Column widths of the plain-text table.
_WIDTHS = [44, 9, 8, 3, 9, 9, 5, 4]


def _row(r: ParityResult, markdown: bool) -> str:
    cells = [
        r.name,
        r.reference,
        r.dtype,
        r.device,
        f"{r.value_rel:.1e}",
        f"{r.grad_rel:.1e}",
        f"{r.tolerance.rtol:.2g}",
        "pass" if r.passed else "FAIL",
    ]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return "  ".join(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parity_tests", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--filter", default="", help="run only cases whose name contains this")
    parser.add_argument("--device", choices=["cpu", "gpu"], help="only this device (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--cases",
        action="append",
        metavar="MODULE",
        help="run the ParityCases of this module, .py file or package instead of the "
        "built-in ones (repeatable; `--cases parity_tests` adds the built-in ones)",
    )
    args = parser.parse_args(argv)

    devices = [d.name for d in available_devices() if args.device in (None, d.name)]
    if not devices:
        print(f"device {args.device!r} is not available", file=sys.stderr)
        return 2
    import_errors: list[str] = []
    if args.cases:
        collected: list[ParityCase] = []
        for spec in args.cases:
            try:
                collected += _module_cases(spec)
            except Exception as e:
                import_errors.append(f"{spec}: {type(e).__name__}: {e}")
    else:
        collected = collect_cases(errors=import_errors)
    cases = [c for c in _unique(collected) if args.filter in c.name]
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
        print("  ".join(h.ljust(w) for h, w in zip(header, _WIDTHS, strict=True)))
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
        print("  " + str(f).replace("\n", "\n  "))
    for error in import_errors:
        print(f"  could not import {error}")
    return 1 if failures or import_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
