"""jaxreg.norms against ``np.linalg.norm`` in float64, plus properties and edge cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxreg import frobenius_norm, global_norm, l1_norm, l2_norm, matrix_norm, vector_norm
from tests.helpers import (
    assert_edge_rule,
    assert_finite,
    assert_low_precision,
    check_grads64,
    rounded,
)

INF = float("inf")
VECTOR_ORDS = [0.5, 1, 2, 3, INF, -INF, 0]
MATRIX_ORDS = ["fro", "nuc", 1, -1, 2, -2, INF, -INF]
# Orders that satisfy the triangle inequality (the others are not norms).
VECTOR_NORM_ORDS = [1, 2, 3, INF]
MATRIX_NORM_ORDS = ["fro", "nuc", 1, 2, INF]


def tree_example(rng: np.random.Generator) -> dict:
    return {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,)), "s": [rng.normal(size=(2,))]}


def concat_leaves(tree: dict) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("ord", VECTOR_ORDS)
def test_vector_norm_matches_numpy(rng, ord):
    x = rng.normal(size=(3, 4))
    np.testing.assert_allclose(vector_norm(x, ord=ord), np.linalg.norm(x.ravel(), ord), rtol=1e-12)
    for axis in (0, 1, -1):
        got = vector_norm(x, ord=ord, axis=axis)
        np.testing.assert_allclose(got, np.linalg.norm(x, ord, axis=axis), rtol=1e-12)
    kept = vector_norm(x, ord=ord, axis=1, keepdims=True)
    assert kept.shape == (3, 1)
    np.testing.assert_allclose(kept, np.linalg.norm(x, ord, axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("ord", MATRIX_ORDS)
def test_matrix_norm_matches_numpy(rng, ord):
    x = rng.normal(size=(2, 3, 4))
    got = matrix_norm(x, ord=ord)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, np.linalg.norm(x, ord, axis=(-2, -1)), rtol=1e-12)
    kept = matrix_norm(x, ord=ord, axis=(0, 2), keepdims=True)
    assert kept.shape == (1, 3, 1)
    np.testing.assert_allclose(kept, np.linalg.norm(x, ord, axis=(0, 2), keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("ord", [1, 2, INF])
def test_global_norm_is_norm_of_concatenated_leaves(rng, ord):
    tree = tree_example(rng)
    expected = np.linalg.norm(concat_leaves(tree), ord)
    np.testing.assert_allclose(global_norm(tree, ord=ord), expected, rtol=1e-12)


def test_global_norm_default_is_euclidean(rng):
    tree = tree_example(rng)
    np.testing.assert_allclose(global_norm(tree), np.linalg.norm(concat_leaves(tree)), rtol=1e-12)


def test_conveniences(rng):
    x = rng.normal(size=(3, 4))
    np.testing.assert_allclose(l1_norm(x), np.abs(x).sum(), rtol=1e-12)
    np.testing.assert_allclose(l1_norm(x, axis=0), np.abs(x).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(l2_norm(x), np.sqrt((x**2).sum()), rtol=1e-12)
    np.testing.assert_allclose(frobenius_norm(x), np.linalg.norm(x, "fro"), rtol=1e-12)


def test_l1_gradient_is_torch_subgradient(rng):
    """d|x|/dx = sign(x), with 0 at exact zeros (torch's subgradient)."""
    x = rng.normal(size=(5,))
    x[[1, 3]] = 0.0
    np.testing.assert_array_equal(jax.grad(l1_norm)(x), np.sign(x))
    np.testing.assert_array_equal(jax.grad(lambda v: vector_norm(v, ord=1))(x), np.sign(x))


def test_zero_row_gets_zero_gradient(rng):
    x = rng.normal(size=(3, 4))
    x[1] = 0.0
    norms = vector_norm(x, axis=-1)
    np.testing.assert_allclose(norms, np.linalg.norm(x, axis=-1), rtol=1e-12)
    grad = jax.grad(lambda v: jnp.sum(vector_norm(v, axis=-1)))(x)
    expected = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-300)
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("ord", VECTOR_ORDS)
def test_vector_norm_axis_equals_moveaxis(rng, ord):
    x = rng.normal(size=(3, 4, 2))
    np.testing.assert_allclose(
        vector_norm(x, ord=ord, axis=1), vector_norm(np.moveaxis(x, 1, -1), ord=ord, axis=-1)
    )


