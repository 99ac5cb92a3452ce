"""The lasso and elastic-net kernels in every regime (jaxreg/_lasso*.py, _newton.py,
_coordinate_descent.py): wide, square and tall paths against scikit-learn, gap-safe
screening, working sets, warm starts, the Cholesky inverse, NaN and traced
hyperparameters on the working-set solver, and the compiled program's shape."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import enet_path

from jaxreg import _lasso, _lasso_path, _newton
from jaxreg.solvers import elastic_net, lasso, regularization_path

TIGHT = dict(tol=1e-14, max_iter=10**6)  # scikit-learn at its optimum


def _design(rng, n, p, k=5, correlated=False):
    """``X`` ``[n, p]`` (with ``correlated``, blocks of four features share a common
    factor: correlation 0.8) and ``y`` from ``k`` active features plus noise."""
    X = rng.standard_normal((n, p))
    if correlated:
        X = 0.5 * X + np.repeat(rng.standard_normal((n, p // 4)), 4, axis=1)
    w = np.zeros(p)
    w[rng.choice(p, k, replace=False)] = 3 * rng.standard_normal(k)
    return X, X @ w + rng.standard_normal(n)


def _grid(X, y, l1_ratio, n_alphas=12, eps=1e-3):
    """scikit-learn's grid, from just below ``α_max`` (the smallest α with w = 0, where
    scikit-learn's first coefficient is rounding noise rather than an exact 0) down to
    ``eps·α_max``."""
    Xc, yc = X - X.mean(0), y - y.mean()
    alpha_max = np.max(np.abs(Xc.T @ yc)) / (len(y) * l1_ratio)
    return 0.999 * alpha_max * np.logspace(0, np.log10(eps), n_alphas)


def _objectives(X, y, W, alphas, l1_ratio):
    """scikit-learn's objective of each row of ``W`` ``[k, p]`` on the centered data."""
    R = (y - y.mean())[:, None] - (X - X.mean(0)) @ W.T
    penalty = l1_ratio * np.abs(W).sum(1) + 0.5 * (1 - l1_ratio) * (W * W).sum(1)
    return 0.5 * np.mean(R * R, axis=0) + alphas * penalty


def _sklearn_path(X, y, alphas, l1_ratio):
    Xc, yc = X - X.mean(0), y - y.mean()
    return enet_path(Xc, yc, l1_ratio=l1_ratio, alphas=alphas, **TIGHT)[1].T


def _assert_same_path(X, y, alphas, l1_ratio, coefs, want=None):
    """Objective within 1e-8 (relative) of scikit-learn's at ``tol=1e-14``, same zeros."""
    want = _sklearn_path(X, y, alphas, l1_ratio) if want is None else want
    coefs = np.asarray(coefs)
    got = _objectives(X, y, coefs, alphas, l1_ratio)
    best = _objectives(X, y, want, alphas, l1_ratio)
    assert np.all(got - best <= 1e-8 * best), np.max((got - best) / best)
    np.testing.assert_array_equal(coefs == 0, want == 0)


SHAPES = {"wide": (30, 400), "square": (120, 120), "tall": (400, 40)}


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_paths_match_sklearn_in_every_regime(shape, l1_ratio):
    """p ≫ n (working sets on X), p = n and n ≫ p (the Gram matrix): scikit-learn's
    objective to 1e-8 and its zero pattern on every α, down to 1e-3·α_max, where the
    wide lasso's support nearly reaches n (Newton steps on an ill-conditioned face)."""
    X, y = _design(np.random.default_rng(sum(map(ord, shape))), *SHAPES[shape])
    alphas = _grid(X, y, l1_ratio)
    coefs, intercepts, info = regularization_path(
        X, y, alphas, l1_ratio=l1_ratio, tol=1e-12, return_info=True
    )
    assert np.all(info.converged)
    _assert_same_path(X, y, alphas, l1_ratio, coefs)
    np.testing.assert_allclose(intercepts, y.mean() - np.asarray(coefs) @ X.mean(0), rtol=1e-10)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_gram_path_matches_sklearn(l1_ratio):
    """The warm-started Gram-matrix path (``precompute`` with more features than FISTA's
    limit) on a square problem: scikit-learn's objectives and zeros."""
    X, y = _design(np.random.default_rng(5), 160, 160, k=8, correlated=True)
    alphas = _grid(X, y, l1_ratio)
    Xc, yc = X - X.mean(0), y - y.mean()
    a = jnp.asarray(alphas)
    W, n_iter, gap = jax.jit(functools.partial(_lasso_path.gram_path, max_iter=10_000))(
        Xc, yc, a * l1_ratio, a * (1 - l1_ratio), jnp.asarray(1e-12)
    )
    assert np.all(np.asarray(gap) <= 1e-12 * (yc @ yc)) and np.all(np.asarray(n_iter) < 10_000)
    _assert_same_path(X, y, alphas, l1_ratio, np.asarray(W).T)


