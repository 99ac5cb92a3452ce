"""Regularization paths at equal accuracy: jaxreg against scikit-learn and celer.

Problems (float64, centered, no intercept): three seeded synthetic shapes — tall
20000×200 with 10 active features, square 2000×2000 with 50, wide 500×5000 with 20
(Gaussian design, coefficients 3·N(0, 1), unit noise) — and scikit-learn's diabetes
with degree-4 polynomial features, standardized (442×1000: wide). Each is solved for
100 strengths log-spaced from ``α_max`` down to ``α_max·1e-3`` (scikit-learn's grid),
as a lasso and as an elastic net (``l1_ratio=0.5``), by
``jaxreg.regularization_path``, ``sklearn.linear_model.enet_path`` and
``celer.celer_path`` (with its ``l1_ratio``).

Equal accuracy: every solver runs at the loosest of the tolerances 1e-4, 1e-6, 1e-8
and 1e-10 whose largest relative objective excess over a tight reference
(scikit-learn at ``tol=1e-12``), over all strengths, is at most 1e-6; the table shows
each time next to that excess. The solvers share the duality-gap rule ``gap <=
tol·‖y‖²`` (celer's ``tol`` is relative to ``‖y‖²/n`` for the objective with ``1/n``,
the same test), but reach very different accuracies at the same nominal ``tol``: that
is why they are compared at equal accuracy, not at equal ``tol``. On diabetes,
scikit-learn at ``tol=1e-12`` did not finish in 15 minutes; the reference there is
the lowest objective that celer (at 1e-10) and jaxreg (at 1e-12) reach
(``BEST_OF_REFERENCE``), and a tolerance search stops once a single call takes more
than ``MAX_CALL_SECONDS``.

Times: one process, the candidates interleaved in a balanced order (see
``benchmarks/common.py``), median seconds per path, compilation excluded (each
candidate runs untimed first), a pause before every timed call so that no candidate
runs on cores that another's idle BLAS threads are still spinning on. Ratios are the
medians over rounds of the ratio within a round.

    python -m benchmarks.bench_solvers [--quick] [--only NAME ...] [--penalty lasso|enet]
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import enet_path
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from benchmarks.common import (
    block,
    format_table,
    geometric_mean,
    medians,
    paired_ratio,
    sample_interleaved,
)

#: The tolerances tried, loosest first, and the accuracy each solver must reach.
TOLS = (1e-4, 1e-6, 1e-8, 1e-10)
MAX_EXCESS = 1e-6
#: The tight reference: scikit-learn at this tolerance.
REFERENCE_TOL = 1e-12
#: Problems on which scikit-learn at ``REFERENCE_TOL`` runs for more than 15 minutes
#: (diabetes: 130 s at 1e-6 already, highly collinear polynomial features): their
#: reference is the lowest objective reached, per strength, by celer at 1e-10 and
#: jaxreg at ``REFERENCE_TOL`` (the two agree to 5e-10 there); without celer,
#: scikit-learn's as elsewhere.
BEST_OF_REFERENCE = ("diabetes",)
#: A tolerance search stops tightening once one call takes longer than this (seconds):
#: the solver's row then shows the excess it reached, flagged.
MAX_CALL_SECONDS = 300.0
#: Seconds between timed calls: scikit-learn's OpenBLAS threads spin for about 0.1 s
#: after each call; without a pause they slow the call that follows.
SETTLE = 0.3
#: Acceptance (issue 14): jaxreg's time at most this times scikit-learn's (every shape)
#: and celer's (wide and square).
GOALS = {"sklearn": 1.0, "celer": 1.5}


def synthetic(n: int, p: int, active: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centered Gaussian ``X`` ``[n, p]`` and ``y`` from ``active`` features plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    w = np.zeros(p)
    w[rng.choice(p, active, replace=False)] = 3 * rng.standard_normal(active)
    y = X @ w + rng.standard_normal(n)
    return X - X.mean(0), y - y.mean()


def diabetes(degree: int, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes with polynomial features (no bias column), standardized
    and centered: 442×1000 at degree 4."""
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:rows], y[:rows]
    X = StandardScaler().fit_transform(
        PolynomialFeatures(degree, include_bias=False).fit_transform(X)
    )
    return np.asfortranarray(X - X.mean(0)), y - y.mean()