@pytest.mark.parametrize("ord", ["fro", "nuc", 2])
def test_matrix_norm_axis_equals_moveaxis(rng, ord):
    x = rng.normal(size=(3, 2, 4))
    moved = np.moveaxis(x, (0, 2), (-2, -1))
    np.testing.assert_allclose(matrix_norm(x, ord=ord, axis=(0, 2)), matrix_norm(moved, ord=ord))


# Zero or magnitudes in [1e-3, 1e3]: no subnormal products, so scaling is exact up to rounding.
moderate = st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))
finite_vectors = hnp.arrays(np.float64, (6,), elements=moderate)
scalars = st.one_of(st.just(0.0), st.floats(1e-2, 1e2), st.floats(-1e2, -1e-2))


@settings(max_examples=20, deadline=None)
@given(x=finite_vectors, y=finite_vectors, alpha=scalars)
def test_vector_norm_homogeneity_and_triangle(x, y, alpha):
    for ord in VECTOR_ORDS:
        scaled = float(vector_norm(alpha * x, ord=ord))
        factor = float(alpha != 0) if ord == 0 else abs(alpha)
        np.testing.assert_allclose(scaled, factor * float(vector_norm(x, ord=ord)), rtol=1e-10)
    for ord in VECTOR_NORM_ORDS:
        lhs = float(vector_norm(x + y, ord=ord))
        rhs = float(vector_norm(x, ord=ord)) + float(vector_norm(y, ord=ord))
        assert lhs <= rhs * (1 + 1e-12) + 1e-12


finite_matrices = hnp.arrays(np.float64, (3, 3), elements=moderate)


@settings(max_examples=10, deadline=None)
@given(a=finite_matrices, b=finite_matrices, alpha=scalars)
def test_matrix_norm_homogeneity_and_triangle(a, b, alpha):
    for ord in MATRIX_ORDS:
        np.testing.assert_allclose(
            float(matrix_norm(alpha * a, ord=ord)),
            abs(alpha) * float(matrix_norm(a, ord=ord)),
            rtol=1e-9,
            atol=1e-9,
        )
    for ord in MATRIX_NORM_ORDS:
        lhs = float(matrix_norm(a + b, ord=ord))
        rhs = float(matrix_norm(a, ord=ord)) + float(matrix_norm(b, ord=ord))
        assert lhs <= rhs * (1 + 1e-10) + 1e-10


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("ord", VECTOR_ORDS)
def test_vector_norm_check_grads(rng, ord):
    x = rng.normal(size=(3, 4))
    check_grads64(lambda v: vector_norm(v, ord=ord), (x,), order=2)
    check_grads64(lambda v: vector_norm(v, ord=ord, axis=0), (x,), order=2)


@pytest.mark.parametrize("ord", MATRIX_ORDS)
def test_matrix_norm_check_grads(rng, ord):
    x = rng.normal(size=(2, 3, 4))
    check_grads64(lambda v: matrix_norm(v, ord=ord), (x,), order=2)


def test_global_and_convenience_check_grads(rng):
    tree = tree_example(rng)
    x = rng.normal(size=(3, 4))
    for ord in (1, 2, INF):
        check_grads64(lambda t, o=ord: global_norm(t, ord=o), (tree,), order=2)
    check_grads64(l1_norm, (x,), order=2)
    check_grads64(l2_norm, (x,), order=2)
    check_grads64(frobenius_norm, (x,), order=2)


# ----------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("ord", VECTOR_ORDS)
def test_vector_norm_at_zero(ord):
    zero = jnp.zeros((4,))
    assert_edge_rule(lambda v: vector_norm(v, ord=ord), (zero,), value=0.0, grad=np.zeros(4))


@pytest.mark.parametrize("ord", MATRIX_ORDS)
def test_matrix_norm_at_zero(ord):
    zero = jnp.zeros((3, 2))
    assert_edge_rule(lambda v: matrix_norm(v, ord=ord), (zero,), value=0.0, grad=np.zeros((3, 2)))


