"""Parity of jaxreg.solvers with torch_ref.solvers.

Ridge is a closed form, so values and gradients (with respect to ``X`` and ``y``) are
compared. The iterative solvers run with ``tol=0`` for a fixed number of iterations, so
that both sides stop at the optimum to rounding error; a positive ``tol`` would let the
two stop one gap check apart, a difference of order ``tol`` that says nothing about the
implementations. With the Gram matrix (``n >= p`` here) both sides run the same FISTA,
iteration for iteration; with ``n < p`` jaxreg runs coordinate descent on working sets
(exact after a few epochs) and torch_ref FISTA on ``X``, which gets as many iterations as
it needs to reach the same optimum.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_ref.solvers as tsol
from jaxreg import solvers as sol
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from parity_tests.test_optim import single_threaded

# tol=0: exactly max_iter iterations (the problems are at the optimum long before).
FIXED = dict(tol=0.0, max_iter=150)


def _data(n: int, p: int):
    def inputs(rng: np.random.Generator):
        X = rng.standard_normal((n, p))
        w = np.where(np.arange(p) % 3 == 0, 0.0, rng.standard_normal(p))
        return X, X @ w + 0.5 + 0.1 * rng.standard_normal(n)

    return inputs


def _with(data, *extra: np.ndarray):
    return lambda rng: (*data(rng), *extra)


def _ridges(module, X, y, alpha, X_wide, y_wide):
    """Ridge with an intercept (primal, n > p) and without one (dual, n < p)."""
    return module.ridge(X, y, alpha), module.ridge(X_wide, y_wide, alpha, fit_intercept=False)


def _ridge_inputs(rng):
    return (*_data(30, 5)(rng), np.array(0.7), *_data(8, 12)(rng))


# The penalized solvers take ``l1_ratio`` as an input (a traced scalar on the JAX side), so
# each function compiles once per dtype and serves every case and generated example.
def _enet(module, X, y, alpha, l1_ratio):
    return module.elastic_net(X, y, alpha, l1_ratio=l1_ratio, **FIXED)


def _path(module, X, y, alphas, l1_ratio):
    return module.regularization_path(X, y, alphas, l1_ratio=l1_ratio, **FIXED)


#: Stopped short of the optimum (tol=0) on a slow problem (n < p, FISTA on the Gram
#: matrix on both sides), after a number of iterations that is not a multiple of the
#: gap-check interval: the same n_iter, gaps well above rounding (a gap at its rounding
#: floor could read <= 0 on one side only) and converged=False on both sides.
SHORT = dict(tol=0.0, max_iter=25, return_info=True, precompute=True)


def _path_info(module, X, y, alphas, l1_ratio):
    coef, intercept, info = module.regularization_path(X, y, alphas, l1_ratio=l1_ratio, **SHORT)
    # The gap is the difference of a primal and a dual objective of the size of ½‖y‖²/n:
    # its rounding is relative to that scale, not to the gap (float32 sums of a different
    # order differ by ~1e-6 in a gap of 1e-2), so it is compared on that scale.
    scale = (y * y).mean() / 2
    return coef, intercept, info._replace(dual_gap=info.dual_gap / scale)


def _path_wide(module, X, y, alphas, l1_ratio):
    """n < p: jaxreg's working sets against torch_ref's FISTA on X, which needs many more
    iterations to reach the optimum to rounding."""
    max_iter = FIXED["max_iter"] if module is sol else 20_000
    return module.regularization_path(X, y, alphas, l1_ratio=l1_ratio, tol=0.0, max_iter=max_iter)


SHARED = {
    fn: (functools.partial(fn, sol), single_threaded(functools.partial(fn, tsol)))
    for fn in (_enet, _path, _path_info, _path_wide)
}


def _solver_case(name: str, fn, inputs) -> ParityCase:
    jax_fn, torch_fn = SHARED[fn]  # the same function objects: jit's cache is reused
    return ParityCase(name, jax_fn, torch_fn, inputs, grad_argnums=())


ALPHAS = np.array([0.5, 0.1, 0.03, 0.01, 0.001])
LASSO = _solver_case("solvers.lasso", _enet, _with(_data(40, 6), np.array(0.1), np.array(1.0)))
PATH = _solver_case(
    "solvers.regularization_path", _path, _with(_data(40, 6), ALPHAS, np.array(1.0))
)

CASES = [
    ParityCase(
        "solvers.ridge[primal|dual,no_intercept]",
        functools.partial(_ridges, sol),
        single_threaded(functools.partial(_ridges, tsol)),
        _ridge_inputs,
        grad_argnums=(0, 1, 2, 3, 4),
    ),
    LASSO,
    _solver_case("solvers.elastic_net", _enet, _with(_data(40, 6), np.array(0.1), np.array(0.5))),
    PATH,
    _solver_case(
        "solvers.regularization_path[enet]", _path, _with(_data(40, 6), ALPHAS, np.array(0.7))
    ),
    # The solver info: iterations, scikit-learn's duality gap, the convergence flag.
    _solver_case(
        "solvers.regularization_path[return_info,max_iter=25]",
        _path_info,
        _with(_data(12, 20), np.array([0.5, 0.2, 0.1, 0.01, 0.001]), np.array(0.7)),
    ),
    # n < p: jaxreg's working sets on X, torch_ref's FISTA on X (strengths large enough
    # for the solution to be unique and well conditioned).
    _solver_case(
        "solvers.regularization_path[n<p]",
        _path_wide,
        _with(_data(12, 20), np.array([0.5, 0.2, 0.1]), np.array(1.0)),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    alphas=st.lists(st.floats(1e-3, 2.0), min_size=5, max_size=5),
    l1_ratio=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_path_on_generated_data(seed, alphas, l1_ratio):
    """Random data, strengths and mixing (same shapes: the compiled case is reused)."""
    X, y = _data(40, 6)(np.random.default_rng(seed))
    inputs = (X, y, np.array(alphas), np.array(l1_ratio))
    assert_parity(compare(PATH.jax_fn, PATH.torch_fn, inputs, grad_argnums=()))


def test_large_alpha_gives_all_zeros_on_both_sides():
    X, y = _data(40, 6)(np.random.default_rng(0))
    big = 2 * np.max(np.abs((X - X.mean(0)).T @ (y - y.mean()))) / 40
    inputs = (X, y, np.array(big), np.array(1.0))
    assert_parity(compare(LASSO.jax_fn, LASSO.torch_fn, inputs, grad_argnums=()))
    coef, intercept = LASSO.jax_fn(*inputs)
    assert np.all(np.asarray(coef) == 0)
    np.testing.assert_allclose(intercept, y.mean(), rtol=1e-12)


@pytest.mark.parametrize("fn", ["ridge", "lasso"])
def test_torch_bad_input_raises(fn):
    import torch

    X, y = (torch.from_numpy(a) for a in _data(10, 3)(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="rows"):
        getattr(tsol, fn)(X, y[:-1], 0.1)
    with pytest.raises(ValueError, match="alpha"):
        getattr(tsol, fn)(X, y, -1.0)
    with pytest.raises(TypeError, match="X"):
        getattr(tsol, fn)(X.long(), y, 0.1)


@pytest.mark.parametrize("fn", ["lasso", "elastic_net", "regularization_path"])
def test_solver_info_has_the_same_structure_and_values_on_both_sides(fn):
    import torch

    X, y = _data(40, 6)(np.random.default_rng(1))
    alpha = np.array([0.1, 0.01]) if fn == "regularization_path" else 0.1
    got = getattr(sol, fn)(X, y, alpha, return_info=True)
    t = (torch.from_numpy(a) for a in (X, y))
    want = getattr(tsol, fn)(*t, torch.as_tensor(alpha), return_info=True)
    assert len(got) == len(want) == 3
    assert type(got[2]).__name__ == type(want[2]).__name__ == "SolverInfo"
    assert got[2]._fields == want[2]._fields == ("n_iter", "dual_gap", "converged")
    assert np.all(got[2].converged) and np.all(want[2].converged.numpy())
    np.testing.assert_array_equal(got[2].n_iter, want[2].n_iter.numpy())
    assert got[2].n_iter.shape == tuple(want[2].n_iter.shape) == np.shape(alpha)


@pytest.mark.parametrize("where", ["X", "y", "alpha"])
def test_nan_gives_nan_coefficients_and_not_converged_on_both_sides(where):
    import torch

    X, y = _data(40, 6)(np.random.default_rng(2))
    alphas = np.array([0.1, 0.01])
    if where == "X":
        X[5, 1] = np.nan
    elif where == "y":
        y[5] = np.nan
    else:
        alphas[1] = np.nan
    broken = slice(None) if where != "alpha" else slice(1, 2)
    for module, to in ((sol, np.asarray), (tsol, torch.from_numpy)):
        coefs, intercepts, info = module.regularization_path(
            to(X), to(y), to(alphas), return_info=True
        )
        assert np.all(np.isnan(np.asarray(coefs[broken]))), module.__name__
        assert np.all(np.isnan(np.asarray(intercepts[broken])))
        assert np.all(np.isnan(np.asarray(info.dual_gap[broken])))
        assert not np.any(np.asarray(info.converged[broken]))
        assert np.all(np.asarray(info.n_iter[broken]) < 10_000)  # stopped early
