"""jaxreg.diagnostics against their definitions, closed forms and NumPy/SciPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.test_util import check_grads

import jaxreg


def test_finite_on_negative_values_and_zeros(rng):
    x = rng.standard_normal((8, 6))
    x[:, 0] = 0.0

    @jax.jit
    def everything(x):
        tree = {"w": x, "b": jnp.zeros(6)}
        report = jaxreg.entropy_report(
            logits=x, activations=x, grads=tree, params=tree, residuals=x[:, 1]
        )
        fns = (jaxreg.magnitude_entropy, jaxreg.activation_entropy, jaxreg.output_entropy)
        return report, [jax.grad(fn)(x) for fn in fns]

    report, grads = everything(jnp.asarray(x))
    assert set(report) == {"output", "activation", "gradient", "parameter", "error"}
    for name, value in report.items():
        assert np.isfinite(value), name
    for g in grads:
        assert np.all(np.isfinite(g))


def test_magnitude_entropy_closed_forms():
    n = 7
    np.testing.assert_allclose(jaxreg.magnitude_entropy(jnp.full(n, -2.5)), math.log(n), rtol=1e-12)
    assert jaxreg.magnitude_entropy(jnp.array([0.0, 0.0, -3.0])) == 0.0
    assert jaxreg.magnitude_entropy(jnp.zeros(4)) == 0.0
    # Zero entries have gradient 0, even in an all-zero input.
    np.testing.assert_array_equal(jax.grad(jaxreg.magnitude_entropy)(jnp.zeros(3)), 0.0)


def test_magnitude_entropy_against_scipy(rng):
    x = rng.standard_normal(50)
    np.testing.assert_allclose(
        jaxreg.magnitude_entropy(x), scipy.stats.entropy(np.abs(x)), rtol=1e-12
    )


def test_histogram_entropy_uniform_is_log_bins(getkey):
    x = jax.random.uniform(getkey(), (200_000,))
    h = jaxreg.histogram_entropy(x, bins=16)
    assert abs(float(h) - math.log(16)) < 0.01
    assert jaxreg.histogram_entropy(jnp.full(10, 3.0)) == 0.0


def test_histogram_entropy_matches_numpy(rng):
    x = rng.standard_normal(1000)
    counts, _ = np.histogram(x, bins=20, range=(-2.0, 2.0))
    # jaxreg clips values outside the range into the end bins.
    counts[0] += np.sum(x < -2.0)
    counts[-1] += np.sum(x > 2.0)
    expected = scipy.stats.entropy(counts / counts.sum())
    got = jaxreg.histogram_entropy(x, bins=20, range=(-2.0, 2.0))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_output_entropy_bounds_and_mean(rng):
    logits = 3 * rng.standard_normal((10, 5))
    h = jaxreg.output_entropy(logits)
    p = scipy.special.softmax(logits, axis=-1)
    np.testing.assert_allclose(h, np.mean(scipy.stats.entropy(p, axis=-1)), rtol=1e-12)
    np.testing.assert_allclose(jaxreg.output_entropy(jnp.zeros((3, 5))), math.log(5), rtol=1e-12)


def test_confidence_penalty_step_raises_output_entropy(rng):
    logits = jnp.asarray(4 * rng.standard_normal((32, 10)))
    grad = jax.grad(lambda x: jaxreg.confidence_penalty(x, 1.0))(logits)
    stepped = logits - 0.5 * grad
    assert jaxreg.output_entropy(stepped) > jaxreg.output_entropy(logits)
    # A negative strength sharpens instead.
    grad = jax.grad(lambda x: jaxreg.confidence_penalty(x, -1.0))(logits)
    assert jaxreg.output_entropy(logits - 0.5 * grad) < jaxreg.output_entropy(logits)


def test_error_entropy_is_shift_invariant_and_grows_with_spread(rng):
    e = rng.standard_normal(100)
    np.testing.assert_allclose(
        jaxreg.error_entropy(e, bandwidth=0.3),
        jaxreg.error_entropy(e + 5.0, bandwidth=0.3),
        rtol=1e-10,
    )
    assert jaxreg.error_entropy(3 * e, bandwidth=0.3) > jaxreg.error_entropy(e, bandwidth=0.3)
    # Closed form for two points: -log((G(0) + G(d)) / 2) with variance 2σ².
    d, s = 1.3, 0.4
    var = 2 * s * s
    g = lambda t: math.exp(-t * t / (2 * var)) / math.sqrt(2 * math.pi * var)  # noqa: E731
    expected = -math.log((g(0.0) + g(d)) / 2)
    np.testing.assert_allclose(
        jaxreg.error_entropy(jnp.array([0.0, d]), bandwidth=s), expected, rtol=1e-12
    )


def test_gradients(rng):
    x = rng.standard_normal((4, 5)) + 3.0  # away from the kinks of |x|
    for fn in (
        jaxreg.magnitude_entropy,
        jaxreg.activation_entropy,
        jaxreg.output_entropy,
        lambda r: jaxreg.error_entropy(r, bandwidth=0.5),
    ):
        check_grads(jax.jit(fn), (x,), order=2, modes=["rev"])


def test_transforms(rng):
    x = jnp.asarray(rng.standard_normal((3, 4, 5)))
    fns = (
        jaxreg.output_entropy,
        jaxreg.activation_entropy,
        jaxreg.magnitude_entropy,
        jaxreg.error_entropy,
    )

    @jax.jit
    def all_transforms(x):
        out = []
        for fn in fns:
            out.append(
                (
                    jax.vmap(fn)(x),
                    jnp.stack([fn(row) for row in x]),
                    fn(x),
                    jax.jacfwd(fn)(x),
                    jax.jacrev(fn)(x),
                )
            )
        return out

    for batched, looped, value, fwd, rev in all_transforms(x):
        np.testing.assert_allclose(batched, looped, rtol=1e-12)
        np.testing.assert_allclose(fwd, rev, rtol=1e-10, atol=1e-12)
        assert np.isfinite(value)
    np.testing.assert_allclose(
        jax.jit(lambda v: jaxreg.histogram_entropy(v, bins=8))(x),
        jaxreg.histogram_entropy(x, bins=8),
    )


def test_low_precision_is_reduced_in_float32(rng):
    x = rng.standard_normal((16, 10)).astype(np.float32)
    for fn in (jaxreg.output_entropy, jaxreg.magnitude_entropy, jaxreg.activation_entropy):
        got = fn(jnp.asarray(x, jnp.bfloat16))
        assert got.dtype == jnp.bfloat16
        want = fn(jnp.asarray(jnp.asarray(x, jnp.bfloat16), jnp.float32))
        np.testing.assert_allclose(float(got), float(want), rtol=8e-3)


def test_bad_input():
    with pytest.raises(TypeError, match="x"):
        jaxreg.magnitude_entropy(jnp.arange(3))
    with pytest.raises(ValueError, match="bins"):
        jaxreg.histogram_entropy(jnp.ones(3), bins=0)
    with pytest.raises(ValueError, match="range"):
        jaxreg.histogram_entropy(jnp.ones(3), range=(1.0, 1.0))
    with pytest.raises(ValueError, match="residuals"):
        jaxreg.error_entropy(jnp.ones(1))
    with pytest.raises(ValueError, match="bandwidth"):
        jaxreg.error_entropy(jnp.ones(3), bandwidth=-1.0)
