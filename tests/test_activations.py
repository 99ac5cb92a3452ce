"""jaxreg.activations against float64 NumPy formulas, check_grads, transforms and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from jaxreg import activations as ja
from tests.helpers import assert_finite, check_grads64

GRID = np.concatenate([[-30.0, -0.0, 0.0, 30.0, -1e-8, 1e-8], np.linspace(-6.0, 6.0, 26)])


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return scipy.special.expit(x)  # correctly rounded in the tails, no overflow


#: name -> (jaxreg function, float64 value, float64 derivative with torch's value at 0)
FORMULAS = {
    "sigmoid": (ja.sigmoid, np_sigmoid, lambda x: np_sigmoid(x) * (1 - np_sigmoid(x))),
    "tanh": (ja.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (ja.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (
        lambda x: ja.leaky_relu(x, 0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
        lambda x: np.where(x > 0, 1.0, 0.2),
    ),
    "prelu": (
        lambda x: ja.prelu(x, jnp.asarray(0.3, x.dtype)),
        lambda x: np.where(x > 0, x, 0.3 * x),
        lambda x: np.where(x > 0, 1.0, 0.3),
    ),
    "elu": (
        lambda x: ja.elu(x, 1.5),
        lambda x: np.where(x > 0, x, 1.5 * np.expm1(np.minimum(x, 0))),
        lambda x: np.where(x > 0, 1.0, 1.5 * np.exp(np.minimum(x, 0))),
    ),
    "swish": (
        lambda x: ja.swish(x, 2.0),
        lambda x: x * np_sigmoid(2 * x),
        lambda x: np_sigmoid(2 * x) + 2 * x * np_sigmoid(2 * x) * (1 - np_sigmoid(2 * x)),
    ),
    "silu": (
        ja.silu,
        lambda x: x * np_sigmoid(x),
        lambda x: np_sigmoid(x) * (1 + x * (1 - np_sigmoid(x))),
    ),
}


@jax.jit
def values_and_derivatives(x: jax.Array) -> dict[str, tuple[jax.Array, jax.Array, jax.Array]]:
    """For every activation: value, first and second derivative at each entry of ``x``
    (one compiled program for all of them)."""
    out = {}
    for name, (fn, _, _) in FORMULAS.items():
        d1 = jax.vmap(jax.grad(fn))
        out[name] = (fn(x), d1(x), jax.vmap(jax.grad(jax.grad(fn)))(x))
    return out


def test_values_and_derivatives_equal_float64_formulas() -> None:
    results = values_and_derivatives(jnp.asarray(GRID))
    for name, (_, value, derivative) in FORMULAS.items():
        y, dy, d2y = (np.asarray(r) for r in results[name])
        np.testing.assert_allclose(y, value(GRID), rtol=1e-14, atol=1e-300, err_msg=name)
        # the derivatives are O(1): formulas like 1 - tanh² cancel, hence the atol
        np.testing.assert_allclose(dy, derivative(GRID), rtol=1e-13, atol=1e-15, err_msg=name)
        assert np.all(np.isfinite(d2y)), name  # also at the kinks ±0


def test_check_grads_of_the_custom_derivative(rng) -> None:
    """``elu`` carries a custom JVP (in ``x`` and ``alpha``); checked away from the kink."""
    x = rng.uniform(0.1, 3.0, size=6) * np.array([1.0, -1.0] * 3)
    check_grads64(jax.jit(lambda x, a: ja.elu(x, a)), (x, np.array(0.7)), order=2)


def test_jax_nn_leaky_relu_differs_at_zero_and_ours_follows_torch() -> None:
    """Why ``jax.nn.leaky_relu`` is not used: its derivative at 0 is 1, torch's is the slope."""
    assert float(jax.grad(jax.nn.leaky_relu)(0.0)) == 1.0
    assert float(jax.grad(ja.leaky_relu)(0.0)) == pytest.approx(0.01)
    assert float(jax.grad(ja.leaky_relu)(-0.0)) == pytest.approx(0.01)


def test_glu_and_swiglu_split_halves() -> None:
    a = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    b = jnp.array([[0.0, 4.0], [-1.0, 2.0]])
    x = jnp.concatenate([a, b], axis=-1)
    np.testing.assert_allclose(ja.glu(x), a * jax.nn.sigmoid(b), rtol=1e-15)
    np.testing.assert_allclose(ja.swiglu(x), jax.nn.silu(a) * b, rtol=1e-15)
    # axis=k equals moving the axis last
    x3 = jnp.asarray(np.arange(24.0).reshape(2, 4, 3) / 7 - 1)
    for fn in (ja.glu, ja.swiglu):
        np.testing.assert_allclose(
            fn(x3, axis=1), jnp.moveaxis(fn(jnp.moveaxis(x3, 1, -1)), -1, 1), rtol=1e-15
        )


def test_swish_special_cases() -> None:
    x = jnp.asarray(GRID)
    np.testing.assert_allclose(ja.swish(x, 1.0), ja.silu(x), rtol=1e-15)
    np.testing.assert_allclose(ja.swish(x, 0.0), x / 2, rtol=1e-15)
    np.testing.assert_allclose(ja.swish(x, 50.0), ja.relu(x), atol=1e-2)


def test_prelu_per_channel_on_last_axis() -> None:
    x = jnp.asarray(-np.ones((2, 3, 3)))
    w = jnp.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(ja.prelu(x, w), -np.broadcast_to(np.asarray(w), (2, 3, 3)))
    np.testing.assert_allclose(ja.prelu(x, w[:1]), -0.1 * np.ones((2, 3, 3)))


