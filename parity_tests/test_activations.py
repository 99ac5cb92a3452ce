"""Parity of :mod:`jaxreg.activations` with :mod:`torch_ref.activations` and raw ``torch``.

Values and gradients (VJPs) in float32 and float64 on a grid through 0 that
holds ``-0.0``, ``+0.0`` and ``±30``; the derivative *at* ±0 entry by entry
(relu 0, leaky_relu/prelu the slope, elu ``alpha``); parameter gradients of
``prelu`` (channels last, and on torch's dim 1 with ``axis=1``) and ``swish``;
the gated units along both axes; generated inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxreg import activations as ja
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import activations as ta

#: A grid through 0: both signed zeros, tiny and large magnitudes, ±30.
GRID = np.concatenate(
    [[-30.0, -0.0, 0.0, 30.0, -1e-8, 1e-8, -15.0, 15.0], np.linspace(-6.0, 6.0, 24)]
)  # 32 points, so it reshapes to (8, 4) for the per-channel slopes
SLOPES = np.array([0.25, -0.5, 0.0, 1.5])


def grid(rng: np.random.Generator) -> tuple[np.ndarray]:
    return (GRID.copy(),)


def gated(rng: np.random.Generator) -> tuple[np.ndarray]:
    """``(32, 2)``: each row pairs a grid point with a grid point for the gate."""
    return (np.stack([GRID, rng.permutation(GRID)], axis=-1),)


def gated_axis0(rng: np.random.Generator) -> tuple[np.ndarray]:
    return (np.stack([GRID[:16], rng.permutation(GRID)[:16]], axis=0).reshape(32, 1),)


def prelu_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return GRID.reshape(8, 4), SLOPES.copy()


def prelu_scalar_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return GRID.reshape(8, 4), np.array(0.25)


def prelu_channels_first(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """torch's layout ``[N, C, L]``: the grid as ``[2, 4, 4]``, one slope per channel."""
    return GRID.reshape(2, 4, 4), SLOPES.copy()


def swish_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return GRID.copy(), np.array(1.7)


def jax_all(x, pair, rows, w) -> dict:
    """Every jaxreg activation on the grid (``rows``: ``[N, C]``, channels last = torch's dim 1)."""
    return {
        "sigmoid": ja.sigmoid(x),
        "tanh": ja.tanh(x),
        "relu": ja.relu(x),
        "leaky_relu": ja.leaky_relu(x, 0.2),
        "prelu": ja.prelu(rows, w),
        "elu": ja.elu(x, 0.5),
        "glu": ja.glu(pair),
        "silu": ja.silu(x),
        "swish[beta=1]": ja.swish(x, 1.0),
        "swiglu": ja.swiglu(pair),
    }


def torch_all(x, pair, rows, w) -> dict:
    """The same with torch's own functions (swiglu has none: ``silu(a) * b``)."""
    return {
        "sigmoid": torch.sigmoid(x),
        "tanh": torch.tanh(x),
        "relu": F.relu(x),
        "leaky_relu": F.leaky_relu(x, 0.2),
        "prelu": F.prelu(rows, w),
        "elu": F.elu(x, 0.5),
        "glu": F.glu(pair),
        "silu": F.silu(x),
        "swish[beta=1]": F.silu(x),
        "swiglu": F.silu(pair[:, :1]) * pair[:, 1:],
    }


def elementwise(name: str, jax_fn, torch_fn, reference: str = "torch_ref") -> ParityCase:
    return ParityCase(f"activations.{name}", jax_fn, torch_fn, grid, reference=reference)


