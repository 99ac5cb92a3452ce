"""Every benchmark table in one process: ``python -m benchmarks [--quick]``.

core (jaxreg vs jax.nn/optax and torch), fused cross-entropy (time and compiled
memory), solvers (regularization paths vs scikit-learn).
"""

from __future__ import annotations

import sys

from benchmarks import bench_core, bench_fused, bench_solvers


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for name, bench in (("core", bench_core), ("fused", bench_fused), ("solvers", bench_solvers)):
        print(f"\n=== {name} ===", flush=True)
        bench.main(argv)


if __name__ == "__main__":
    main()