@pytest.mark.parametrize("correlated", [False, True])
def test_gap_safe_screening_never_discards_a_feature_of_the_solution(correlated):
    """Screening at every α from two points, as the solvers do: the previous α's solution
    (a warm start; from 0 at the first α) and a point close to this α's solution
    (scikit-learn at tol=1e-3). Every screened feature is zero in the tight solution; and
    the rule is not vacuous (it screens most features near a solution)."""
    rng = np.random.default_rng(7 + correlated)
    for l1_ratio in (1.0, 0.5):
        X, y = _design(rng, 40, 300, correlated=correlated)
        Xc, yc = X - X.mean(0), y - y.mean()
        n = len(y)
        alphas = _grid(X, y, l1_ratio, n_alphas=15)
        want = _sklearn_path(X, y, alphas, l1_ratio)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            near = enet_path(Xc, yc, l1_ratio=l1_ratio, alphas=alphas, tol=1e-3)[1].T
        norm2 = jnp.asarray(np.sum(Xc * Xc, axis=0))
        fractions, previous = [], np.zeros(X.shape[1])
        for alpha, solution, close in zip(alphas, want, near, strict=True):
            a, b = n * alpha * l1_ratio, n * alpha * (1 - l1_ratio)
            for w in (previous, close):
                r = yc - Xc @ w
                xtr = Xc.T @ r
                ab = jnp.asarray([a]), jnp.asarray([b])
                gap = _lasso.duality_gap(w[:, None], xtr[:, None], r @ r, r @ yc, *ab)[0]
                xta = xtr - b * w
                out = np.asarray(_lasso.screened(xta, np.max(np.abs(xta)), gap, norm2, a, b))
                assert not np.any(solution[out] != 0), (
                    alpha,
                    np.flatnonzero(out & (solution != 0)),
                )
            fractions.append(out.mean())
            previous = solution
        assert np.mean(fractions) > 0.25 and max(fractions) > 0.9, fractions


def test_screening_skips_nan_and_the_ridge():
    """No ℓ1 term (a = 0) screens nothing; a NaN gap screens nothing."""
    xta, norm2 = jnp.asarray([0.1, -0.2]), jnp.asarray([1.0, 1.0])
    assert not np.any(_lasso.screened(xta, 0.2, 1e-9, norm2, 0.0, 1.0))
    assert not np.any(_lasso.screened(xta, 0.2, np.nan, norm2, 1.0, 0.0))
    assert np.all(_lasso.screened(xta, 0.2, 1e-9, norm2, 1.0, 0.0))


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_working_sets_equal_the_full_solve(l1_ratio):
    """Working sets on X (``precompute=False``) and FISTA on every feature of the Gram
    matrix (``precompute=True``): the same objectives and zeros (coefficients agree to
    the conditioning of p ≫ n: directions that barely change the objective)."""
    X, y = _design(np.random.default_rng(11), 30, 400, correlated=True)
    alphas = _grid(X, y, l1_ratio, n_alphas=8, eps=1e-2)
    sets, _ = regularization_path(X, y, alphas, l1_ratio=l1_ratio, tol=1e-13, precompute=False)
    full, _ = regularization_path(
        X, y, alphas, l1_ratio=l1_ratio, tol=1e-13, precompute=True, max_iter=200_000
    )
    sets, full = np.asarray(sets), np.asarray(full)
    _assert_same_path(X, y, alphas, l1_ratio, sets, want=full)
    np.testing.assert_allclose(sets, full, rtol=0, atol=1e-5 * np.max(np.abs(full)))


def test_warm_started_path_equals_independent_solves():
    """The path (each α warm started from the previous solution, along the path's
    secant) and one cold solve per α: the same solutions."""
    X, y = _design(np.random.default_rng(12), 30, 400)
    alphas = _grid(X, y, 1.0, n_alphas=6, eps=1e-2)
    path, _ = regularization_path(X, y, alphas, tol=1e-13)
    solve = jax.jit(lambda a: lasso(X, y, a, tol=1e-13)[0])
    alone = np.stack([np.asarray(solve(a)) for a in alphas])
    np.testing.assert_allclose(path, alone, rtol=0, atol=1e-8 * np.max(np.abs(alone)))
    np.testing.assert_array_equal(np.asarray(path) == 0, alone == 0)


