"""jaxreg.init: fans, the exact distributions (KS tests), the protocol, transforms, errors,
and seed 001's claim that Xavier init keeps the signal's variance through a deep tanh net."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxreg import init as ji
from parity_tests._shared import (
    DENSE,
    INITS,
    LAYOUTS,
    assert_distribution,
    expected_scale,
)

# --------------------------------------------------------------------------- fans


@pytest.mark.parametrize(
    "shape, axes, expected",
    [
        ((3, 5), {}, (3, 5)),
        ((5, 3), {"in_axis": -1, "out_axis": -2}, (3, 5)),  # torch Linear (out, in)
        ((3, 3, 16, 32), {}, (144, 288)),  # flax conv (kh, kw, in, out)
        ((32, 16, 3, 3), {"in_axis": 1, "out_axis": 0}, (144, 288)),  # torch conv
        ((7, 2, 4, 5, 6), {"in_axis": 0, "out_axis": 3}, (7 * 48, 5 * 48)),
        ((4, 0), {}, (4, 0)),
    ],
)
def test_fans(shape, axes, expected) -> None:
    assert ji.fan_in_and_fan_out(shape, **axes) == expected


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_fans_are_the_axis_times_the_receptive_field(data) -> None:
    shape = data.draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
    in_axis, out_axis = data.draw(st.permutations(range(len(shape))))[:2]
    rest = math.prod(d for k, d in enumerate(shape) if k not in (in_axis, out_axis))
    expected = (shape[in_axis] * rest, shape[out_axis] * rest)
    assert ji.fan_in_and_fan_out(shape, in_axis=in_axis, out_axis=out_axis) == expected
    negative = {"in_axis": in_axis - len(shape), "out_axis": out_axis - len(shape)}
    assert ji.fan_in_and_fan_out(shape, **negative) == expected


@pytest.mark.parametrize(
    "shape, axes, match",
    [
        ((5,), {}, "at least 2 axes"),
        ((), {}, "at least 2 axes"),
        ((3, 4), {"in_axis": 0, "out_axis": -2}, "same axis"),
        ((3, 4), {"in_axis": 2}, "`in_axis=2` is out of range"),
        ((3, 4), {"out_axis": -3}, "`out_axis=-3` is out of range"),
    ],
)
def test_fans_bad_arguments(shape, axes, match) -> None:
    with pytest.raises(ValueError, match=match):
        ji.fan_in_and_fan_out(shape, **axes)
    with pytest.raises(ValueError, match=match):
        ji.xavier_uniform(**axes)(jax.random.key(0), shape)


# --------------------------------------------------------------------------- distributions
CASES = [(name, layout) for name in INITS for layout in ("dense", "dense_torch")] + [
    ("xavier_uniform", "conv"),  # torch's conv layout: in the parity tests
]


@pytest.mark.parametrize("name, layout", CASES, ids=[f"{n}-{layout}" for n, layout in CASES])
def test_distribution_matches_the_formula(name: str, layout: str, getkey) -> None:
    shape, axes, fan_in, fan_out = LAYOUTS[layout]
    gain = 1.3
    w = getattr(ji, name)(gain, **axes)(getkey(), shape, jnp.float32)
    assert w.shape == shape and w.dtype == jnp.float32
    assert_distribution(w, *expected_scale(name, gain, fan_in, fan_out))


@pytest.mark.parametrize("name", ["kaiming_uniform", "kaiming_normal"])
def test_kaiming_defaults_are_torch_defaults_and_fan_out_mode(name: str, getkey) -> None:
    # torch's default (a=0, mode='fan_in', nonlinearity='leaky_relu'): variance 2 / fan_in
    w = getattr(ji, name)()(getkey(), DENSE, jnp.float32)
    assert_distribution(w, *expected_scale(name, math.sqrt(2), *DENSE))
    w = getattr(ji, name)(mode="fan_out")(getkey(), DENSE, jnp.float32)
    assert_distribution(w, *expected_scale(name, math.sqrt(2), *DENSE, mode="fan_out"))


def test_xavier_default_gain_and_normal_is_untruncated(getkey) -> None:
    std = math.sqrt(2 / sum(DENSE))
    w = ji.xavier_normal()(getkey(), DENSE, jnp.float32)
    assert_distribution(w, "normal", std)
    # the share beyond 2σ is the normal's 4.55%, not 0 (a truncated normal's)
    beyond = np.mean(np.abs(np.asarray(w)) > 2 * std)
    assert abs(beyond - 0.0455) < 0.003


# --------------------------------------------------------------------------- protocol


def test_protocol_dtypes_jit_vmap(getkey) -> None:
    for name in INITS:
        init = getattr(ji, name)()
        # dtypes by tracing only: the default float dtype, and any floating dtype asked for
        key = getkey()
        default = jax.eval_shape(functools.partial(init, shape=(4, 5)), key)
        assert default.dtype == jnp.zeros(()).dtype
        half = jax.eval_shape(functools.partial(init, shape=(4, 5), dtype=jnp.bfloat16), key)
        assert half.dtype == jnp.bfloat16 and half.shape == (4, 5)
        # nothing to draw: zeros of the shape, as torch leaves them
        np.testing.assert_array_equal(init(getkey(), (0, 5)), np.zeros((0, 5)))
    init = ji.xavier_uniform()
    draw = jax.jit(jax.vmap(lambda k: init(k, (4, 5), jnp.float32)))
    stacked = draw(jax.random.split(getkey(), 3))
    assert stacked.shape == (3, 4, 5) and stacked.dtype == jnp.float32
    assert not np.allclose(stacked[0], stacked[1])
    assert float(jnp.max(jnp.abs(stacked))) <= math.sqrt(6 / 9)


def test_usable_as_flax_kernel_init() -> None:
    from flax import nnx

    layer = nnx.Linear(*DENSE, kernel_init=ji.xavier_uniform(), rngs=nnx.Rngs(0))
    assert_distribution(layer.kernel[...], "uniform", math.sqrt(6 / sum(DENSE)))


def test_bad_arguments(getkey) -> None:
    with pytest.raises(TypeError, match="`dtype` must be a floating dtype"):
        ji.xavier_uniform()(getkey(), (3, 4), jnp.int32)
    with pytest.raises(ValueError, match="`gain` must be finite and non-negative"):
        ji.kaiming_normal(-1.0)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ji.kaiming_uniform(mode="fan_avg")


# --------------------------------------------------------------------------- seed 001's claim


def _tanh_net_variances(weights: np.ndarray, rng: np.random.Generator):
    """Per layer: Var[x_l W_l] / Var[x_l] (the linear map's gain) and Var[tanh(x_l W_l)]; and
    the share of saturated units at the end."""
    h = rng.standard_normal((256, weights.shape[-1]))
    gains, activations = [], []
    for w in weights:
        o = h @ w
        gains.append(np.var(o) / np.var(h))
        h = np.tanh(o)
        activations.append(np.var(h))
    saturated = np.mean(np.abs(h) > 0.99)  # share of last-layer units stuck at ±1
    return np.array(gains), np.array(activations), saturated


def test_xavier_keeps_the_variance_through_20_tanh_layers_and_normal_init_does_not(getkey, rng):
    """Seed 001: with n_in·σ² = 1 each layer's output o = W x keeps the variance of its input.

    With Xavier, every one of the 20 layers maps its input to an output of the same
    variance within a factor 2; with N(0, 1) weights every layer multiplies it by ~n_in
    and the tanh units saturate. With torch's tanh gain (5/3) the activations themselves
    keep their variance within a factor 2 over the whole depth.
    """
    depth, width = 20, 128
    keys = jax.random.split(getkey(), depth)

    def draw(init):
        return np.asarray(jax.vmap(lambda k: init(k, (width, width), jnp.float32))(keys), float)

    gains, _, saturated = _tanh_net_variances(draw(ji.xavier_uniform()), rng)
    assert np.all((gains > 0.5) & (gains < 2.0)), gains
    assert saturated < 0.01
    gains, _, saturated = _tanh_net_variances(rng.standard_normal((depth, width, width)), rng)
    assert np.all(gains > 50.0), gains  # ~ width = 128 per layer
    assert saturated > 0.5
    _, activations, saturated = _tanh_net_variances(draw(ji.xavier_uniform(5 / 3)), rng)
    assert activations.max() / activations.min() < 2.0, activations
    assert saturated < 0.05
