"""jaxreg.norms against ``np.linalg.norm`` in float64, plus properties and edge cases."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxreg import frobenius_norm, global_norm, l1_norm, l2_norm, matrix_norm, vector_norm
from tests.helpers import (
    assert_each,
    assert_edge_rules,
    assert_finite,
    assert_low_precision,
    check_grads64,
    generic_point,
    rounded,
)

INF = float("inf")
VECTOR_ORDS = [0.5, 1, 2, 3, INF, -INF, 0]
MATRIX_ORDS = ["fro", "nuc", 1, -1, 2, -2, INF, -INF]
# Orders that satisfy the triangle inequality (the others are not norms).
VECTOR_NORM_ORDS = [1, 2, 3, INF]
MATRIX_NORM_ORDS = ["fro", "nuc", 1, 2, INF]


def tree_example(rng: np.random.Generator) -> dict:
    return {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}


def concat_leaves(tree: dict) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


# ----------------------------------------------------------------------------- oracles


@jax.jit
def vector_norm_table(x: jax.Array) -> dict:
    """Every order, over all axes, one axis, and one axis kept."""
    return {
        f"ord={o}": (
            vector_norm(x, ord=o),
            vector_norm(x, ord=o, axis=0),
            vector_norm(x, ord=o, axis=-1, keepdims=True),
        )
        for o in VECTOR_ORDS
    }


def test_vector_norm_matches_numpy(rng):
    x = rng.normal(size=(3, 4))
    table = vector_norm_table(x)

    def check(ord: float) -> None:
        flat, axis0, kept = table[f"ord={ord}"]
        np.testing.assert_allclose(flat, np.linalg.norm(x.ravel(), ord), rtol=1e-12)
        np.testing.assert_allclose(axis0, np.linalg.norm(x, ord, axis=0), rtol=1e-12)
        assert kept.shape == (3, 1)
        expected = np.linalg.norm(x, ord, axis=-1, keepdims=True)
        np.testing.assert_allclose(kept, expected, rtol=1e-12)

    assert_each({f"ord={o}": functools.partial(check, o) for o in VECTOR_ORDS})


@jax.jit
def matrix_norm_table(x: jax.Array) -> dict:
    """Every order, over the last two axes, and over axes (0, 2) kept."""
    return {
        f"ord={o}": (matrix_norm(x, ord=o), matrix_norm(x, ord=o, axis=(0, 2), keepdims=True))
        for o in MATRIX_ORDS
    }


def test_matrix_norm_matches_numpy(rng):
    x = rng.normal(size=(2, 3, 4))
    table = matrix_norm_table(x)

    def check(ord: float | str) -> None:
        batched, kept = table[f"ord={ord}"]
        assert batched.shape == (2,)
        np.testing.assert_allclose(batched, np.linalg.norm(x, ord, axis=(-2, -1)), rtol=1e-12)
        assert kept.shape == (1, 3, 1)
        expected = np.linalg.norm(x, ord, axis=(0, 2), keepdims=True)
        np.testing.assert_allclose(kept, expected, rtol=1e-12)

    assert_each({f"ord={o}": functools.partial(check, o) for o in MATRIX_ORDS})


def test_global_norm_is_norm_of_concatenated_leaves(rng):
    tree = tree_example(rng)
    flat = concat_leaves(tree)
    norms = jax.jit(lambda t: [global_norm(t)] + [global_norm(t, ord=o) for o in (1, 2, INF)])
    default, *by_ord = norms(tree)
    np.testing.assert_allclose(default, np.linalg.norm(flat), rtol=1e-12)
    for ord, value in zip((1, 2, INF), by_ord, strict=True):
        np.testing.assert_allclose(value, np.linalg.norm(flat, ord), rtol=1e-12, err_msg=str(ord))


def test_conveniences(rng):
    x = rng.normal(size=(3, 4))
    np.testing.assert_allclose(l1_norm(x), np.abs(x).sum(), rtol=1e-12)
    np.testing.assert_allclose(l1_norm(x, axis=0), np.abs(x).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(l2_norm)(x), np.sqrt((x**2).sum()), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(frobenius_norm)(x), np.linalg.norm(x, "fro"), rtol=1e-12)


def test_l1_gradient_is_torch_subgradient(rng):
    """d|x|/dx = sign(x), with 0 at exact zeros (torch's subgradient)."""
    x = rng.normal(size=(3, 4))
    x[0, 1] = x[2, 3] = 0.0
    np.testing.assert_array_equal(jax.grad(l1_norm)(x), np.sign(x))
    np.testing.assert_array_equal(jax.grad(lambda v: vector_norm(v, ord=1))(x), np.sign(x))


def test_zero_row_gets_zero_gradient(rng):
    x = rng.normal(size=(3, 4))
    x[1] = 0.0
    norms, grad = jax.jit(jax.value_and_grad(lambda v: jnp.sum(vector_norm(v, axis=-1))))(x)
    np.testing.assert_allclose(norms, np.linalg.norm(x, axis=-1).sum(), rtol=1e-12)
    expected = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-300)
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


