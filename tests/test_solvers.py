"""jaxreg.solvers against scikit-learn's Ridge, Lasso, ElasticNet, lasso_path and enet_path."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet, Lasso, Ridge, enet_path, lasso_path

from jaxreg.solvers import elastic_net, lasso, regularization_path, ridge

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
