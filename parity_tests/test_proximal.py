"""Parity of jaxreg.proximal with torch_ref.proximal: 50-step training trajectories.

The same models, trajectories and shared compilation as parity_tests/test_optim.py
(:class:`~parity_tests.test_optim.Suite`), with the proximal optimizers' table: an L1,
elastic-net or group-lasso prox step after ``sgd`` with momentum (``optax.chain`` on the
JAX side; ``torch_ref.optim.sgd`` then the ``ProximalStep`` optimizer on the torch side),
and ISTA (``proximal_sgd``). Every parameter after every step is compared; no gradients
of the trajectory (``grad_argnums=()``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_ref.optim as topt
import torch_ref.proximal as tprox
from jaxreg import optim, proximal
from parity_tests.harness import ParityCase, check_case
from parity_tests.test_optim import MODELS, Family, Suite, check_generated

# --------------------------------------------------------------------------- the table


def _sgd_then(prox: str):
    """``sgd`` with momentum ``hp[1]`` followed by a prox step of strength ``hp[2]``."""

    def build(side, p, lr, h, mask):
        opt, prox_module = side
        extra = {"l1_ratio": h[3]} if prox == "elastic_net_proximal" else {}
        if p is None:
            step = opt.sgd(lr, momentum=h[1])
            return optax.chain(step, getattr(prox_module, prox)(h[2], lr, mask=mask, **extra))
        return [
            opt.sgd(p, lr, momentum=h[1]),
            getattr(prox_module, prox)(p, h[2], lr, mask=mask, **extra),
        ]

    return build


def _proximal_sgd(side, p, lr, h, mask):
    args = (p, lr) if p is not None else (lr,)
    return side[1].proximal_sgd(*args, l1=h[1], l2=h[2], mask=mask)


FAMILIES = {
    ("l1_proximal", False): Family("l1_proximal", False, _sgd_then("l1_proximal")),
    ("elastic_net_proximal", False): Family(
        "elastic_net_proximal", False, _sgd_then("elastic_net_proximal")
    ),
    ("group_lasso_proximal", False): Family(
        "group_lasso_proximal", False, _sgd_then("group_lasso_proximal")
    ),
    ("proximal_sgd", False): Family("proximal_sgd", False, _proximal_sgd),
    ("proximal_sgd", True): Family("proximal_sgd", True, _proximal_sgd),
}
# The families run on each model (every family costs compile time in that model's program):
# all but group lasso on the regression, where it would be a single group; on the MLP,
# group lasso (groups of kernel rows) and ISTA.
MODEL_FAMILIES = {
    "linear": [k for k in FAMILIES if k[0] != "group_lasso_proximal"],
    "mlp": [("group_lasso_proximal", False), ("proximal_sgd", False)],
}
SUITE = Suite(
    "proximal",
    FAMILIES,
    {
        "l1_proximal": ("lr", "momentum", "strength"),
        "elastic_net_proximal": ("lr", "momentum", "strength", "l1_ratio"),
        "group_lasso_proximal": ("lr", "momentum", "strength"),
        "proximal_sgd": ("lr", "l1", "l2"),
    },
    MODEL_FAMILIES,
    ((optim, proximal), (topt, tprox)),
)

# --------------------------------------------------------------------------- cases


def _model_cases(model: str) -> list[ParityCase | None]:
    lr, case = MODELS[model].lr, SUITE.case
    return [
        case(model, "l1_proximal", {"lr": lr, "momentum": 0.5, "strength": 0.5}),
        case(
            model,
            "elastic_net_proximal",
            {"lr": lr, "momentum": 0.5, "strength": 0.5, "l1_ratio": 0.7},
        ),
        case(
            model, "group_lasso_proximal", {"lr": lr, "momentum": 0.5, "strength": 0.3}, mask=True
        ),
        case(model, "proximal_sgd", {"lr": lr, "l1": 0.3}),
        case(model, "proximal_sgd", {"lr": lr, "l1": 0.05, "l2": 0.1}, mask=True, scheduled=True),
    ]


CASES = [c for model in MODELS for c in _model_cases(model) if c is not None]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


@settings(max_examples=10, deadline=None)
@given(index=st.integers(0, len(CASES) - 1), seed=st.integers(0, 2**16), scale=st.floats(0.1, 2.0))
def test_trajectories_on_generated_data(index, seed, scale):
    """Any registered case, on fresh data and initial parameters."""
    check_generated(CASES[index], seed, scale)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(
    "make",
    [
        lambda p: tprox.l1_proximal(p, -1.0, 0.1),
        lambda p: tprox.elastic_net_proximal(p, 1.0, 0.1, l1_ratio=1.5),
        lambda p: tprox.proximal_sgd(p, 0.1, l2=-1.0),
    ],
)
def test_torch_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make([torch.zeros(2, requires_grad=True)])


def test_prox_steps_give_the_same_exact_zeros():
    z = np.array([0.05, -0.05, 0.3, -2.0])
    t = torch.from_numpy(z.copy())
    tprox.l1_proximal([t], 1.0, 0.1).step()
    opt = proximal.l1_proximal(1.0, 0.1)
    params = jnp.asarray(z)
    updates, _ = opt.update(jnp.zeros(4), opt.init(params), params)
    got = np.asarray(optax.apply_updates(params, updates))
    np.testing.assert_array_equal(got == 0, t.numpy() == 0)
    np.testing.assert_array_equal(got == 0, [True, True, False, False])


def test_group_prox_nan_takes_the_computing_branch_on_both_sides():
    """A NaN in a group makes the whole group NaN (never a zeroed group); small groups
    still become exact zeros."""
    z = np.array([[np.nan, 1.0], [3.0, 4.0], [0.01, 0.0]])
    t = torch.from_numpy(z.copy())
    tprox.group_lasso_proximal([t], 1.0, 0.1).step()
    opt = proximal.group_lasso_proximal(1.0, 0.1)
    params = jnp.asarray(z)
    updates, _ = opt.update(jnp.zeros_like(params), opt.init(params), params)
    got = np.asarray(optax.apply_updates(params, updates))
    for out in (got, t.numpy()):
        assert np.all(np.isnan(out[0])) and np.all(out[2] == 0) and np.all(np.isfinite(out[1]))
    np.testing.assert_allclose(got[1], t.numpy()[1], rtol=1e-15)