CASES = [
    # --- against torch_ref
    elementwise("sigmoid", ja.sigmoid, ta.sigmoid),
    elementwise("tanh", ja.tanh, ta.tanh),
    elementwise("relu", ja.relu, ta.relu),
    elementwise("leaky_relu", ja.leaky_relu, ta.leaky_relu),
    elementwise(
        "leaky_relu[slope=0.2]", lambda x: ja.leaky_relu(x, 0.2), lambda x: ta.leaky_relu(x, 0.2)
    ),
    ParityCase("activations.prelu", ja.prelu, ta.prelu, prelu_inputs, grad_argnums=(0, 1)),
    ParityCase(
        "activations.prelu[scalar]", ja.prelu, ta.prelu, prelu_scalar_inputs, grad_argnums=(0, 1)
    ),
    ParityCase(
        "activations.prelu[axis=1]",
        lambda x, w: ja.prelu(x, w, axis=1),
        lambda x, w: ta.prelu(x, w, axis=1),
        prelu_channels_first,
        grad_argnums=(0, 1),
    ),
    ParityCase(
        "activations.prelu[axis=1][F.prelu]",
        lambda x, w: ja.prelu(x, w, axis=1),
        F.prelu,
        prelu_channels_first,
        grad_argnums=(0, 1),
        reference="torch",
    ),
    elementwise("elu", ja.elu, ta.elu),
    elementwise("elu[alpha=0.5]", lambda x: ja.elu(x, 0.5), lambda x: ta.elu(x, 0.5)),
    ParityCase("activations.glu", ja.glu, ta.glu, gated),
    ParityCase(
        "activations.glu[axis=0]", lambda x: ja.glu(x, 0), lambda x: ta.glu(x, 0), gated_axis0
    ),
    ParityCase("activations.swish", ja.swish, ta.swish, swish_inputs, grad_argnums=(0, 1)),
    elementwise("silu", ja.silu, ta.silu),
    ParityCase("activations.swiglu", ja.swiglu, ta.swiglu, gated),
    ParityCase(
        "activations.swiglu[axis=0]",
        lambda x: ja.swiglu(x, 0),
        lambda x: ta.swiglu(x, 0),
        gated_axis0,
    ),
    # --- against raw torch, every function at once (one row; pytree outputs)
    ParityCase(
        "activations.*[torch.nn.functional]",
        jax_all,
        torch_all,
        lambda rng: (GRID.copy(), *gated(rng), *prelu_inputs(rng)),
        grad_argnums=(0, 1, 2, 3),
        reference="torch",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.name}-{c.reference}")
def test_case(case: ParityCase) -> None:
    check_case(case)


# --------------------------------------------------------------------------- derivative at ±0

#: (name, jaxreg function, raw torch function, torch's derivative at 0)
AT_ZERO = [
    ("sigmoid", ja.sigmoid, torch.sigmoid, 0.25),
    ("tanh", ja.tanh, torch.tanh, 1.0),
    ("relu", ja.relu, F.relu, 0.0),
    ("leaky_relu", ja.leaky_relu, F.leaky_relu, 0.01),
    ("leaky_relu[0.3]", lambda x: ja.leaky_relu(x, 0.3), lambda x: F.leaky_relu(x, 0.3), 0.3),
    ("prelu", lambda x: ja.prelu(x, 0.25), lambda x: F.prelu(x, torch.tensor([0.25]).to(x)), 0.25),
    ("elu", ja.elu, F.elu, 1.0),
    ("elu[2]", lambda x: ja.elu(x, 2.0), lambda x: F.elu(x, 2.0), 2.0),
    ("swish[2]", lambda x: ja.swish(x, 2.0), lambda x: x * torch.sigmoid(2.0 * x), 0.5),
    ("silu", ja.silu, F.silu, 0.5),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_derivative_at_signed_zeros_equals_torch(dtype: str) -> None:
    """Entry by entry, not norm-wise: the kink's derivative is torch's, for +0 and -0."""
    zeros = np.array([0.0, -0.0], dtype=dtype)

    @jax.jit
    def jax_grads(z: jax.Array) -> dict[str, jax.Array]:
        return {name: jax.vmap(jax.grad(fn))(z) for name, fn, _, _ in AT_ZERO}

    got = jax_grads(jnp.asarray(zeros))
    for name, _, torch_fn, expected in AT_ZERO:
        t = torch.from_numpy(zeros).requires_grad_(True)
        (torch_grad,) = torch.autograd.grad(torch_fn(t).sum(), t)
        np.testing.assert_array_equal(np.asarray(got[name]), torch_grad.numpy(), err_msg=name)
        np.testing.assert_allclose(np.asarray(got[name]), expected, rtol=1e-7, err_msg=name)


def test_prelu_per_channel_derivative_at_zero_is_each_slope() -> None:
    x = np.zeros((3, 4))
    jax_grad = jax.grad(lambda x: jnp.sum(ja.prelu(x, jnp.asarray(SLOPES))))(jnp.asarray(x))
    t = torch.from_numpy(x).requires_grad_(True)
    (torch_grad,) = torch.autograd.grad(ta.prelu(t, torch.from_numpy(SLOPES)).sum(), t)
    np.testing.assert_array_equal(np.asarray(jax_grad), torch_grad.numpy())
    np.testing.assert_array_equal(np.asarray(jax_grad), np.broadcast_to(SLOPES, (3, 4)))


# --------------------------------------------------------------------------- generated inputs

floats = st.floats(-40.0, 40.0, allow_nan=False, allow_subnormal=False)
ELEMENTWISE = {
    "sigmoid": (ja.sigmoid, ta.sigmoid),
    "tanh": (ja.tanh, ta.tanh),
    "leaky_relu": (ja.leaky_relu, ta.leaky_relu),
    "elu": (ja.elu, ta.elu),
    "silu": (ja.silu, ta.silu),
}


@settings(max_examples=6, deadline=None)
@given(
    x=hnp.arrays(np.float64, (3, 4), elements=floats),  # one shape: one compile per function
    name=st.sampled_from(sorted(ELEMENTWISE)),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_generated_elementwise(x: np.ndarray, name: str, dtype: str) -> None:
    jax_fn, torch_fn = ELEMENTWISE[name]
    assert_parity(compare(jax_fn, torch_fn, (x,), dtype=dtype, name=f"activations.{name}"))


@settings(max_examples=5, deadline=None)
@given(
    x=hnp.arrays(np.float64, (2, 2), elements=floats),
    axis=st.sampled_from([0, -1]),
    name=st.sampled_from(["glu", "swiglu"]),
)
def test_generated_gated(x: np.ndarray, axis: int, name: str) -> None:
    x = np.concatenate([x, -x[::-1] * 0.5], axis=axis)  # an even size along `axis`
    jax_fn, torch_fn = getattr(ja, name), getattr(ta, name)
    result = compare(lambda v: jax_fn(v, axis), lambda v: torch_fn(v, axis), (x,))
    assert_parity(result)


# --------------------------------------------------------------------------- errors, both sides


@pytest.mark.parametrize("name", ["glu", "swiglu"])
def test_odd_split_raises_on_both_sides(name: str) -> None:
    with pytest.raises(ValueError, match="even size"):
        getattr(ja, name)(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="even size"):
        getattr(ta, name)(torch.ones(2, 3))