@pytest.mark.parametrize("fn", [l1_norm, l2_norm, frobenius_norm], ids=lambda f: f.__name__)
def test_conveniences_at_zero(fn):
    zero = jnp.zeros((3, 2))
    assert_edge_rule(fn, (zero,), value=0.0, grad=np.zeros((3, 2)))


@pytest.mark.parametrize("ord", [1, 2, INF])
def test_global_norm_at_zero(ord):
    tree = {"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}
    value, grad = jax.value_and_grad(lambda t: global_norm(t, ord=ord))(tree)
    assert float(value) == 0.0
    for leaf in jax.tree.leaves(grad):
        np.testing.assert_array_equal(leaf, 0.0)
    hessian = jax.jacfwd(jax.grad(lambda t: global_norm(t, ord=ord)))(tree)
    assert_finite(hessian)


# ----------------------------------------------------------------------------- numerics

BIG32 = np.array([1e20, 1e20], dtype=np.float32)
TINY64 = np.full((8,), 1e-300)


def expected_p_norm(entry: float, k: int, ord: float) -> float:
    return entry * k ** (1.0 / ord)


@pytest.mark.parametrize("ord", [0.5, 1, 2, 3, 8])
@pytest.mark.parametrize("x", [BIG32, TINY64], ids=["f32-1e20", "f64-1e-300"])
def test_vector_norm_no_overflow_or_underflow(x, ord):
    k, entry = x.size, float(x[0])
    value = vector_norm(jnp.asarray(x), ord=ord)
    assert value.dtype == x.dtype
    assert np.isfinite(float(value)) and float(value) > 0
    np.testing.assert_allclose(float(value), expected_p_norm(entry, k, ord), rtol=1e-6)
    # d||x||_p / dx_i = (|x_i| / ||x||_p)^(p - 1) = k^((1 - p) / p) for equal entries.
    grad = jax.grad(lambda v: vector_norm(v, ord=ord))(jnp.asarray(x))
    assert_finite(grad)
    np.testing.assert_allclose(grad, np.full(k, k ** ((1.0 - ord) / ord)), rtol=1e-5)


@pytest.mark.parametrize("x", [BIG32, TINY64], ids=["f32-1e20", "f64-1e-300"])
def test_euclidean_family_no_overflow_or_underflow(x):
    expected = float(x[0]) * np.sqrt(x.size)
    matrix = jnp.asarray(x).reshape(2, -1)
    values = {
        "l2_norm": l2_norm(jnp.asarray(x)),
        "matrix_norm_fro": matrix_norm(matrix, ord="fro"),
        "frobenius_norm": frobenius_norm(matrix),
        "global_norm": global_norm({"a": jnp.asarray(x[:1]), "b": jnp.asarray(x[1:])}),
    }
    for name, value in values.items():
        assert value.dtype == x.dtype, name
        np.testing.assert_allclose(float(value), expected, rtol=1e-6, err_msg=name)
    grad = jax.grad(lambda m: matrix_norm(m, ord="fro"))(matrix)
    np.testing.assert_allclose(grad, np.full(matrix.shape, 1 / np.sqrt(x.size)), rtol=1e-6)


def test_float32_example_from_the_spec():
    value = vector_norm(jnp.array([1e20, 1e20], dtype=jnp.float32))
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(value), 1.41421356e20, rtol=1e-6)


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_low_precision_norms(rng, dtype_name):
    # Squares of these overflow float16: the reduction must run in float32.
    x = rounded(rng.normal(size=(4, 16)) * 100.0, dtype_name)
    assert_low_precision(
        lambda v: vector_norm(v, axis=-1), x, np.linalg.norm(x, axis=-1), dtype_name
    )
    assert_low_precision(
        lambda v: vector_norm(v, ord=3, axis=-1), x, np.linalg.norm(x, 3, axis=-1), dtype_name
    )
    assert_low_precision(frobenius_norm, x, np.linalg.norm(x, "fro"), dtype_name)
    assert_low_precision(
        lambda v: global_norm({"a": v, "b": v}), x, np.sqrt(2) * np.linalg.norm(x), dtype_name
    )
