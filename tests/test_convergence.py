"""jaxreg.convergence: the stopping rule, the exact optimum it reaches, NaN-free edges, and
broken (NaN or inf) runs that never read as converged."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import optim
from jaxreg.convergence import (
    MinimizeResult,
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
    result = minimize(LOSS, jnp.zeros(5), OPT, max_steps=MAX_STEPS, tol=1e-13)
    w, steps, _, converged = result
    want, _ = ridge(X, Y, 2.0, fit_intercept=False)
    assert isinstance(result, MinimizeResult) and result.params is w
    assert 0 < int(steps) < MAX_STEPS and converged.dtype == bool and bool(converged)
    np.testing.assert_allclose(w, want, rtol=1e-8)


@pytest.mark.parametrize("ord", [1, 2, np.inf])
def test_minimize_stops_at_the_first_step_below_tol_in_the_chosen_norm(ord):
    tol = 1e-6
    _, steps, history, converged = minimize(
        LOSS, jnp.zeros(5), OPT, max_steps=MAX_STEPS, tol=tol, ord=ord
    )
    n = int(steps)
    assert bool(converged)
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
    loose, tight = run(1e-2), run(1e-6)
    assert 0 < int(loose.num_steps) < int(tight.num_steps) < MAX_STEPS
    assert bool(loose.converged) and bool(tight.converged)


def _count_compiles():
    """A list that grows by one per XLA compilation while ``recording[0]`` is True."""
    compiles: list[float] = []
    recording = [True]

    def listener(event: str, duration: float, **_: Any) -> None:
        if recording[0] and event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    return compiles, recording, listener


def test_minimize_with_a_new_tolerance_reuses_the_compiled_loop():
    w0 = jnp.zeros(5)
    # Tolerances no other test uses: a static tol would have to compile the second call.
    first = minimize(LOSS, w0, OPT, max_steps=MAX_STEPS, tol=3e-3)
    compiles, recording, listener = _count_compiles()
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        second = minimize(LOSS, w0, OPT, max_steps=MAX_STEPS, tol=3e-7)
    finally:
        recording[0] = False
        jax.monitoring.unregister_event_duration_listener(listener)
    assert not compiles, f"a new tol compiled {len(compiles)} programs"
    assert int(first.num_steps) < int(second.num_steps)  # the new tol was used


def test_minimize_out_of_steps_is_not_converged():
    w, steps, history, converged = minimize(LOSS, jnp.zeros(5), OPT, max_steps=5, tol=1e-13)
    assert int(steps) == 5 and not bool(converged)
    assert np.all(np.isfinite(history["step_norm"]))


def _to_ones(w):
    """½‖w - 1‖²."""
    return 0.5 * jnp.sum((w - 1.0) ** 2)


def _nan_loss(w):
    """The gradient of ``_to_ones`` (finite) with a NaN value: the loss itself is broken."""
    return _to_ones(w) + jnp.log(-jnp.ones((), w.dtype))


_BROKEN_RUNS = {
    # lr 1e300: step 1 lands near 1e300, step 2 overflows to inf (then NaN would follow).
    "diverging": (_to_ones, optim.sgd(1e300), jnp.zeros(5), 1e-6, 2),
    # NaN parameters from the start: NaN loss and gradient at step 1, whatever the tol.
    "nan_start": (LOSS, OPT, jnp.array([0.0, np.nan, 0.0, 0.0, 0.0]), 1e30, 1),
    # Only the loss value is NaN: the finite step 1 passes the norm test at this tol, but
    # the run is still broken.
    "nan_loss": (_nan_loss, optim.sgd(0.5), jnp.zeros(5), 1e30, 1),
}


@pytest.mark.parametrize("name", list(_BROKEN_RUNS))
def test_minimize_stops_at_the_first_broken_step_and_is_not_converged(name):
    loss, opt, w0, tol, broken_at = _BROKEN_RUNS[name]
    _, steps, history, converged = minimize(loss, w0, opt, max_steps=MAX_STEPS, tol=tol)
    assert int(steps) == broken_at, "did not stop at the first non-finite step"
    assert not bool(converged)
    step = np.asarray(history["step_norm"])
    assert np.all(np.isfinite(step[: broken_at - 1])) and np.all(np.isinf(step[broken_at:]))


def test_has_converged_at_exact_equality_and_at_tol_zero():
    """``<=``: a step of exactly ``tol·max(‖w‖, 1)`` has converged, and ``tol=0`` after an
    exactly zero step (both False with ``<``)."""

    @jax.jit
    def converged(w0, w1, tol):
        return [
            has_converged(convergence_update(convergence_init(w0, ord=o), w1, w1, ord=o), tol=tol)
            for o in (2, 1, np.inf)
        ]

    # ‖Δw‖ = 2, ‖w‖ = 4 in every ord: 2 <= 0.5·4 exactly, but not 2 <= 0.25·4.
    w0, w1 = jnp.array([2.0, 0.0]), jnp.array([4.0, 0.0])
    assert all(map(bool, converged(w0, w1, 0.5)))
    assert not any(map(bool, converged(w0, w1, 0.25)))
    # ‖w‖ < 1, so the scale is 1: ‖Δw‖ = 0.25 <= 0.25·1.
    assert all(map(bool, converged(w0 / 8, w1 / 8, 0.25)))
    # An exactly zero step meets tol = 0 (also at w = 0).
    assert all(map(bool, converged(w1, w1, 0.0)))
    assert all(map(bool, converged(jnp.zeros(2), jnp.zeros(2), 0.0)))


def test_has_converged_traces_tol_and_compiles_once():
    traces = []

    @jax.jit
    def check(w0, w1, tol):
        traces.append(tol)
        state = convergence_update(convergence_init(w0), w1, w1)
        return has_converged(state, tol=tol)

    w0, w1 = jnp.array([2.0, 0.0]), jnp.array([4.0, 0.0])  # ‖Δw‖ / ‖w‖ = 1/2
    assert bool(check(w0, w1, 0.5)) and not bool(check(w0, w1, 0.4))
    assert len(traces) == 1 and isinstance(traces[0], jax.core.Tracer)


@pytest.mark.parametrize(
    "step, norm",
    [
        (np.nan, 1.0),
        (0.0, np.nan),
        (np.inf, 1.0),
        (0.5, np.inf),  # an infinite ‖w‖ makes every finite step look relatively small
        (np.inf, np.inf),
        (np.nan, np.nan),
    ],
)
@pytest.mark.parametrize("tol", [0.0, 1e-6, 1e30, np.inf])
def test_has_converged_is_false_when_a_norm_is_not_finite(step, norm, tol):
    state = convergence_update(convergence_init(jnp.zeros(2)), jnp.ones(2), jnp.ones(2))
    state = state._replace(step_norm=jnp.asarray(step), param_norm=jnp.asarray(norm))
    assert not bool(jax.jit(functools.partial(has_converged, tol=tol))(state))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_update_is_never_converged_and_its_norms_are_not_hidden(bad):
    """NaN in, NaN out: the step, relative step and parameter norm of a NaN update are NaN
    (never 0 or inf), and the state is not converged whatever the tolerance."""

    @jax.jit
    def update(w0, w1, tol):
        state = convergence_update(convergence_init(w0), w1, w1)
        return state, has_converged(state, tol=tol)

    state, converged = update(jnp.array([3.0, 4.0]), jnp.array([3.0, bad]), jnp.inf)
    assert not bool(converged)
    norms = [state.step_norm, state.relative_step, state.param_norm]
    if np.isnan(bad):
        assert all(np.isnan(v) for v in norms), norms
    else:  # ‖Δw‖ = ‖w‖ = inf: inf/inf is NaN, not 0
        assert np.isinf(norms[0]) and np.isnan(norms[1]) and np.isinf(norms[2])


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(max_steps=0, tol=1e-6), "max_steps"), (dict(max_steps=10, tol=-1.0), "tol")],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        minimize(jnp.sum, jnp.zeros(2), optim.sgd(0.1), **kwargs)