def test_alphas_in_any_order_give_the_same_path():
    X, y = _design(np.random.default_rng(13), 30, 400)
    alphas = _grid(X, y, 1.0, n_alphas=6, eps=1e-2)
    order = np.array([3, 0, 5, 1, 4, 2])
    coefs, _ = regularization_path(X, y, alphas, tol=1e-12)
    shuffled, _ = regularization_path(X, y, alphas[order], tol=1e-12)
    np.testing.assert_allclose(shuffled, np.asarray(coefs)[order], rtol=0, atol=1e-9)


def test_dense_elastic_net_beyond_the_slots_falls_back_and_matches_sklearn():
    """A nearly ridge elastic net on p ≫ n: the support (over 300 features) outgrows the
    working set's 256 slots, and the path finishes by FISTA on the whole problem."""
    X, y = _design(np.random.default_rng(14), 20, 600)
    alphas = _grid(X, y, 0.01, n_alphas=4, eps=1e-2)
    assert _lasso_path.slot_count(*X.shape) == 256
    coefs, _, info = regularization_path(
        X, y, alphas, l1_ratio=0.01, tol=1e-12, return_info=True, max_iter=100_000
    )
    assert np.max(np.sum(np.asarray(coefs) != 0, axis=1)) > 256 and np.all(info.converged)
    _assert_same_path(X, y, alphas, 0.01, coefs)


WIDE_X, WIDE_Y = _design(np.random.default_rng(15), 30, 400)
WIDE_ALPHAS = _grid(WIDE_X, WIDE_Y, 1.0, n_alphas=5, eps=1e-2)


def test_working_set_info_is_sklearns_gap_and_the_iterations():
    """On the working-set path the info keeps its contract: the gap at the returned
    coefficients (scikit-learn's formula, NumPy), below tol·‖y‖²/n when converged,
    coordinate-descent epochs within max_iter; max_iter=1 stops short, not converged."""
    Xc, yc = WIDE_X - WIDE_X.mean(0), WIDE_Y - WIDE_Y.mean()
    n = len(yc)
    coefs, _, info = regularization_path(WIDE_X, WIDE_Y, WIDE_ALPHAS, tol=1e-8, return_info=True)
    assert np.all(info.converged) and info.n_iter.dtype == jnp.int32
    assert np.all(np.asarray(info.dual_gap) <= 1e-8 * (yc @ yc) / n)
    for coef, alpha, gap in zip(
        np.asarray(coefs), WIDE_ALPHAS, np.asarray(info.dual_gap), strict=True
    ):
        R = yc - Xc @ coef
        dual_norm = np.max(np.abs(Xc.T @ R))
        scale = min(1.0, n * alpha / dual_norm)
        primal = 0.5 * R @ R + n * alpha * np.sum(np.abs(coef))
        want = (primal - (-0.5 * scale**2 * R @ R + scale * R @ yc)) / n
        assert abs(gap - want) <= 1e-6 * 1e-8 * (yc @ yc) / n + 1e-12 * abs(want)
    _, _, short = regularization_path(
        WIDE_X, WIDE_Y, WIDE_ALPHAS[1:], tol=1e-8, max_iter=1, return_info=True
    )
    np.testing.assert_array_equal(short.n_iter, 1)
    assert not np.any(short.converged)
    assert np.all(np.asarray(short.dual_gap) > 1e-8 * (yc @ yc) / n)


@pytest.mark.parametrize("where", ["X", "y", "X_no_intercept"])
def test_nan_in_wide_data_gives_nan_and_is_never_converged(where):
    X, y = WIDE_X.copy(), WIDE_Y.copy()
    if where.startswith("X"):
        X[3, 7] = np.nan
    else:
        y[3] = np.nan
    coefs, intercepts, info = regularization_path(
        X, y, WIDE_ALPHAS, fit_intercept=where != "X_no_intercept", return_info=True
    )
    assert np.all(np.isnan(coefs)) and np.all(np.isnan(intercepts))
    assert np.all(np.isnan(info.dual_gap)) and not np.any(info.converged)
    assert np.all(np.asarray(info.n_iter) < 10)  # stopped, not run to max_iter


