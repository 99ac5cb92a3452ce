"""Parity of jaxreg.solvers with torch_ref.solvers (the same algorithms in torch).

Ridge is a closed form, so values and gradients (with respect to ``X`` and ``y``) are
compared. The FISTA solvers run with ``tol=0`` for a fixed number of iterations, so
both sides stop at the same iteration, at the optimum to rounding error; a positive
``tol`` would let the two stop one gap check apart, a difference of order ``tol`` that
says nothing about the implementations.
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

FIXED = dict(tol=0.0, max_iter=400)  # well-conditioned problems: at the optimum long before


def _data(n: int, p: int):
    def inputs(rng: np.random.Generator):
        X = rng.standard_normal((n, p))
        w = np.where(np.arange(p) % 3 == 0, 0.0, rng.standard_normal(p))
        return X, X @ w + 0.5 + 0.1 * rng.standard_normal(n)

    return inputs


def _alphas_data(n: int, p: int, alphas: np.ndarray):
    data = _data(n, p)
    return lambda rng: (*data(rng), alphas)


def _case(name: str, fn: str, inputs, grad_argnums=(), **kw) -> ParityCase:
    return ParityCase(
        name,
        functools.partial(getattr(sol, fn), **kw),
        functools.partial(getattr(tsol, fn), **kw),
        inputs,
        grad_argnums=grad_argnums,
    )


ALPHAS = np.array([0.5, 0.1, 0.03, 0.01, 0.001])

CASES = [
    _case("solvers.ridge", "ridge", lambda rng: (*_data(30, 5)(rng), np.array(0.7)), (0, 1)),
    _case("solvers.ridge[dual]", "ridge", lambda rng: (*_data(8, 12)(rng), np.array(0.7)), (0, 1)),
    _case(
        "solvers.ridge[no_intercept]",
        "ridge",
        lambda rng: (*_data(30, 5)(rng), np.array(2.0)),
        (0, 1),
        fit_intercept=False,
    ),
    _case("solvers.lasso", "lasso", lambda rng: (*_data(40, 6)(rng), np.array(0.1)), **FIXED),
    _case(
        "solvers.elastic_net",
        "elastic_net",
        lambda rng: (*_data(40, 6)(rng), np.array(0.1)),
        l1_ratio=0.5,
        **FIXED,
    ),
    _case(
        "solvers.regularization_path",
        "regularization_path",
        _alphas_data(40, 6, ALPHAS),
        **FIXED,
    ),
    _case(
        "solvers.regularization_path[enet,no_gram]",
        "regularization_path",
        _alphas_data(40, 6, ALPHAS),
        l1_ratio=0.7,
        precompute=False,
        **FIXED,
    ),
    _case(
        "solvers.regularization_path[n<p]",
        "regularization_path",
        _alphas_data(12, 20, ALPHAS[:3]),
        **FIXED,
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
    """Random data and strengths (the same shapes, so one compiled program per ``l1_ratio``)."""
    case = _case(
        "solvers.regularization_path",
        "regularization_path",
        None,
        l1_ratio=l1_ratio,
        **FIXED,
    )
    X, y = _data(40, 6)(np.random.default_rng(seed))
    assert_parity(compare(case.jax_fn, case.torch_fn, (X, y, np.array(alphas)), grad_argnums=()))


def test_large_alpha_gives_all_zeros_on_both_sides():
    X, y = _data(40, 6)(np.random.default_rng(0))
    big = 2 * np.max(np.abs((X - X.mean(0)).T @ (y - y.mean()))) / 40
    result = compare(
        functools.partial(sol.lasso, tol=1e-8),
        functools.partial(tsol.lasso, tol=1e-8),
        (X, y, np.array(big)),
        grad_argnums=(),
    )
    assert_parity(result)
    coef, intercept = sol.lasso(X, y, big)
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
