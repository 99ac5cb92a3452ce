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


# One strongly convex problem, loss and optimizer for the module: minimize's compiled loop
# is cached on them (the tolerance is traced).
_RNG = np.random.default_rng(0)
X = _RNG.standard_normal((40, 5))
Y = X @ np.array([1.0, -2.0, 0.0, 0.5, 3.0]) + 0.1 * _RNG.standard_normal(40)
LOSS = functools.partial(_ridge_objective, X=X, y=Y, alpha=2.0)
OPT = optim.sgd(1 / (2 * np.linalg.eigvalsh(X.T @ X)[-1] + 4.0), momentum=0.5)  # lr = 1/L
MAX_STEPS = 3000


def test_minimize_reaches_the_exact_ridge_optimum():
    w, steps, _ = minimize(LOSS, jnp.zeros(5), OPT, max_steps=MAX_STEPS, tol=1e-13)
    want, _ = ridge(X, Y, 2.0, fit_intercept=False)
    assert 0 < int(steps) < MAX_STEPS
    np.testing.assert_allclose(w, want, rtol=1e-8)


@pytest.mark.parametrize("ord", [1, 2, np.inf])
def test_minimize_stops_at_the_first_step_below_tol_in_the_chosen_norm(ord):
    tol = 1e-6
    _, steps, history = minimize(LOSS, jnp.zeros(5), OPT, max_steps=MAX_STEPS, tol=tol, ord=ord)
    n = int(steps)
    step, scale = np.asarray(history["step_norm"]), np.maximum(history["param_norm"], 1.0)
    assert step[n - 1] <= tol * scale[n - 1]
    assert np.all(step[: n - 1] > tol * scale[: n - 1])
    assert np.all(np.isinf(step[n:])) and np.all(np.isfinite(step[:n]))


@jax.jit
def _one_step(w0, w1, g):
    """The state after one update, for ords 2 and 1."""
    return [convergence_update(convergence_init(w0, ord=o), w1, g, ord=o) for o in (2, 1)]


def test_norms_of_one_step_in_every_ord():
    states = _one_step(jnp.array([3.0, 4.0]), jnp.array([3.0, 5.0]), jnp.array([-1.0, 2.0]))
    expected = [(1.0, np.hypot(3, 5), np.sqrt(5)), (1.0, 8.0, 3.0)]
    for state, (step, param, grad) in zip(states, expected, strict=True):
        np.testing.assert_allclose(
            [state.step_norm, state.param_norm, state.grad_norm, state.relative_step],
            [step, param, grad, step / param],
            rtol=1e-15,
        )
        assert int(state.count) == 1


def test_initial_state_is_not_converged_and_zero_steps_are_nan_free():
    @jax.jit
    def check(w):
        init = convergence_init(w)
        s = convergence_update(init, w, jnp.zeros(3))
        return has_converged(init, tol=1e30), s.relative_step + s.step_norm

    # Before any step: never converged. Δw = 0 and w = 0: 0 (not 0/0), finite gradient.
    converged, value = check(jnp.zeros(3))
    assert not bool(converged) and float(value) == 0.0
    grad = jax.jit(jax.grad(lambda w: check(w)[1]))(jnp.zeros(3))
    assert np.all(np.isfinite(grad))


def test_minimize_runs_under_jit_with_a_traced_tolerance():
    run = jax.jit(lambda tol: minimize(LOSS, jnp.zeros(5), OPT, max_steps=MAX_STEPS, tol=tol))
    loose, tight = int(run(1e-2)[1]), int(run(1e-6)[1])
    assert 0 < loose < tight < MAX_STEPS


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(max_steps=0, tol=1e-6), "max_steps"), (dict(max_steps=10, tol=-1.0), "tol")],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        minimize(jnp.sum, jnp.zeros(2), optim.sgd(0.1), **kwargs)