@pytest.mark.parametrize("axis", [1, 0, -2, 2])
def test_prelu_channel_axis_equals_moveaxis(rng, axis: int) -> None:
    """``prelu(x, w, axis=a)`` is the channels-last ``prelu`` of ``x`` with axis ``a`` moved
    last (``axis=1`` is torch's ``F.prelu`` layout), values and gradients (``check_grads``
    of both arguments, away from the kink)."""
    x = rng.standard_normal((2, 3, 3, 2))
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    w = rng.uniform(0.05, 0.5, x.shape[axis])

    def moved(x, w):
        return jnp.moveaxis(ja.prelu(jnp.moveaxis(x, axis, -1), w), -1, axis)

    np.testing.assert_array_equal(ja.prelu(x, w, axis=axis), moved(x, w))
    check_grads64(lambda x, w: ja.prelu(x, w, axis=axis), (x, w))
    if axis == 1:
        expected = np.where(x > 0, x, w[None, :, None, None] * x)
        np.testing.assert_allclose(ja.prelu(x, w, axis=1), expected, rtol=1e-15)


def test_prelu_single_slope_ignores_axis() -> None:
    """A single slope (scalar or ``[1]``) needs no channel axis: 0-d and 1-D inputs with
    torch's ``axis=1`` work, as in ``F.prelu``."""
    np.testing.assert_allclose(ja.prelu(jnp.asarray(-2.0), jnp.array([0.25]), axis=1), -0.5)
    np.testing.assert_allclose(ja.prelu(jnp.array([-2.0, 3.0]), 0.25, axis=1), [-0.5, 3.0])
    with pytest.raises(ValueError, match=r"`axis`=3 is out of range"):
        ja.prelu(jnp.ones((2, 3)), jnp.ones(3), axis=3)
    with pytest.raises(ValueError, match=r"axis -1 of `x` \(shape \(2, 3, 4\)\).*`axis=1`"):
        ja.prelu(jnp.ones((2, 3, 4)), jnp.ones(3))  # torch's layout without axis=1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_is_preserved_and_large_inputs_stay_finite(dtype) -> None:
    x = jnp.asarray([-1e4, -1.0, 0.0, 1.0, 1e4], dtype)
    for name, (y, dy, d2y) in values_and_derivatives(x).items():
        assert y.dtype == dtype, name
        assert_finite(y, dy, d2y)
    pair = jnp.stack([x, x], axis=-1)
    for fn in (ja.glu, ja.swiglu):
        assert fn(pair).dtype == dtype


def test_jit_vmap_grad() -> None:
    x = jnp.asarray(GRID.reshape(4, 8))
    w = jnp.linspace(0.1, 0.8, 8)
    batched = jax.jit(jax.vmap(ja.prelu, in_axes=(0, None)))(x, w)
    np.testing.assert_allclose(batched, ja.prelu(x, w), rtol=1e-15)
    gw = jax.jit(jax.grad(lambda w: jnp.sum(ja.prelu(x, w))))(w)
    np.testing.assert_allclose(
        gw, np.sum(np.where(GRID.reshape(4, 8) > 0, 0.0, GRID.reshape(4, 8)), 0)
    )
    per_row = jax.vmap(lambda r: ja.swiglu(r))(x)
    np.testing.assert_allclose(per_row, ja.swiglu(x), rtol=1e-15)
    jvp = jax.jvp(ja.silu, (x,), (jnp.ones_like(x),))[1]
    np.testing.assert_allclose(jvp, jax.vmap(jax.vmap(jax.grad(ja.silu)))(x), rtol=1e-14)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "silu"])
def test_integer_input_raises_type_error(name: str) -> None:
    with pytest.raises(TypeError, match="`x` must be a floating array"):
        getattr(ja, name)(jnp.arange(3))


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match=r"even size along `axis=-1`.*shape \(2, 3\)"):
        ja.glu(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="even size along `axis=0`"):
        ja.swiglu(jnp.ones((3, 2)), axis=0)
    with pytest.raises(ValueError, match="out of range"):
        ja.swiglu(jnp.ones((2, 2)), axis=2)
    with pytest.raises(
        ValueError, match=r"`weight` must be a scalar or have shape \(1,\) or \(4,\)"
    ):
        ja.prelu(jnp.ones((2, 4)), jnp.ones(3))
    with pytest.raises(TypeError, match="`weight` must be a floating array"):
        ja.prelu(jnp.ones((2, 4)), jnp.arange(4))
    with pytest.raises(ValueError, match="`negative_slope` must be a scalar"):
        ja.leaky_relu(jnp.ones(3), jnp.ones(3))


def test_elu_derivative_keeps_relative_precision_far_left() -> None:
    """``alpha·exp(x)``, not ``expm1(x) + 1`` (which is 0 or noise for very negative x)."""
    x = jnp.array([-30.0, -50.0, -700.0])
    grad = jax.vmap(jax.grad(lambda v: ja.elu(v, 2.0)))(x)
    np.testing.assert_allclose(np.asarray(grad), 2.0 * np.exp(np.asarray(x)), rtol=1e-15)
    d_alpha = jax.vmap(jax.grad(lambda a, v: ja.elu(v, a)), in_axes=(None, 0))(2.0, x)
    np.testing.assert_allclose(np.asarray(d_alpha), np.expm1(np.asarray(x)), rtol=1e-15)
