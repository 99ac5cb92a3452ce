"""jaxreg.solvers against scikit-learn's Ridge, Lasso, ElasticNet, lasso_path and enet_path;
the solver info (iterations, scikit-learn's duality gap, convergence) and traced strengths."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso, Ridge, enet_path, lasso_path

from jaxreg.solvers import SolverInfo, elastic_net, lasso, regularization_path, ridge

X_DIABETES, Y_DIABETES = load_diabetes(return_X_y=True)
TIGHT = dict(tol=1e-14, max_iter=10**6)  # scikit-learn at its optimum
ALPHAS = np.array([1.0, 0.3, 0.1, 0.03, 0.01])

# alpha, l1_ratio and tol are traced inside the solvers, so the tests below share one
# compiled program per function and shape.
_enet = functools.partial(elastic_net, tol=1e-11)


def _objective(coef, intercept, alpha, l1_ratio):
    r = Y_DIABETES - X_DIABETES @ coef - intercept
    penalty = l1_ratio * np.sum(np.abs(coef)) + 0.5 * (1 - l1_ratio) * np.sum(coef**2)
    return 0.5 * np.mean(r * r) + alpha * penalty


def _assert_same_solution(coef, want, rtol=1e-6):
    coef = np.asarray(coef)
    np.testing.assert_allclose(coef, want, rtol=0, atol=rtol * np.max(np.abs(want)))
    np.testing.assert_array_equal(coef == 0, want == 0)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 50.0])
def test_ridge_matches_sklearn(alpha):
    coef, intercept = jax.jit(ridge)(X_DIABETES, Y_DIABETES, alpha)
    want = Ridge(alpha).fit(X_DIABETES, Y_DIABETES)
    np.testing.assert_allclose(coef, want.coef_, rtol=1e-9)
    np.testing.assert_allclose(intercept, want.intercept_, rtol=1e-12)


def test_ridge_dual_form_when_fewer_samples_than_features(rng):
    X, y = rng.standard_normal((6, 15)), rng.standard_normal(6)
    coef, intercept = ridge(X, y, 0.3)
    want = Ridge(0.3).fit(X, y)
    np.testing.assert_allclose(coef, want.coef_, rtol=1e-10)
    np.testing.assert_allclose(intercept, want.intercept_, rtol=1e-10)


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_lasso_and_elastic_net_match_sklearn_with_the_same_zeros(alpha, l1_ratio):
    model = (
        Lasso(alpha, **TIGHT) if l1_ratio == 1 else ElasticNet(alpha, l1_ratio=l1_ratio, **TIGHT)
    )
    want = model.fit(X_DIABETES, Y_DIABETES)
    coef, intercept = _enet(X_DIABETES, Y_DIABETES, alpha, l1_ratio=l1_ratio)
    _assert_same_solution(coef, want.coef_)
    np.testing.assert_allclose(intercept, want.intercept_, rtol=1e-8)


def test_lasso_at_the_default_tolerance_is_at_the_optimum_to_1e6():
    want = Lasso(0.01, **TIGHT).fit(X_DIABETES, Y_DIABETES)
    coef, intercept = lasso(X_DIABETES, Y_DIABETES, 0.01)
    best = _objective(want.coef_, want.intercept_, 0.01, 1.0)
    assert _objective(np.asarray(coef), float(intercept), 0.01, 1.0) - best <= 1e-6 * best
    np.testing.assert_array_equal(np.asarray(coef) == 0, want.coef_ == 0)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_regularization_path_matches_lasso_path_and_enet_path(l1_ratio):
    x_mean, y_mean = X_DIABETES.mean(0), Y_DIABETES.mean()
    path = lasso_path if l1_ratio == 1 else functools.partial(enet_path, l1_ratio=l1_ratio)
    _, want, _ = path(X_DIABETES - x_mean, Y_DIABETES - y_mean, alphas=ALPHAS, **TIGHT)
    coefs, intercepts = regularization_path(
        X_DIABETES, Y_DIABETES, ALPHAS, l1_ratio=l1_ratio, tol=1e-11
    )
    assert coefs.shape == (5, 10) and intercepts.shape == (5,)
    for got, ref in zip(np.asarray(coefs), want.T, strict=True):
        _assert_same_solution(got, ref)
    np.testing.assert_allclose(intercepts, y_mean - want.T @ x_mean, rtol=1e-8)


def test_low_precision_is_solved_in_float32_and_returned_in_the_input_dtype():
    X, y = (jnp.asarray(a, jnp.bfloat16) for a in (X_DIABETES, Y_DIABETES))
    coef, intercept = ridge(X, y, 0.5)
    want = Ridge(0.5).fit(X_DIABETES, Y_DIABETES).coef_
    assert coef.dtype == intercept.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(coef, np.float64), want, rtol=0.05, atol=1.0)


def test_vmap_over_alpha_and_float32():
    X, y = X_DIABETES.astype(np.float32), Y_DIABETES.astype(np.float32)
    coefs = jax.vmap(lambda a: lasso(X, y, a, tol=1e-6)[0])(jnp.asarray(ALPHAS[:2], jnp.float32))
    want = np.stack([Lasso(a, **TIGHT).fit(X_DIABETES, Y_DIABETES).coef_ for a in ALPHAS[:2]])
    assert coefs.dtype == jnp.float32
    np.testing.assert_allclose(coefs, want, rtol=0, atol=1e-3 * np.max(np.abs(want)))


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda X, y: ridge(X, y, -1.0), ValueError, "alpha"),
        (lambda X, y: lasso(X, y, -0.1), ValueError, "alpha"),
        (lambda X, y: elastic_net(X, y, 0.1, l1_ratio=1.5), ValueError, "l1_ratio"),
        (lambda X, y: regularization_path(X, y, np.array([0.1, -1.0])), ValueError, "alphas"),
        (lambda X, y: regularization_path(X, y, np.ones((2, 2))), ValueError, "alphas"),
        (lambda X, y: lasso(X, y[:-1], 0.1), ValueError, "rows"),
        (lambda X, y: ridge(X[:, 0], y, 0.1), ValueError, "X"),
        (lambda X, y: lasso(X, np.stack([y, y], 1), 0.1), ValueError, "y"),
        (lambda X, y: lasso(X.astype(np.int32), y, 0.1), TypeError, "X"),
        (lambda X, y: lasso(X, y, 0.1, tol=-1.0), ValueError, "tol"),
        (lambda X, y: lasso(X, y, 0.1, max_iter=0), ValueError, "max_iter"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call(X_DIABETES[:20], Y_DIABETES[:20])


# --------------------------------------------------------------------------- solver info

X_C, Y_C = X_DIABETES - X_DIABETES.mean(0), Y_DIABETES - Y_DIABETES.mean()
N = len(Y_DIABETES)


def _gap_bound(tol: float) -> float:
    """The stopping bound on scikit-learn's ``dual_gap_``: ``tol·‖y - ȳ‖²/n``."""
    return tol * float(Y_C @ Y_C) / N


