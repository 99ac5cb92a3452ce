"""Parity of jaxreg.convergence with torch_ref.convergence: norms of a step, whole runs, and
broken (NaN or inf) runs that stop at the same step, not converged, on both sides."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_ref.convergence as tconv
import torch_ref.optim as topt
from jaxreg import convergence as conv
from jaxreg import optim
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from parity_tests.test_optim import single_threaded

FIELDS = ("step_norm", "relative_step", "grad_norm", "param_norm")


def _fields(state) -> tuple:
    return tuple(getattr(state, k) for k in FIELDS)


ORDS = (2, 1, np.inf)


def _tree(w, b):
    return {"w": w, "b": b}


def _step(module, w0, b0, w1, b1, g) -> tuple:
    """The initial state and one update (``w0 → w1`` with gradient ``g``) in every ``ORDS``."""
    out = ()
    for ord in ORDS:
        state = module.convergence_init(_tree(w0, b0), ord=ord)
        out += (state.param_norm, state.step_norm)  # inf before the first step
        out += _fields(module.convergence_update(state, _tree(w1, b1), _tree(g, b1), ord=ord))
    return out


def _step_inputs(rng):
    w0 = rng.standard_normal((3, 4))
    b0 = rng.standard_normal(4)
    return w0, b0, w0 + 0.1 * rng.standard_normal((3, 4)), b0, rng.standard_normal((3, 4))


def _step_case(name: str) -> ParityCase:
    # Both rows share the function objects, hence the harness' compiled program.
    return ParityCase(name, STEP[0], STEP[1], _step_inputs, grad_argnums=(0, 2, 4))


STEP = (functools.partial(_step, conv), single_threaded(functools.partial(_step, tconv)))
INIT = _step_case("convergence.convergence_init")
UPDATE = _step_case("convergence.convergence_update[l2,l1,linf]")


def _converged(module, w0, b0, w1, b1, g):
    """``has_converged`` after one update, at tolerances on either side of the step."""
    state = module.convergence_init(_tree(w0, b0))
    state = module.convergence_update(state, _tree(w1, b1), _tree(g, b1))
    return tuple(module.has_converged(state, tol=tol) for tol in (1e-3, 1e-2, 1e-1, 1.0))


CONVERGED = ParityCase(
    "convergence.has_converged",
    functools.partial(_converged, conv),
    functools.partial(_converged, tconv),
    _step_inputs,
    grad_argnums=(),
)


def _jax_loss(w, X, y, lam):
    return 0.5 * jnp.mean((X @ w - y) ** 2) + 0.5 * lam * jnp.sum(w * w)


def _torch_loss(w, X, y, lam):
    return 0.5 * torch.mean((X @ w - y) ** 2) + 0.5 * lam * torch.sum(w * w)


# Two runs of a ridge regression with sgd: one converging in the l2 norm, one too slow to
# converge within max_steps (momentum, l1 norm, every history entry finite).
MAX_STEPS = 160
RUNS = (
    dict(ord=2, momentum=0.0, tol=1e-5, lr=0.1),
    dict(ord=1, momentum=0.5, tol=1e-8, lr=0.002),
)


def _jax_runs(w0, X, y):
    loss = functools.partial(_jax_loss, X=X, y=y, lam=0.1)
    return [
        conv.minimize(
            loss,
            w0,
            optim.sgd(r["lr"], momentum=r["momentum"]),
            max_steps=MAX_STEPS,
            tol=r["tol"],
            ord=r["ord"],
        )
        for r in RUNS
    ]


@single_threaded
def _torch_runs(w0, X, y):
    loss = functools.partial(_torch_loss, X=X, y=y, lam=0.1)
    out = []
    for r in RUNS:
        w = w0.detach().clone().requires_grad_(True)
        opt = topt.sgd([w], r["lr"], momentum=r["momentum"])
        result = tconv.minimize(loss, w, opt, max_steps=MAX_STEPS, tol=r["tol"], ord=r["ord"])
        out.append(result._replace(params=result.params.detach()))
    return out


def _runs_inputs(rng):
    X = rng.standard_normal((30, 4))
    return np.zeros(4), X, X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.standard_normal(30)


MINIMIZE = ParityCase(
    "convergence.minimize[sgd,l2|momentum,l1,max_steps]",
    _jax_runs,
    _torch_runs,
    _runs_inputs,
    grad_argnums=(),
)
CASES = [INIT, UPDATE, CONVERGED, MINIMIZE]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_step_on_generated_inputs(seed, scale):
    """Random steps over six orders of magnitude (the compiled case is reused)."""
    inputs = [scale * a for a in _step_inputs(np.random.default_rng(seed))]
    assert_parity(compare(*STEP, inputs, grad_argnums=UPDATE.grad_argnums))


def test_zero_step_and_zero_params_are_finite_on_both_sides():
    """``Δw = 0`` with ``w = 0``: relative step 0 (not 0/0), and no NaN in the gradient."""
    zeros = [np.zeros((3, 4)), np.zeros(4), np.zeros((3, 4)), np.zeros(4), np.zeros((3, 4))]
    assert_parity(compare(*STEP, zeros, grad_argnums=UPDATE.grad_argnums))  # NaN fails it
    # jaxreg equals torch (above), so the values can be read on the torch side.
    out = STEP[1](*(torch.from_numpy(a) for a in zeros))
    relative_steps = out[3::6]  # per ord: param_norm, inf, step, relative step, ...
    assert all(float(r) == 0.0 for r in relative_steps)


def test_history_is_inf_after_the_last_step_on_both_sides():
    inputs = MINIMIZE.inputs(np.random.default_rng(3))
    assert_parity(compare(MINIMIZE.jax_fn, MINIMIZE.torch_fn, inputs, grad_argnums=()))
    # Parity includes the positions of the infinities, so one side suffices from here.
    (_, n, history, converged), (_, n_slow, history_slow, converged_slow) = MINIMIZE.torch_fn(
        *(torch.from_numpy(a) for a in inputs)
    )
    assert 0 < int(n) < MAX_STEPS and int(n_slow) == MAX_STEPS
    assert bool(converged) and not bool(converged_slow)
    assert torch.all(torch.isinf(history["step_norm"][int(n) :]))
    assert torch.all(torch.isfinite(history["step_norm"][: int(n)]))
    assert all(torch.all(torch.isfinite(h)) for h in history_slow.values())


def _jax_to_ones(w):
    return 0.5 * jnp.sum((w - 1.0) ** 2)


def _torch_to_ones(w):
    return 0.5 * torch.sum((w - 1.0) ** 2)


def _jax_nan_loss(w):
    return _jax_to_ones(w) + jnp.log(-jnp.ones((), w.dtype))


def _torch_nan_loss(w):
    return _torch_to_ones(w) + torch.log(-torch.ones((), dtype=w.dtype))


# (jax loss, torch loss, lr, tol, the step that breaks): lr 1e300 overflows at step 2; a
# NaN loss value (finite gradient, steps that pass tol=1e30) breaks step 1.
BROKEN = {
    "diverging": (_jax_to_ones, _torch_to_ones, 1e300, 1e-6, 2),
    "nan_loss": (_jax_nan_loss, _torch_nan_loss, 0.5, 1e30, 1),
}


@pytest.mark.parametrize("name", list(BROKEN))
@single_threaded
def test_a_broken_run_stops_at_the_same_step_not_converged_on_both_sides(name):
    jax_loss, torch_loss, lr, tol, broken_at = BROKEN[name]
    got = conv.minimize(jax_loss, jnp.zeros(3), optim.sgd(lr), max_steps=50, tol=tol)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    want = tconv.minimize(torch_loss, w, topt.sgd([w], lr), max_steps=50, tol=tol)
    assert type(got).__name__ == type(want).__name__ == "MinimizeResult"
    assert int(got.num_steps) == int(want.num_steps) == broken_at
    assert not bool(got.converged) and not bool(want.converged)
    for k in FIELDS:  # NaN and inf at the same places (the harness refuses any NaN)
        np.testing.assert_allclose(got.history[k], want.history[k].numpy(), rtol=1e-12)


@pytest.mark.parametrize("step, norm", [(np.nan, 1.0), (1.0, np.nan), (np.inf, 2.0), (0.5, np.inf)])
def test_has_converged_is_false_on_non_finite_norms_on_both_sides(step, norm):
    for module, as_array in ((conv, jnp.asarray), (tconv, torch.tensor)):
        state = module.convergence_init(as_array(np.zeros(2)))
        state = state._replace(step_norm=as_array(step), param_norm=as_array(norm))
        assert not bool(module.has_converged(state, tol=np.inf)), module.__name__
