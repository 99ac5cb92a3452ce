"""jaxreg.convergence: the stopping rule, the exact optimum it reaches, NaN-free edges."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import optim
from jaxreg.convergence import (
    convergence_init,
    convergence_update,
    has_converged,
    minimize,
)
from jaxreg.solvers import ridge


def _ridge_objective(w, X, y, alpha):
    """scikit-learn's ridge objective ‖y - Xw‖² + α‖w‖² (no intercept)."""
    r = X @ w - y
    return jnp.sum(r * r) + alpha * jnp.sum(w * w)


def _problem(rng):
    X = rng.standard_normal((40, 5))
    return X, X @ np.array([1.0, -2.0, 0.0, 0.5, 3.0]) + 0.1 * rng.standard_normal(40)


def test_minimize_reaches_the_exact_ridge_optimum(rng):
    X, y = _problem(rng)
    loss = functools.partial(_ridge_objective, X=X, y=y, alpha=2.0)
    lr = 1 / (2 * np.linalg.eigvalsh(X.T @ X)[-1] + 4.0)  # 1/L of the objective
    opt = optim.sgd(lr, momentum=0.5)
    w, steps, _ = minimize(loss, jnp.zeros(5), opt, max_steps=5000, tol=1e-13)
    want, _ = ridge(X, y, 2.0, fit_intercept=False)
    assert 0 < int(steps) < 5000
    np.testing.assert_allclose(w, want, rtol=1e-8)


@pytest.mark.parametrize("ord", [1, 2, np.inf])
def test_minimize_stops_at_the_first_step_below_tol_in_the_chosen_norm(rng, ord):
    X, y = _problem(rng)
    loss = functools.partial(_ridge_objective, X=X, y=y, alpha=2.0)
    lr = 1 / (2 * np.linalg.eigvalsh(X.T @ X)[-1] + 4.0)
    tol = 1e-6
    _, steps, history = minimize(
        loss, jnp.zeros(5), optim.sgd(lr), max_steps=2000, tol=tol, ord=ord
    )
    n = int(steps)
    step, scale = np.asarray(history["step_norm"]), np.maximum(history["param_norm"], 1.0)
    assert step[n - 1] <= tol * scale[n - 1]
    assert np.all(step[: n - 1] > tol * scale[: n - 1])
    assert np.all(np.isinf(step[n:])) and np.all(np.isfinite(step[:n]))


def test_norms_of_one_step_in_every_ord():
    w0, w1, g = jnp.array([3.0, 4.0]), jnp.array([3.0, 5.0]), jnp.array([-1.0, 2.0])
    for ord, step, param, grad in [(2, 1.0, np.hypot(3, 5), np.sqrt(5)), (1, 1.0, 8.0, 3.0)]:
        state = convergence_update(convergence_init(w0, ord=ord), w1, g, ord=ord)
        np.testing.assert_allclose(
            [state.step_norm, state.param_norm, state.grad_norm, state.relative_step],
            [step, param, grad, step / param],
            rtol=1e-15,
        )
        assert int(state.count) == 1


def test_initial_state_is_not_converged_and_zero_steps_are_nan_free():
    state = convergence_init({"w": jnp.zeros(3)})
    assert not bool(has_converged(state, tol=1e30))

    def relative_step(w):
        s = convergence_update(convergence_init(jnp.zeros(3)), w, jnp.zeros(3))
        return s.relative_step + s.step_norm

    # Δw = 0 and w = 0: value 0 (not 0/0), gradient finite.
    assert float(relative_step(jnp.zeros(3))) == 0.0
    assert np.all(np.isfinite(jax.grad(relative_step)(jnp.zeros(3))))


def test_minimize_runs_under_jit_with_a_traced_tolerance(rng):
    X, y = _problem(rng)
    loss = functools.partial(_ridge_objective, X=X, y=y, alpha=2.0)
    lr = 1 / (2 * np.linalg.eigvalsh(X.T @ X)[-1] + 4.0)
    run = jax.jit(lambda tol: minimize(loss, jnp.zeros(5), optim.sgd(lr), max_steps=500, tol=tol))
    loose, tight = int(run(1e-2)[1]), int(run(1e-6)[1])
    assert 0 < loose < tight < 500


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(max_steps=0, tol=1e-6), "max_steps"), (dict(max_steps=10, tol=-1.0), "tol")],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        minimize(jnp.sum, jnp.zeros(2), optim.sgd(0.1), **kwargs)
