"""Regularization paths: jaxreg.regularization_path against scikit-learn's lasso_path/enet_path.

A seeded synthetic problem (``n × p`` Gaussian design, a sparse true coefficient vector,
Gaussian noise, centered), 100 strengths log-spaced from ``α_max`` down to
``α_max·1e-3`` (scikit-learn's default grid), the same duality-gap tolerance on both
sides (scikit-learn's default ``tol=1e-4``), float64. jaxreg solves all strengths at
once (one matrix product with the Gram matrix per iteration); scikit-learn runs
coordinate descent with warm starts along the path (also on the Gram matrix, which it
precomputes when ``n > p``). Times are medians of interleaved runs, compilation
excluded, with a pause before each timed call so that neither side runs while the
other's idle threads are still spinning; the coefficients of both are compared with
each other and with a tight (``tol=1e-12``) solution.

    python -m benchmarks.bench_solvers [--quick]
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
from sklearn.linear_model import enet_path

from benchmarks.common import (
    block,
    format_table,
    geometric_mean,
    medians,
    paired_ratio,
    sample_interleaved,
)

TOL = 1e-4
#: Seconds between timed calls: scikit-learn's OpenBLAS threads spin for about 0.1 s
#: after each call; without a pause they slow the JAX call that follows by ~1.7×.
SETTLE = 0.3


def problem(n: int, p: int, n_alphas: int, seed: int = 0):
    """Centered ``X`` ``[n, p]``, ``y`` ``[n]`` with 10 active features, and the α grid."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[rng.choice(p, 10, replace=False)] = 3 * rng.standard_normal(10)
    y = X @ w + rng.standard_normal(n)
    X, y = X - X.mean(0), y - y.mean()
    alpha_max = np.max(np.abs(X.T @ y)) / n
    return X, y, alpha_max * np.logspace(0, -3, n_alphas)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small problem, few rounds")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    from jaxreg.solvers import regularization_path

    n, p, n_alphas, rounds = (4000, 100, 30, 5) if args.quick else (20_000, 200, 100, 8)
    X, y, alphas = problem(n, p, n_alphas)
    Xj, yj, aj = jax.device_put(X), jax.device_put(y), jax.device_put(alphas)
    print(
        f"regularization path, float64 X [{n}, {p}], {n_alphas} alphas, tol {TOL:g}; "
        f"jax {jax.__version__} on {jax.default_backend()}"
    )
    rows, ratios = [], []
    summary: dict[str, float] = {}
    for l1_ratio, name in [(1.0, "lasso_path"), (0.5, "enet_path(l1_ratio=0.5)")]:
        path = jax.jit(
            functools.partial(regularization_path, l1_ratio=l1_ratio, tol=TOL, fit_intercept=False)
        )
        tight = functools.partial(
            regularization_path, l1_ratio=l1_ratio, tol=1e-12, fit_intercept=False
        )

        def sklearn(l1_ratio=l1_ratio):
            return enet_path(X, y, l1_ratio=l1_ratio, alphas=alphas, tol=TOL)[1]

        samples = sample_interleaved(
            {"jaxreg": lambda path=path: block(path(Xj, yj, aj)), "sklearn": sklearn},
            rounds=rounds,
            settle=SETTLE,
        )
        ours = np.asarray(path(Xj, yj, aj)[0])
        theirs = sklearn().T
        best = np.asarray(tight(Xj, yj, aj)[0])
        t = medians(samples)
        ratio = paired_ratio(samples, "jaxreg", "sklearn")
        ratios.append(ratio)
        rows.append(
            [
                name,
                t["jaxreg"] * 1e3,
                t["sklearn"] * 1e3,
                ratio,
                _rel(ours, theirs),
                _rel(ours, best),
                _rel(theirs, best),
            ]
        )
        summary[f"{name} jaxreg/sklearn"] = ratio
    print(
        format_table(
            [
                "path",
                "jaxreg ms",
                "sklearn ms",
                "jaxreg/sklearn",
                "|jaxreg-sklearn|",
                "jaxreg err",
                "sklearn err",
            ],
            rows,
        )
    )
    summary["geomean jaxreg/sklearn"] = geometric_mean(ratios)
    print(f"geomean jaxreg/sklearn: {summary['geomean jaxreg/sklearn']:.3f}")
    print(
        "coefficient columns: max|Δ| / max|coef| between the two, and of each against a "
        "tol=1e-12 solution"
    )
    return summary


if __name__ == "__main__":
    main()
