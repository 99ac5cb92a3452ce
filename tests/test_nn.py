"""jaxreg.nn: the layers against float64 NumPy, LLaMA's hidden size, dropout statistics,
nnx transforms (jit, grad, vmap) and errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxreg import nn as jnn
from jaxreg.activations import silu, tanh
from jaxreg.init import kaiming_uniform, xavier_uniform
from parity_tests._shared import BATCH, DIM, HIDDEN, assert_inverted_dropout

#: One set of sizes for every module here and in the parity tests: each new kernel shape
#: costs a compile of the sampler. LLaMA's rule maps DIM to HIDDEN with MULTIPLE.


def numpy_linear(x: np.ndarray, kernel, bias=None) -> np.ndarray:
    y = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64)
    return y if bias is None else y + np.asarray(bias, np.float64)


# --------------------------------------------------------------------------- Linear


def test_linear_init_and_forward(rng) -> None:
    big = jnn.Linear(300, 400, rngs=nnx.Rngs(0))
    kernel = np.asarray(big.kernel[...])
    assert kernel.shape == (300, 400) and big.kernel.dtype == jnp.float32
    np.testing.assert_array_equal(big.bias[...], np.zeros(400))
    bound = math.sqrt(6 / 700)  # Xavier uniform
    assert np.max(np.abs(kernel)) <= bound and np.max(np.abs(kernel)) > 0.99 * bound
    assert abs(np.var(kernel) / (bound**2 / 3) - 1) < 0.03
    layer = jnn.Linear(DIM, HIDDEN, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.asarray(rng.standard_normal(HIDDEN))
    for shape in [(DIM,), (4, DIM), (2, 3, DIM)]:
        x = rng.standard_normal(shape)
        expected = numpy_linear(x, layer.kernel[...], layer.bias[...])
        np.testing.assert_allclose(layer(jnp.asarray(x)), expected, rtol=1e-12, atol=1e-12)


def test_linear_without_bias_and_dtypes() -> None:
    layer = jnn.Linear(DIM, HIDDEN, use_bias=False, rngs=nnx.Rngs(0))
    assert layer.bias is None
    assert [path for path, _ in nnx.to_flat_state(nnx.state(layer, nnx.Param))] == [("kernel",)]
    assert layer.kernel.dtype == jnp.float32  # flax's default parameter dtype
    assert layer(jnp.ones((1, DIM), jnp.float32)).dtype == jnp.float32
    bf16 = nnx.eval_shape(
        lambda: jnn.Linear(DIM, HIDDEN, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    )
    assert bf16.kernel.dtype == jnp.bfloat16
    half = jnn.Linear(DIM, HIDDEN, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    nnx.update(half, jax.tree.map(lambda p: p.astype(jnp.bfloat16), nnx.state(half, nnx.Param)))
    assert half(jnp.ones((1, DIM), jnp.bfloat16)).dtype == jnp.bfloat16


def test_linear_errors() -> None:
    layer = jnn.Linear(DIM, HIDDEN, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"last axis 6 \(in_features\), got shape \(2, 4\)"):
        layer(jnp.ones((2, 4), jnp.float32))
    with pytest.raises(TypeError, match="has dtype float64 but the parameters are float32"):
        layer(jnp.ones((2, DIM), jnp.float64))
    with pytest.raises(TypeError, match="`x` must be a floating array"):
        layer(jnp.ones((2, DIM), jnp.int32))


# --------------------------------------------------------------------------- flax's dtypes


def test_linear_mixed_precision_bf16_compute_float32_master_weights(rng) -> None:
    """``dtype=bfloat16`` with float32 parameters (the usual mixed-precision set-up): the
    matmul runs in bf16 on the bf16-rounded weights, the output is bf16, the parameters and
    their gradients stay float32 — and a float32 input is cast down too, as in flax."""
    layer = jnn.Linear(DIM, HIDDEN, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.asarray(rng.standard_normal(HIDDEN), jnp.float32)
    assert layer.kernel.dtype == layer.bias.dtype == jnp.float32
    x = jnp.asarray(rng.standard_normal((4, DIM)), jnp.bfloat16)
    y = layer(x)
    assert y.dtype == jnp.bfloat16
    kernel16 = layer.kernel[...].astype(jnp.bfloat16)
    expected = numpy_linear(x, kernel16, layer.bias[...].astype(jnp.bfloat16))
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, rtol=2**-7, atol=2**-7)
    assert layer(x.astype(jnp.float32)).dtype == jnp.bfloat16
    grads = nnx.grad(lambda m: jnp.sum(m(x).astype(jnp.float32)))(layer)
    assert grads["kernel"].dtype == grads["bias"].dtype == jnp.float32
    expected_grad = np.asarray(x, np.float64).sum(0)[:, None] * np.ones(HIDDEN)
    np.testing.assert_allclose(grads["kernel"][...], expected_grad, rtol=2**-7)
    np.testing.assert_array_equal(grads["bias"][...], 4.0)


def test_linear_promotes_inputs_as_flax(rng) -> None:
    """``dtype=None``: the input and the parameters are promoted to their common dtype
    (``flax.nnx.nn.dtypes.promote_dtype``): a bf16 input with float32 parameters computes
    in float32, as ``nnx.Linear`` does, which the layer used to refuse. Under strict
    promotion there is no common dtype, and the error names ``dtype=``."""
    layer = jnn.Linear(DIM, HIDDEN, rngs=nnx.Rngs(0))
    flax_layer = nnx.Linear(DIM, HIDDEN, rngs=nnx.Rngs(0))
    flax_layer.kernel[...] = layer.kernel[...]
    x = jnp.asarray(rng.standard_normal((4, DIM)), jnp.bfloat16)
    with jax.numpy_dtype_promotion("standard"):
        y = layer(x)
        assert y.dtype == jnp.float32 == flax_layer(x).dtype
        np.testing.assert_array_equal(y, flax_layer(x))
    with pytest.raises(TypeError, match=r"pass the computation dtype explicitly.*dtype=jnp"):
        layer(x)
    half = jnn.Linear(DIM, HIDDEN, dtype=jnp.float32, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert half.kernel.dtype == jnp.bfloat16 and half(x).dtype == jnp.float32


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: jnn.SwiGLUFeedForward(DIM, HIDDEN, rngs=nnx.Rngs(0), **kw),
        lambda **kw: jnn.MLP([DIM, HIDDEN, DIM], rngs=nnx.Rngs(0), **kw),
    ],
    ids=["SwiGLUFeedForward", "MLP"],
)
def test_modules_pass_dtypes_and_kernel_init_to_every_layer(build, rng) -> None:
    model = build(dtype=jnp.bfloat16, param_dtype=jnp.float32, kernel_init=kaiming_uniform())
    layers = [m for _, m in nnx.iter_graph(model) if isinstance(m, jnn.Linear)]
    assert layers and all(m.dtype == jnp.bfloat16 for m in layers)
    assert all(m.kernel.dtype == jnp.float32 for m in layers)
    for m in layers:  # Kaiming's bound √(6/fan_in), not Xavier's √(6/(fan_in+fan_out))
        assert np.max(np.abs(m.kernel[...])) <= math.sqrt(6 / m.in_features)
    model.eval()
    assert model(jnp.ones((2, DIM), jnp.float32)).dtype == jnp.bfloat16


def test_kernel_and_bias_init_are_selectable() -> None:
    """``kernel_init``/``bias_init`` take any ``init(key, shape, dtype)``:
    :func:`jaxreg.kaiming_uniform` (He, variance 2/fan_in) or flax's initializers."""
    layer = jnn.Linear(
        300,
        400,
        kernel_init=kaiming_uniform(),
        bias_init=jax.nn.initializers.constant(0.5),
        rngs=nnx.Rngs(0),
    )
    kernel = np.asarray(layer.kernel[...])
    bound = math.sqrt(6 / 300)
    assert 0.99 * bound < np.max(np.abs(kernel)) <= bound
    assert abs(np.var(kernel) / (2 / 300) - 1) < 0.03
    np.testing.assert_array_equal(layer.bias[...], 0.5)
    # the default is Xavier uniform, drawn from the same key as before this option
    default = jnn.Linear(300, 400, rngs=nnx.Rngs(0)).kernel[...]
    expected = xavier_uniform()(nnx.Rngs(0).params(), (300, 400), jnp.float32)
    np.testing.assert_array_equal(default, expected)