def problems(quick: bool) -> dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]]:
    """name -> a function making ``(X, y)`` (made only when the problem runs)."""
    if quick:
        return {
            "tall": lambda: synthetic(2000, 50, 5),
            "square": lambda: synthetic(200, 200, 10),
            "wide": lambda: synthetic(60, 400, 5),
            "diabetes": lambda: diabetes(2, rows=60),
        }
    return {
        "tall": lambda: synthetic(20_000, 200, 10),
        "square": lambda: synthetic(2000, 2000, 50),
        "wide": lambda: synthetic(500, 5000, 20),
        "diabetes": lambda: diabetes(4),
    }


def grid(X: np.ndarray, y: np.ndarray, l1_ratio: float, n_alphas: int) -> np.ndarray:
    """``α_max`` (the smallest α with w = 0) down to ``α_max·1e-3``, log-spaced."""
    alpha_max = np.max(np.abs(X.T @ y)) / (len(y) * l1_ratio)
    return alpha_max * np.logspace(0, -3, n_alphas)


def objectives(X, y, coefs: np.ndarray, alphas, l1_ratio) -> np.ndarray:
    """scikit-learn's objective at each column of ``coefs`` ``[p, n_alphas]``."""
    R = y[:, None] - X @ coefs
    penalty = l1_ratio * np.abs(coefs).sum(0) + 0.5 * (1 - l1_ratio) * (coefs * coefs).sum(0)
    return 0.5 * np.mean(R * R, axis=0) + alphas * penalty


def solvers(X, y, alphas, l1_ratio) -> dict[str, Callable[[float], Callable[[], np.ndarray]]]:
    """name -> ``tol`` -> a zero-argument call returning the coefficients ``[p, n_alphas]``."""
    from jaxreg.solvers import regularization_path

    path = jax.jit(functools.partial(regularization_path, fit_intercept=False))
    Xj, yj, aj = (jax.device_put(a) for a in (X, y, alphas))

    def jaxreg(tol):
        # tol and l1_ratio are traced: one compiled program serves every tolerance.
        return lambda: block(path(Xj, yj, aj, l1_ratio=l1_ratio, tol=tol)[0])

    def sklearn(tol):
        return lambda: enet_path(X, y, l1_ratio=l1_ratio, alphas=alphas, tol=tol, max_iter=100_000)[
            1
        ]

    out = {"jaxreg": jaxreg, "sklearn": sklearn}
    try:
        from celer import celer_path
    except ImportError:  # the benchmark extra is not installed: no celer column
        return out

    def celer(tol):
        return lambda: celer_path(
            X,
            y,
            "lasso",
            alphas=alphas,
            l1_ratio=l1_ratio,
            tol=tol,
            max_iter=100,
            max_epochs=100_000,
        )[1]

    return {**out, "celer": celer}


def coefficients(result: Any) -> np.ndarray:
    """``[p, n_alphas]`` in NumPy (jaxreg returns ``[n_alphas, p]``)."""
    return np.asarray(result).T if isinstance(result, jax.Array) else np.asarray(result)


def loosest_accurate_tol(
    make: Callable[[float], Callable[[], Any]], excess: Callable[[np.ndarray], float]
) -> tuple[float, float]:
    """The loosest tolerance of ``TOLS`` reaching ``MAX_EXCESS`` and its excess (the
    tightest one and its excess if none does)."""
    for tol in TOLS:
        start = time.perf_counter()
        value = excess(coefficients(make(tol)()))
        if value <= MAX_EXCESS or time.perf_counter() - start > MAX_CALL_SECONDS:
            break
    return tol, value