def test_a_nan_alpha_breaks_only_its_own_column_of_a_wide_path():
    alphas = WIDE_ALPHAS.copy()
    alphas[2] = np.nan
    coefs, _, info = regularization_path(WIDE_X, WIDE_Y, alphas, return_info=True)
    keep = np.arange(len(alphas)) != 2
    clean, _, clean_info = regularization_path(WIDE_X, WIDE_Y, alphas[keep], return_info=True)
    assert np.all(np.isnan(coefs[2])) and np.isnan(info.dual_gap[2]) and not info.converged[2]
    np.testing.assert_allclose(np.asarray(coefs)[keep], clean, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(np.asarray(info.converged)[keep], clean_info.converged)


@pytest.mark.parametrize("name", ["alpha", "l1_ratio", "tol"])
def test_wide_solvers_take_traced_hyperparameters(name):
    """alpha, l1_ratio and tol traced through the working-set solver: one compiled
    program for two values, the same numbers as concrete calls."""
    values = {"alpha": (0.3, 0.1), "l1_ratio": (0.9, 0.6), "tol": (1e-8, 1e-5)}[name]

    def solve(value):
        kw = {"alpha": 0.2, "l1_ratio": 0.8, "tol": 1e-9, name: value}
        return elastic_net(
            WIDE_X, WIDE_Y, kw["alpha"], l1_ratio=kw["l1_ratio"], tol=kw["tol"], return_info=True
        )

    traced = jax.jit(solve)
    for value in values:
        coef, _, info = traced(jnp.asarray(value))
        want, _, want_info = solve(value)
        np.testing.assert_allclose(coef, want, rtol=0, atol=1e-12)
        assert bool(info.converged) and bool(want_info.converged)
    assert traced._cache_size() == 1


def test_wide_float32():
    """float32 working sets: converged at tol=1e-5, objective within 1e-5 of float64's."""
    X, y = WIDE_X.astype(np.float32), WIDE_Y.astype(np.float32)
    coefs, _, info = regularization_path(
        X, y, WIDE_ALPHAS.astype(np.float32), tol=1e-5, return_info=True
    )
    want, _ = regularization_path(WIDE_X, WIDE_Y, WIDE_ALPHAS, tol=1e-12)
    assert coefs.dtype == jnp.float32 and np.all(info.converged)
    got = _objectives(WIDE_X, WIDE_Y, np.asarray(coefs, np.float64), WIDE_ALPHAS, 1.0)
    best = _objectives(WIDE_X, WIDE_Y, np.asarray(want), WIDE_ALPHAS, 1.0)
    assert np.all(got - best <= 1e-5 * best)


@pytest.mark.parametrize("size", [5, 64, 100, 256])
def test_cholesky_inverse(size):
    """``L⁻¹`` with ``A = LLᵀ`` (one leaf, and recursive halves); a duplicated column is
    held at 0 (its row of ``L⁻¹`` is zero) and the rest solved exactly; NaN in, NaN out."""
    rng = np.random.default_rng(size)
    B = rng.standard_normal((size + 3, size))
    A = B.T @ B
    Linv = np.asarray(jax.jit(_newton.cholesky_inverse)(A))
    L = np.linalg.cholesky(A)
    np.testing.assert_allclose(Linv, np.linalg.inv(L), rtol=0, atol=1e-9 * np.max(np.abs(Linv)))
    assert np.all(Linv[np.triu_indices(size, 1)] == 0)
    # Column 1 duplicates column 0: u_1 = 0 and u solves the system without column 1.
    D = B.copy()
    D[:, 1] = D[:, 0]
    A, b = D.T @ D, rng.standard_normal(size)
    Linv = np.asarray(jax.jit(_newton.cholesky_inverse)(A))
    u = Linv.T @ (Linv @ b)
    keep = np.arange(size) != 1
    assert u[1] == 0 and np.all(Linv[1] == 0)
    np.testing.assert_allclose(u[keep], np.linalg.solve(A[np.ix_(keep, keep)], b[keep]), rtol=1e-8)
    A[2, 2] = np.nan
    assert np.all(np.isnan(np.asarray(jax.jit(_newton.cholesky_inverse)(A))[2:, 2]))


def _compiled_text(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


@pytest.mark.parametrize("path", ["working_set_path", "gram_path"])
def test_compiled_solver_avoids_the_slow_xla_cpu_patterns(path):
    """The compiler-specific choices of jaxreg/_lasso.py's header, checked on the
    optimized HLO: no transpose of the [n, p] design (choice 1), no sort over p
    features (choice 2), no LAPACK custom call (choice 5), and the Gram matrix formed
    from a materialized transpose of X, not folded into the dot (choice 4)."""
    n, p = (30, 400) if path == "working_set_path" else (60, 50)
    X, y, a = jnp.ones((n, p)), jnp.ones(n), jnp.ones(3)
    fn = functools.partial(getattr(_lasso_path, path), max_iter=10)
    text = _compiled_text(lambda X, y, a: fn(X, y, a, 0 * a, jnp.asarray(1e-8)), X, y, a)
    lines = text.splitlines()
    design_transposes = [x for x in lines if " transpose(" in x and f"[{p},{n}]" in x]
    sorts = [x for x in lines if " sort(" in x and f"[{p}]" in x]
    assert not sorts and "lapack" not in text.lower()
    if path == "gram_path":  # materialized once (the barrier keeps it out of the dot)
        assert len(design_transposes) == 1, design_transposes
    else:
        assert not design_transposes