# --------------------------------------------------------------------------- SwiGLU


def test_swiglu_hidden_size_is_llamas() -> None:
    # LLaMA-7B: dim 4096 -> 11008; traced only, no 3 x 45M parameters allocated
    ff = nnx.eval_shape(lambda: jnn.SwiGLUFeedForward(4096, multiple_of=256, rngs=nnx.Rngs(0)))
    assert ff.hidden_dim == 11008
    assert ff.w1.kernel.shape == ff.w3.kernel.shape == (4096, 11008)
    assert ff.w2.kernel.shape == (11008, 4096)
    for dim, hidden_dim, multiple_of, expected in [
        (8, None, 8, 24),  # int(64 / 3) = 21 -> 24
        (8, None, 1, 21),
        (8, 10, 256, 10),  # a given size is used as is
        (5120, None, 256, 13824),  # LLaMA-13B
    ]:
        ff = nnx.eval_shape(
            lambda d=dim, h=hidden_dim, m=multiple_of: jnn.SwiGLUFeedForward(
                d, h, multiple_of=m, rngs=nnx.Rngs(0)
            )
        )
        assert ff.hidden_dim == expected == ff.w2.kernel.shape[0]


def test_swiglu_forward_is_w2_of_silu_w1_times_w3(rng) -> None:
    ff = jnn.SwiGLUFeedForward(DIM, HIDDEN, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    names = sorted("/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(ff, nnx.Param)))
    assert names == ["w1/kernel", "w2/kernel", "w3/kernel"]  # no biases
    x = rng.standard_normal((4, DIM))
    w1, w2, w3 = (np.asarray(getattr(ff, w).kernel[...]) for w in ("w1", "w2", "w3"))
    a = x @ w1
    expected = (a / (1 + np.exp(-a)) * (x @ w3)) @ w2
    np.testing.assert_allclose(ff(jnp.asarray(x)), expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(
        ff(jnp.asarray(x)), ff.w2(silu(ff.w1(jnp.asarray(x))) * ff.w3(jnp.asarray(x))), rtol=1e-15
    )


def test_swiglu_dropout_train_and_eval(rng) -> None:
    ff = jnn.SwiGLUFeedForward(DIM, HIDDEN, dropout=0.5, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((BATCH, DIM)))
    ff.eval()
    clean = ff(x)
    np.testing.assert_array_equal(clean, ff.w2(silu(ff.w1(x)) * ff.w3(x)))
    ff.train()
    noisy = ff(x)
    assert_inverted_dropout(clean, noisy, 0.5, rtol=1e-14)
    assert not np.array_equal(np.asarray(ff(x)), np.asarray(noisy))  # a fresh mask per call
    np.testing.assert_array_equal(nnx.view(ff, deterministic=True)(x), clean)


# --------------------------------------------------------------------------- MLP


def test_mlp_forward_and_parameter_names(rng) -> None:
    mlp = jnn.MLP(
        [DIM, HIDDEN, DIM, HIDDEN], activation=tanh, param_dtype=jnp.float64, rngs=nnx.Rngs(0)
    )
    flat = nnx.to_flat_state(nnx.state(mlp, nnx.Param))
    assert [p for p, _ in flat] == [("layers", i, n) for i in range(3) for n in ("bias", "kernel")]
    for layer in mlp.layers:
        layer.bias[...] = jnp.asarray(rng.standard_normal(layer.out_features))
    x = rng.standard_normal((4, DIM))
    h = x
    for i, layer in enumerate(mlp.layers):
        h = numpy_linear(h, layer.kernel[...], layer.bias[...])
        h = np.tanh(h) if i < 2 else h
    np.testing.assert_allclose(mlp(jnp.asarray(x)), h, rtol=1e-12, atol=1e-13)


def test_mlp_dropout_after_each_hidden_activation(rng) -> None:
    mlp = jnn.MLP([DIM, HIDDEN, DIM], dropout=0.25, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
    x = jnp.asarray(rng.standard_normal((BATCH, DIM)))
    mlp.eval()
    clean = mlp(x)
    hidden = jax.nn.relu(mlp.layers[0](x))
    np.testing.assert_allclose(clean, mlp.layers[1](hidden), rtol=1e-15)
    mlp.train()
    assert not np.allclose(np.asarray(mlp(x)), np.asarray(clean))


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keep_rate_and_scaling(rate: float, rng) -> None:
    x = jnp.asarray(rng.uniform(0.5, 1.5, size=(200, 250)), jnp.float32)
    y = jnn.dropout(x, rate, key=jax.random.key(3))
    assert y.dtype == jnp.float32
    assert_inverted_dropout(x, y, rate)


def test_dropout_equals_nnx_dropout_mask(rng) -> None:
    x = jnp.asarray(rng.uniform(0.5, 1.5, size=(200, 250)), jnp.float32)
    key = jax.random.key(7)
    np.testing.assert_array_equal(jnn.dropout(x, 0.3, key=key), nnx.Dropout(0.3)(x, rngs=key))


def test_dropout_identity_zeros_and_gradients(rng) -> None:
    x = jnp.asarray(rng.uniform(0.5, 1.5, size=(200, 250)), jnp.float32)
    key = jax.random.key(0)
    np.testing.assert_array_equal(jnn.dropout(x, 0.5, deterministic=True), x)
    np.testing.assert_array_equal(jnn.dropout(x, 0.0, key=key), x)
    np.testing.assert_array_equal(jnn.dropout(x, 0.0), x)  # no key needed
    zero = jnn.dropout(x, 1.0, key=key)
    np.testing.assert_array_equal(zero, np.zeros_like(x))
    np.testing.assert_array_equal(
        jax.grad(lambda v: jnp.sum(jnn.dropout(v, 1.0, key=key)))(x), np.zeros_like(x)
    )
    # the gradient is the mask scaled by 1 / (1 - rate)
    grad = jax.jit(jax.grad(lambda v: jnp.sum(jnn.dropout(v, 0.5, key=key))))(x)
    y = jnn.dropout(x, 0.5, key=key)
    np.testing.assert_array_equal(grad, np.where(np.asarray(y) != 0, 2.0, 0.0))
    masks = jax.vmap(lambda k: jnn.dropout(x, 0.5, key=k) != 0)(jax.random.split(key, 2))
    assert not np.array_equal(masks[0], masks[1])


def test_dropout_bad_arguments() -> None:
    x = jnp.ones(3)
    for rate in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"`rate` is the dropout probability.*\[0, 1\]"):
            jnn.dropout(x, rate, key=jax.random.key(0))
    with pytest.raises(ValueError, match="`key` is required"):
        jnn.dropout(x, 0.5)
    with pytest.raises(TypeError, match="`x` must be a floating array"):
        jnn.dropout(jnp.arange(3), 0.5, key=jax.random.key(0))


@pytest.mark.parametrize(
    "build",
    [
        lambda r: jnn.SwiGLUFeedForward(8, dropout=r, rngs=nnx.Rngs(0)),
        lambda r: jnn.MLP([2, 3], dropout=r, rngs=nnx.Rngs(0)),
    ],
    ids=["SwiGLUFeedForward", "MLP"],
)
def test_module_dropout_rate_must_be_below_one(build) -> None:
    for rate in (-0.5, 1.0, 2.0):
        with pytest.raises(ValueError, match=r"`dropout` is the dropout probability.*\[0, 1\)"):
            build(rate)


def test_module_bad_sizes() -> None:
    with pytest.raises(ValueError, match="`sizes` needs an input and an output size"):
        jnn.MLP([3], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`multiple_of` must be positive"):
        jnn.SwiGLUFeedForward(8, multiple_of=0, rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- transforms


def test_modules_under_nnx_jit_grad_and_vmap(rng) -> None:
    model = jnn.MLP([DIM, HIDDEN, DIM], dropout=0.2, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((BATCH, DIM)))
    y = jnp.asarray(rng.standard_normal((BATCH, DIM)))

    def loss(m: jnn.MLP) -> jax.Array:
        return jnp.mean((m(x) - y) ** 2)

    @nnx.jit
    def step(m: jnn.MLP) -> jax.Array:
        value, grads = nnx.value_and_grad(loss)(m)
        params = nnx.state(m, nnx.Param)
        nnx.update(m, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads))
        return value

    kernel = np.asarray(model.layers[0].kernel[...])
    losses = [float(step(model)) for _ in range(3)]  # dropout draws inside nnx.jit
    assert np.all(np.isfinite(losses)) and len(set(losses)) == 3
    assert not np.allclose(np.asarray(model.layers[0].kernel[...]), kernel)
    model.eval()
    per_example = jax.jit(jax.vmap(lambda v: model(v)))(x)
    np.testing.assert_allclose(per_example, model(x), rtol=1e-12)
    ff = jnn.SwiGLUFeedForward(DIM, HIDDEN, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    grad_x = jax.jit(jax.grad(lambda v: jnp.sum(ff(v))))(x)
    assert grad_x.shape == x.shape and np.all(np.isfinite(grad_x))
    y_jit = jax.jit(jnn.dropout, static_argnums=1)(x, 0.5, key=jax.random.key(1))
    np.testing.assert_array_equal(y_jit, jnn.dropout(x, 0.5, key=jax.random.key(1)))