def run_problem(name, X, y, l1_ratio, n_alphas, rounds, settle) -> dict[str, Any]:
    alphas = grid(X, y, l1_ratio, n_alphas)
    t0 = time.perf_counter()
    makers = solvers(X, y, alphas, l1_ratio)
    if name in BEST_OF_REFERENCE and "celer" in makers:
        best = np.minimum(
            objectives(X, y, coefficients(makers["celer"](1e-10)()), alphas, l1_ratio),
            objectives(X, y, coefficients(makers["jaxreg"](REFERENCE_TOL)()), alphas, l1_ratio),
        )
    else:
        reference = enet_path(
            X, y, l1_ratio=l1_ratio, alphas=alphas, tol=REFERENCE_TOL, max_iter=1_000_000
        )[1]
        best = objectives(X, y, reference, alphas, l1_ratio)
    seconds = time.perf_counter() - t0

    def excess(coefs):
        return float(np.max((objectives(X, y, coefs, alphas, l1_ratio) - best) / best))

    chosen = {k: loosest_accurate_tol(make, excess) for k, make in makers.items()}
    calls = {k: makers[k](tol) for k, (tol, _) in chosen.items()}
    samples = sample_interleaved(calls, rounds=rounds, warmup=1, min_time=0.0, settle=settle)
    times = medians(samples)
    row = {"problem": name, "shape": f"{X.shape[0]}×{X.shape[1]}", "reference s": seconds}
    for k, (tol, value) in chosen.items():
        row[k] = (times[k], tol, value)
    for anchor in ("sklearn", "celer"):
        if anchor in samples:
            row[f"jaxreg/{anchor}"] = paired_ratio(samples, "jaxreg", anchor)
    return row


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small problems, few rounds")
    parser.add_argument("--only", nargs="*", help="problems to run (tall square wide diabetes)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 6, quick 2)")
    parser.add_argument(
        "--penalty", choices=("lasso", "enet"), help="one penalty only (default: both)"
    )
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    warnings.simplefilter("ignore", ConvergenceWarning)  # the loose tolerances tried
    n_alphas = 20 if args.quick else 100
    rounds = args.rounds or (2 if args.quick else 6)
    settle = 0.0 if args.quick else SETTLE
    print(
        f"regularization paths, float64, {n_alphas} alphas from α_max to α_max·1e-3, "
        f"equal accuracy (relative objective excess ≤ {MAX_EXCESS:g} over scikit-learn at "
        f"tol={REFERENCE_TOL:g}; on {', '.join(BEST_OF_REFERENCE)} the best of celer and "
        f"jaxreg); jax {jax.__version__} on {jax.default_backend()}",
        flush=True,
    )
    rows, summary = [], {}
    for name, make in problems(args.quick).items():
        if args.only and name not in args.only:
            continue
        X, y = make()
        for l1_ratio, penalty in ((1.0, "lasso"), (0.5, "enet")):
            if args.penalty and penalty != args.penalty:
                continue
            row = run_problem(name, X, y, l1_ratio, n_alphas, rounds, settle)
            row["penalty"] = penalty
            rows.append(row)
            for key in ("jaxreg/sklearn", "jaxreg/celer"):
                if key in row:
                    summary[f"{name} {penalty} {key}"] = row[key]
            summary[f"{name} {penalty} jaxreg excess"] = row["jaxreg"][2]
            print(_describe(row), flush=True)
    anchors = [k for k in ("sklearn", "celer") if rows and k in rows[0]]
    header = ["problem", "penalty", *(f"{k} s (tol, excess)" for k in ("jaxreg", *anchors))]
    header += [f"jaxreg/{k}" for k in anchors] + ["jaxreg/best"]
    table = []
    for row in rows:
        cells = [f"{row['problem']} {row['shape']}", row["penalty"]]
        cells += [_cell(*row[k]) for k in ("jaxreg", *anchors)]
        cells += [row[f"jaxreg/{k}"] for k in anchors]
        best = min(row[k][0] for k in anchors)
        cells.append(row["jaxreg"][0] / best)
        summary[f"{row['problem']} {row['penalty']} jaxreg/best"] = row["jaxreg"][0] / best
        table.append(cells)
    print(format_table(header, table))
    shapes = [r for r in rows if r["problem"] in ("tall", "square", "wide")]
    if shapes:
        summary["geomean jaxreg/best (shapes)"] = geometric_mean(
            [r["jaxreg"][0] / min(r[k][0] for k in anchors) for r in shapes]
        )
        print(
            "geomean over the three shapes of jaxreg/best anchor: "
            f"{summary['geomean jaxreg/best (shapes)']:.3f}"
        )
    return summary


def _cell(seconds: float, tol: float, excess: float) -> str:
    flag = "" if excess <= MAX_EXCESS else " (never reached)"
    return f"{seconds:.3g} ({tol:g}, {excess:.1e}){flag}"


def _describe(row: dict[str, Any]) -> str:
    parts = [f"{row['problem']} {row['shape']} {row['penalty']}:"]
    for k in ("jaxreg", "sklearn", "celer"):
        if k in row:
            parts.append(f"{k} {_cell(*row[k])}")
    return " | ".join(parts) + f" [reference {row['reference s']:.1f} s]"


if __name__ == "__main__":
    main()