# ----------------------------------------------------------------------------- properties


@jax.jit
def moveaxis_pairs(x: jax.Array) -> dict:
    """Each norm over a middle axis, and over the same axis moved last."""
    moved = jnp.moveaxis(x, 1, -1)
    moved_matrix = jnp.moveaxis(x, (0, 2), (-2, -1))
    pairs = {
        f"vector ord={o}": (vector_norm(x, ord=o, axis=1), vector_norm(moved, ord=o, axis=-1))
        for o in VECTOR_ORDS
    }
    for o in MATRIX_ORDS:
        pairs[f"matrix ord={o}"] = (
            matrix_norm(x, ord=o, axis=(0, 2)),
            matrix_norm(moved_matrix, o),
        )
    return pairs


def test_axis_equals_moveaxis(rng):
    pairs = moveaxis_pairs(rng.normal(size=(2, 3, 4)))
    assert_each(
        {
            key: functools.partial(np.testing.assert_allclose, got, moved, rtol=1e-13)
            for key, (got, moved) in pairs.items()
        }
    )


@jax.jit
def all_vector_norms(x: jax.Array) -> jax.Array:
    return jnp.stack([vector_norm(x, ord=o) for o in VECTOR_ORDS])


@jax.jit
def all_matrix_norms(a: jax.Array) -> jax.Array:
    return jnp.stack([matrix_norm(a, ord=o) for o in MATRIX_ORDS])


# Zero or magnitudes in [1e-3, 1e3]: no subnormal products, so scaling is exact up to rounding.
moderate = st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))
scalars = st.one_of(st.just(0.0), st.floats(1e-2, 1e2), st.floats(-1e2, -1e-2))


@settings(max_examples=20, deadline=None)
@given(
    x=hnp.arrays(np.float64, (6,), elements=moderate),
    y=hnp.arrays(np.float64, (6,), elements=moderate),
    alpha=scalars,
)
def test_vector_norm_homogeneity_and_triangle(x, y, alpha):
    norms_x, norms_y = np.asarray(all_vector_norms(x)), np.asarray(all_vector_norms(y))
    # ‖αx‖ = |α|·‖x‖; the "0-norm" counts non-zeros instead.
    factors = np.array([float(alpha != 0) if o == 0 else abs(alpha) for o in VECTOR_ORDS])
    np.testing.assert_allclose(all_vector_norms(alpha * x), factors * norms_x, rtol=1e-10)
    is_norm = np.isin(VECTOR_ORDS, VECTOR_NORM_ORDS)
    sums = np.asarray(all_vector_norms(x + y))[is_norm]
    assert np.all(sums <= (norms_x + norms_y)[is_norm] * (1 + 1e-12) + 1e-12)


@settings(max_examples=10, deadline=None)
@given(
    a=hnp.arrays(np.float64, (3, 3), elements=moderate),
    b=hnp.arrays(np.float64, (3, 3), elements=moderate),
    alpha=scalars,
)
def test_matrix_norm_homogeneity_and_triangle(a, b, alpha):
    norms_a, norms_b = np.asarray(all_matrix_norms(a)), np.asarray(all_matrix_norms(b))
    scaled = all_matrix_norms(alpha * a)
    np.testing.assert_allclose(scaled, abs(alpha) * norms_a, rtol=1e-9, atol=1e-9)
    is_norm = np.array([o in MATRIX_NORM_ORDS for o in MATRIX_ORDS])
    sums = np.asarray(all_matrix_norms(a + b))[is_norm]
    assert np.all(sums <= (norms_a + norms_b)[is_norm] * (1 + 1e-10) + 1e-10)


# ----------------------------------------------------------------------------- gradients


# check_grads compiles a dozen programs per call: one call per family, every order in it.


def test_vector_and_global_norms_check_grads(rng):
    x = generic_point(rng, (3, 4))
    tree = {"w": generic_point(rng, (3, 4)), "b": generic_point(rng, (4,))}

    def norms(v: jax.Array, t: dict) -> dict[str, jax.Array]:
        out = {f"vector ord={o}": vector_norm(v, ord=o, axis=-1) for o in VECTOR_ORDS}
        return out | {f"global ord={o}": global_norm(t, ord=o) for o in (1, 2, INF)}

    check_grads64(norms, (x, tree), order=2, jit=True)


