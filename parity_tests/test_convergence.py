"""Parity of jaxreg.convergence with torch_ref.convergence: norms of a step, and whole runs."""

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


def _update(module, w0, b0, w1, b1, g) -> tuple:
    """One update from ``w0`` to ``w1`` with gradient ``g`` (a dict tree), in every ``ORDS``."""
    out = ()
    for ord in ORDS:
        state = module.convergence_init(_tree(w0, b0), ord=ord)
        out += _fields(module.convergence_update(state, _tree(w1, b1), _tree(g, b1), ord=ord))
    return out


def _update_inputs(rng):
    w0 = rng.standard_normal((3, 4))
    b0 = rng.standard_normal(4)
    return w0, b0, w0 + 0.1 * rng.standard_normal((3, 4)), b0, rng.standard_normal((3, 4))


UPDATE = ParityCase(
    "convergence.convergence_update[l2,l1,linf]",
    functools.partial(_update, conv),
    single_threaded(functools.partial(_update, tconv)),
    _update_inputs,
    grad_argnums=(2, 4),
)


def _init(module, w, b):
    state = module.convergence_init(_tree(w, b), ord=2)
    return state.param_norm, state.step_norm


def _converged(module, w0, b0, w1, b1, g):
    """``has_converged`` after one update, at a tolerance either side of the step."""
    state = module.convergence_init(_tree(w0, b0))
    state = module.convergence_update(state, _tree(w1, b1), _tree(g, b1))
    return tuple(module.has_converged(state, tol=tol) for tol in (1e-3, 1e-2, 1e-1, 1.0))


INIT = ParityCase(
    "convergence.convergence_init",
    functools.partial(_init, conv),
    functools.partial(_init, tconv),
    lambda rng: _update_inputs(rng)[:2],
)
CONVERGED = ParityCase(
    "convergence.has_converged",
    functools.partial(_converged, conv),
    functools.partial(_converged, tconv),
    _update_inputs,
    grad_argnums=(),
)


def _jax_loss(w, X, y, lam):
    return 0.5 * jnp.mean((X @ w - y) ** 2) + 0.5 * lam * jnp.sum(w * w)


def _torch_loss(w, X, y, lam):
    return 0.5 * torch.mean((X @ w - y) ** 2) + 0.5 * lam * torch.sum(w * w)


def _minimize_case(tag: str, ord, *, momentum: float, tol: float, lr: float = 0.1) -> ParityCase:
    """A ridge regression run to norm convergence with ``sgd`` (same steps on both sides)."""
    kw = dict(max_steps=300, tol=tol, ord=ord)

    def jax_fn(w0, X, y):
        loss = functools.partial(_jax_loss, X=X, y=y, lam=0.1)
        return conv.minimize(loss, w0, optim.sgd(lr, momentum=momentum), **kw)

    @single_threaded
    def torch_fn(w0, X, y):
        w = w0.detach().clone().requires_grad_(True)
        loss = functools.partial(_torch_loss, X=X, y=y, lam=0.1)
        w, n, history = tconv.minimize(
            loss, w, lambda p: topt.sgd([p], lr, momentum=momentum), **kw
        )
        return w.detach(), n, history

    def inputs(rng):
        X = rng.standard_normal((30, 4))
        return np.zeros(4), X, X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.standard_normal(30)

    return ParityCase(f"convergence.minimize[{tag}]", jax_fn, torch_fn, inputs, grad_argnums=())


MINIMIZE = _minimize_case("sgd,l2", 2, momentum=0.0, tol=1e-5)
CASES = [
    INIT,
    UPDATE,
    CONVERGED,
    MINIMIZE,
    # Too slow to converge in max_steps=300: every entry of the history is finite.
    _minimize_case("sgd,momentum,l1,max_steps", 1, momentum=0.5, tol=1e-8, lr=0.002),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


# Values only: the harness compiles a fresh VJP per call, and CASES compare gradients.
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_update_on_generated_steps(seed, scale):
    inputs = [scale * a for a in UPDATE.inputs(np.random.default_rng(seed))]
    assert_parity(compare(UPDATE.jax_fn, UPDATE.torch_fn, inputs, grad_argnums=()))


def test_zero_step_and_zero_params_are_finite_on_both_sides():
    """``Δw = 0`` with ``w = 0``: relative step 0 (not 0/0), and no NaN in the gradient."""
    zeros = np.zeros((3, 4)), np.zeros(4), np.zeros((3, 4)), np.zeros(4), np.zeros((3, 4))
    assert_parity(compare(UPDATE.jax_fn, UPDATE.torch_fn, zeros, grad_argnums=(2, 4)))
    state = conv.convergence_update(conv.convergence_init(jnp.zeros(3)), jnp.zeros(3), jnp.ones(3))
    assert float(state.relative_step) == 0.0
    assert bool(conv.has_converged(state))


def test_history_is_inf_after_the_last_step_on_both_sides():
    inputs = MINIMIZE.inputs(np.random.default_rng(3))
    assert_parity(compare(MINIMIZE.jax_fn, MINIMIZE.torch_fn, inputs, grad_argnums=()))
    # Parity includes the positions of the infinities, so one side suffices from here.
    _, n, history = MINIMIZE.torch_fn(*(torch.from_numpy(a) for a in inputs))
    assert 0 < int(n) < 300
    assert torch.all(torch.isinf(history["step_norm"][int(n) :]))
    assert torch.all(torch.isfinite(history["step_norm"][: int(n)]))