def _sklearn_dual_gap(coef: np.ndarray, alpha: float, l1_ratio: float) -> float:
    """scikit-learn's ``dual_gap_`` (``_cd_fast.pyx``, formulation A, divided by ``n``) of
    ``1/(2n)‖y - Xw‖² + αρ‖w‖₁ + ½α(1-ρ)‖w‖²`` on the centered data, in float64 NumPy."""
    a, b = alpha * l1_ratio * N, alpha * (1 - l1_ratio) * N
    R = Y_C - X_C @ coef
    xta = X_C.T @ R - b * coef
    dual_norm = np.max(np.abs(xta))
    scale = a / dual_norm if dual_norm > a else 1.0
    sq = R @ R + b * coef @ coef
    primal = 0.5 * sq + a * np.sum(np.abs(coef))
    dual = -0.5 * scale**2 * sq + scale * (R @ Y_C)
    return (primal - dual) / N


def _fit_sklearn(alpha: float, l1_ratio: float, **kwargs: Any):
    model = (
        Lasso(alpha, **kwargs) if l1_ratio == 1 else ElasticNet(alpha, l1_ratio=l1_ratio, **kwargs)
    )
    return model.fit(X_DIABETES, Y_DIABETES)


def test_too_few_iterations_are_reported_as_not_converged():
    """``max_iter=5`` on a weakly regularized problem: the coefficients look fine, the info
    says the gap is far above the tolerance (n_iter is exactly max_iter, not a block of 10)."""
    coef, _, info = lasso(X_DIABETES, Y_DIABETES, 1e-4, max_iter=5, return_info=True)
    assert isinstance(info, SolverInfo) and np.all(np.isfinite(coef))
    assert int(info.n_iter) == 5 and not bool(info.converged)
    assert float(info.dual_gap) > 1e3 * _gap_bound(1e-8)
    _, _, path_info = regularization_path(
        X_DIABETES, Y_DIABETES, ALPHAS * 1e-3, max_iter=5, return_info=True
    )
    assert path_info.n_iter.shape == path_info.dual_gap.shape == (5,)
    assert np.all(np.asarray(path_info.n_iter) == 5) and not np.any(path_info.converged)
    assert np.all(np.asarray(path_info.dual_gap) > _gap_bound(1e-8))


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_at_the_default_tolerance_every_alpha_converges_below_the_bound(l1_ratio):
    coefs, _, info = regularization_path(
        X_DIABETES, Y_DIABETES, ALPHAS, l1_ratio=l1_ratio, return_info=True
    )
    gaps, iters = np.asarray(info.dual_gap), np.asarray(info.n_iter)
    assert np.all(info.converged) and info.converged.dtype == bool
    assert np.all(gaps <= _gap_bound(1e-8)) and np.all((0 < iters) & (iters < 10_000))
    # The reported gap is the gap at the returned coefficients.
    want = [
        _sklearn_dual_gap(c, a, l1_ratio) for c, a in zip(np.asarray(coefs), ALPHAS, strict=True)
    ]
    np.testing.assert_allclose(gaps, want, rtol=0, atol=1e-3 * _gap_bound(1e-8))


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_dual_gap_is_sklearns_dual_gap(l1_ratio):
    """The gap's definition and scaling are scikit-learn's: the NumPy formula reproduces
    ``dual_gap_`` at scikit-learn's own coefficients, jaxreg's gap equals the formula at
    jaxreg's coefficients (both stopped early, so the gaps are far above rounding), and at
    a tight tol both solvers report a gap at the rounding floor of the same objective."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loose = _fit_sklearn(0.1, l1_ratio, tol=1e-3)
    assert loose.dual_gap_ > _gap_bound(1e-9)
    np.testing.assert_allclose(
        _sklearn_dual_gap(loose.coef_, 0.1, l1_ratio), loose.dual_gap_, rtol=1e-8
    )

    coef, _, info = elastic_net(
        X_DIABETES, Y_DIABETES, 0.1, l1_ratio=l1_ratio, max_iter=3, return_info=True
    )
    assert float(info.dual_gap) > _gap_bound(1e-9)
    np.testing.assert_allclose(
        info.dual_gap, _sklearn_dual_gap(np.asarray(coef), 0.1, l1_ratio), rtol=1e-8
    )

    tight = _fit_sklearn(0.1, l1_ratio, **TIGHT)
    _, _, info = elastic_net(
        X_DIABETES, Y_DIABETES, 0.1, l1_ratio=l1_ratio, tol=1e-14, return_info=True
    )
    # Both at the optimum: gaps of rounding size, nowhere near an n-scaled gap.
    assert bool(info.converged)
    assert abs(float(info.dual_gap) - tight.dual_gap_) <= _gap_bound(1e-13)


@pytest.mark.parametrize("where", ["X", "y", "X_no_intercept", "X_without_gram", "y_float32"])
def test_nan_in_the_data_gives_nan_and_is_never_converged(where):
    X, y = X_DIABETES.copy(), Y_DIABETES.copy()
    if where.startswith("X"):
        X[3, 2] = np.nan
    else:
        y[3] = np.nan
    kwargs = dict(
        fit_intercept=where != "X_no_intercept",
        precompute=where != "X_without_gram",
        return_info=True,
    )
    if where == "y_float32":
        X, y = X.astype(np.float32), y.astype(np.float32)
    coef, intercept, info = lasso(X, y, 0.1, **kwargs)
    assert np.all(np.isnan(coef)) and np.isnan(intercept)
    assert np.isnan(info.dual_gap) and not bool(info.converged)
    assert int(info.n_iter) < 10_000  # stopped, not run to max_iter


def test_a_nan_alpha_breaks_only_its_own_column():
    alphas = np.array([1.0, np.nan, 0.01])
    coefs, _, info = regularization_path(X_DIABETES, Y_DIABETES, alphas, return_info=True)
    clean, _, clean_info = regularization_path(
        X_DIABETES, Y_DIABETES, alphas[[0, 2]], return_info=True
    )
    assert np.all(np.isnan(coefs[1])) and np.isnan(info.dual_gap[1])
    np.testing.assert_array_equal(info.converged, [True, False, True])
    np.testing.assert_allclose(np.asarray(coefs)[[0, 2]], clean, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.asarray(info.n_iter)[[0, 2]], clean_info.n_iter)


def _compiles() -> tuple[list[float], Any]:
    compiles: list[float] = []

    def listener(event: str, duration: float, **_: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    return compiles, listener


@pytest.mark.parametrize(
    "name, values", [("alpha", (0.1, 0.3)), ("l1_ratio", (0.5, 0.9)), ("tol", (1e-6, 1e-3))]
)
def test_numeric_hyperparameters_are_traced_and_never_recompile(name, values):
    """``alpha``, ``l1_ratio`` and ``tol`` work under ``jax.jit`` (no Python branch on their
    value), and an eager call with a new value reuses the compiled solver."""
    settings = dict(alpha=0.2, l1_ratio=0.7, tol=1e-7)

    def solve(value):
        kw = {**settings, name: value}
        return elastic_net(
            X_DIABETES,
            Y_DIABETES,
            kw["alpha"],
            l1_ratio=kw["l1_ratio"],
            tol=kw["tol"],
            return_info=True,
        )

    traces = []

    @jax.jit
    def traced(value):
        traces.append(value)
        return solve(value)

    eager = solve(values[0])
    compiles, listener = _compiles()
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        second = solve(values[1])
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert not compiles, f"a new {name} compiled {len(compiles)} programs"
    for value, want in zip(values, (eager, second), strict=True):
        coef, intercept, info = traced(value)
        scale = np.max(np.abs(want[0]))
        np.testing.assert_allclose(coef, want[0], rtol=0, atol=1e-9 * scale)
        assert bool(info.converged) and bool(want[2].converged)
    assert len(traces) == 1
    assert not np.allclose(eager[0], second[0], rtol=0, atol=1e-6 * scale) or name == "tol"