def test_matrix_norms_check_grads(rng):
    x = generic_point(rng, (3, 4))
    norms = lambda v: {f"ord={o}": matrix_norm(v, ord=o) for o in MATRIX_ORDS}  # noqa: E731
    check_grads64(norms, (x,), order=2, jit=True)


# ----------------------------------------------------------------------------- edge cases


def test_vector_norms_at_zero():
    fns = {f"ord={o}": functools.partial(vector_norm, ord=o) for o in VECTOR_ORDS}
    fns |= {"l1_norm": l1_norm, "l2_norm": l2_norm}
    assert_edge_rules(fns, (jnp.zeros((4,)),), value=0.0, grad=np.zeros(4))


def test_matrix_norms_at_zero():
    fns = {f"ord={o}": functools.partial(matrix_norm, ord=o) for o in MATRIX_ORDS}
    fns["frobenius_norm"] = frobenius_norm
    assert_edge_rules(fns, (jnp.zeros((3, 2)),), value=0.0, grad=np.zeros((3, 2)))


def test_global_norm_at_zero():
    tree = {"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}
    fns = {f"ord={o}": functools.partial(global_norm, ord=o) for o in (1, 2, INF)}
    zero_grad = jax.tree.map(np.zeros_like, tree)
    assert_edge_rules(fns, (tree,), value=0.0, grad=zero_grad)


# ----------------------------------------------------------------------------- numerics

BIG32 = np.array([1e20, 1e20], dtype=np.float32)
TINY64 = np.full((8,), 1e-300)
LARGE_P_ORDS = [0.5, 1, 2, 3, 8]


@jax.jit
def p_norms_and_grads(x: jax.Array) -> dict:
    return {
        f"ord={o}": jax.value_and_grad(functools.partial(vector_norm, ord=o))(x)
        for o in LARGE_P_ORDS
    }


@pytest.mark.parametrize("x", [BIG32, TINY64], ids=["f32-1e20", "f64-1e-300"])
def test_vector_norm_no_overflow_or_underflow(x):
    k, entry = x.size, float(x[0])
    results = p_norms_and_grads(jnp.asarray(x))

    def check(ord: float) -> None:
        value, grad = results[f"ord={ord}"]
        assert value.dtype == x.dtype
        np.testing.assert_allclose(float(value), entry * k ** (1.0 / ord), rtol=1e-6)
        # d‖x‖_p/dx_i = (|x_i| / ‖x‖_p)^(p-1) = k^((1-p)/p) for k equal entries.
        assert_finite(grad)
        np.testing.assert_allclose(grad, np.full(k, k ** ((1.0 - ord) / ord)), rtol=1e-5)

    assert_each({f"ord={o}": functools.partial(check, o) for o in LARGE_P_ORDS})


@jax.jit
def euclidean_family(x: jax.Array) -> dict:
    matrix = x.reshape(2, -1)
    return {
        "l2_norm": l2_norm(x),
        "matrix_norm_fro": matrix_norm(matrix, ord="fro"),
        "frobenius_norm": frobenius_norm(matrix),
        "global_norm": global_norm({"a": x[:1], "b": x[1:]}),
        "grad_fro": jax.grad(frobenius_norm)(matrix),
    }


@pytest.mark.parametrize("x", [BIG32, TINY64], ids=["f32-1e20", "f64-1e-300"])
def test_euclidean_family_no_overflow_or_underflow(x):
    values = euclidean_family(jnp.asarray(x))
    grad = values.pop("grad_fro")
    expected = float(x[0]) * np.sqrt(x.size)
    for name, value in values.items():
        assert value.dtype == x.dtype, name
        np.testing.assert_allclose(float(value), expected, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(grad, np.full(grad.shape, 1 / np.sqrt(x.size)), rtol=1e-6)


def test_float32_example_from_the_spec():
    value = jax.jit(vector_norm)(jnp.array([1e20, 1e20], dtype=jnp.float32))
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(value), 1.41421356e20, rtol=1e-6)


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_low_precision_norms(rng, dtype_name):
    # Squares of these overflow float16: the reduction must run in float32.
    x = rounded(rng.normal(size=(3, 4)) * 300.0, dtype_name)
    cases = {
        "vector_norm": (functools.partial(vector_norm, axis=-1), x, np.linalg.norm(x, axis=-1)),
        "vector_norm ord=3": (
            functools.partial(vector_norm, ord=3, axis=-1),
            x,
            np.linalg.norm(x, 3, axis=-1),
        ),
        "frobenius_norm": (frobenius_norm, x, np.linalg.norm(x, "fro")),
        "global_norm": (lambda v: global_norm({"a": v, "b": v}), x, np.sqrt(2) * np.linalg.norm(x)),
    }
    assert_low_precision(cases, dtype_name)
