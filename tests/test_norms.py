"""jaxreg.norms against ``np.linalg.norm`` in float64, plus properties and edge cases."""

from __future__ import annotations

import functools
import math
from decimal import Decimal, getcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxreg import (
    frobenius_norm,
    global_norm,
    group_lasso_penalty,
    l1_norm,
    l2_norm,
    matrix_norm,
    vector_norm,
)
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


# ----------------------------------------------------------------------------- NaN, range, empty
#
# One test per row of the hardening issue, each over every float dtype, called directly
# (each jaxreg function is its own jitted program) and inside a caller's `jax.jit`.

FLOAT_DTYPES = ["float16", "bfloat16", "float32", "float64"]
MODES = ["eager", "jit"]
P_ORDS = [0.5, 1, 2, 3]


def run(mode: str, fn, *args):
    return (jax.jit(fn) if mode == "jit" else fn)(*args)


def as64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def nan_inf_rows(dtype_name: str) -> np.ndarray:
    """Rows: ordinary; with a NaN; overflowing squares in float32 (so a batch that takes
    the rescaled 2-norm branch also holds the NaN row); with +inf. In the dtype's values."""
    big = float(jnp.finfo(dtype_name).max) / 4
    x = [[1.0, 2.0, -3.0, 0.5], [1.0, np.nan, 2.0, 0.0], [big, -big / 2, 1.0, 0.0]]
    return as64(jnp.asarray(x + [[np.inf, 1.0, 0.0, -2.0]], dtype_name))


# The exact reference: Python decimals (60 digits) of the entries as the dtype holds them.
getcontext().prec = 60


def exact_norm(entries: list[float], ord: float) -> Decimal:
    magnitudes = [abs(Decimal(e)) for e in entries]
    if ord == INF:
        return max(magnitudes)
    return sum(m ** Decimal(ord) for m in magnitudes) ** (1 / Decimal(ord))


def reference_norm(x: np.ndarray, ord: float, axis: int | None = None) -> np.ndarray:
    """The exact vector norm (see :func:`exact_norm`) with the NaN rule, over ``axis``."""
    if axis is not None:
        rows = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        return np.array([reference_norm(row, ord) for row in rows])
    entries = [float(e) for e in np.ravel(x)]
    if any(math.isnan(e) for e in entries):
        return np.array(np.nan)
    if ord == 0:
        return np.array(float(sum(e != 0 for e in entries)))
    if ord == -INF:
        return np.array(min(abs(e) for e in entries))
    return np.array(float(exact_norm(entries, ord)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype_name", FLOAT_DTYPES)
def test_nan_in_nan_out_and_inf(dtype_name, mode):
    """A NaN in an entry that takes part makes the norm NaN for every ord and every norm
    function (a NaN in another row or leaf takes no part); +inf makes p-norms +inf."""
    x64 = nan_inf_rows(dtype_name)
    x = jnp.asarray(x64, dtype_name)
    nan_matrix = np.array([[[1.0, np.nan], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    inf_matrix = np.array([[np.inf, 1.0], [2.0, 3.0]])
    mats = jnp.asarray(np.concatenate([nan_matrix, inf_matrix[None]]), dtype_name)

    def everything(x, mats):
        out = {f"vector ord={o} rows": vector_norm(x, o, axis=-1) for o in VECTOR_ORDS}
        out |= {f"vector ord={o} all": vector_norm(x[:3], o) for o in VECTOR_ORDS}
        out |= {
            f"global ord={o} with NaN": global_norm({"a": x[0], "b": x[1:3]}, o)
            for o in VECTOR_ORDS
        }
        out |= {
            f"global ord={o} without": global_norm({"a": x[0], "c": x[2]}, o) for o in VECTOR_ORDS
        }
        out |= {f"matrix ord={o}": matrix_norm(mats, o) for o in MATRIX_ORDS}
        out["l2_norm rows"] = l2_norm(x, axis=-1)
        out["frobenius_norm"] = frobenius_norm(mats)
        out["group_lasso with NaN"] = group_lasso_penalty({"w": x[:3]})
        out["group_lasso without"] = group_lasso_penalty({"w": x[jnp.array([0, 2])]})
        return out

    got = run(mode, everything, x, mats)
    rows, no_nan = x64, x64[[0, 2]]
    expected = {f"vector ord={o} rows": reference_norm(rows, o, axis=-1) for o in VECTOR_ORDS}
    expected |= {f"vector ord={o} all": np.nan for o in VECTOR_ORDS}
    expected |= {f"global ord={o} with NaN": np.nan for o in VECTOR_ORDS}
    expected |= {f"global ord={o} without": reference_norm(no_nan, o) for o in VECTOR_ORDS}
    for o in MATRIX_ORDS:
        finite = np.linalg.norm(nan_matrix[1], o)
        # An infinite entry: ‖·‖ >= max|x| is infinite, except the minima -1 (columns
        # sums inf, 5), -inf (row sums inf, 5) and -2 (not computed: NaN).
        at_inf = {-1: 4.0, -INF: 5.0, -2: np.nan}.get(o, INF)
        expected[f"matrix ord={o}"] = np.array([np.nan, finite, at_inf])
    expected["l2_norm rows"] = reference_norm(rows, 2, axis=-1)
    expected["frobenius_norm"] = expected["matrix ord=fro"]
    lasso = 2.0 * reference_norm(no_nan, 2, axis=-1).sum()  # √4 · Σ row norms
    expected |= {"group_lasso with NaN": np.nan, "group_lasso without": lasso}
    rtol = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-6, "float64": 1e-13}[dtype_name]

    def check(key: str) -> None:
        value = got[key]
        assert value.dtype == jnp.dtype(dtype_name)
        np.testing.assert_allclose(as64(value), expected[key], rtol=rtol)  # NaN == NaN here

    assert_each({key: functools.partial(check, key) for key in expected})


def exact_gradient(entries: list[float], ord: float) -> np.ndarray:
    """d‖x‖/dx: sign(x)·(|x|/‖x‖)^(p-1); for inf, jax's rule splits 1 among the maxima."""
    if ord == INF:
        top = max(abs(e) for e in entries)
        ties = [abs(e) == top for e in entries]
        return np.array([np.sign(e) * t / sum(ties) for e, t in zip(entries, ties, strict=True)])
    norm = exact_norm(entries, ord)
    return np.array(
        [float(np.sign(e)) * float((abs(Decimal(e)) / norm) ** Decimal(ord - 1)) for e in entries]
    )


def ulp(value: Decimal, dtype_name: str) -> float:
    """The spacing of the dtype's numbers at ``value`` (subnormal spacing below tiny)."""
    finfo = jnp.finfo(dtype_name)
    exponent = math.frexp(float(value))[1] - 1 if value else int(finfo.minexp)
    return 2.0 ** (max(exponent, int(finfo.minexp)) - int(finfo.nmant))


def keeps_subnormals(dtype_name: str) -> bool:
    """Whether this platform computes with the dtype's subnormals (XLA:CPU treats them as
    0: DAZ/FTZ). bf16/fp16 are reduced in float32, where fp16's subnormals are normal."""
    tiny = jnp.asarray(jnp.finfo(dtype_name).smallest_subnormal, dtype_name)
    work = jnp.float32 if tiny.dtype.itemsize < 4 else tiny.dtype
    return bool(jax.jit(lambda s: s.astype(work) * 2 != 0)(tiny))


EXTREMES = ["max/4", "tiny", "smallest subnormal"]
RANGE_ORDS = [1, 2, 3, 0.5, INF]


def extreme_entries(case: str, dtype_name: str) -> list[float]:
    finfo = jnp.finfo(dtype_name)
    return {
        # Unequal entries whose every norm is still representable (ord 0.5: 2.91·max/4).
        "max/4": [float(finfo.max) / 4, -float(finfo.max) / 8],
        "tiny": [float(finfo.tiny), float(finfo.tiny)],
        "smallest subnormal": [float(finfo.smallest_subnormal)] * 2,
    }[case]


@pytest.mark.parametrize("case", EXTREMES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype_name", FLOAT_DTYPES)
def test_extreme_magnitudes(dtype_name, mode, case):
    """Within 2 ulp of the exact norm and with the exact gradient (x/‖x‖ for the 2-norm),
    in reverse and forward mode, at the top and the bottom of the range. Entries the
    platform flushes to zero (subnormals on XLA:CPU) count as zeros: value 0, gradient 0."""
    entries = extreme_entries(case, dtype_name)
    x = jnp.asarray(entries, dtype_name)
    fns = {f"ord={o}": functools.partial(vector_norm, ord=o) for o in RANGE_ORDS}
    fns["global_norm"] = lambda v: global_norm({"a": v[:1], "b": v[1:]})
    got = run(
        mode,
        lambda v: {k: (*jax.value_and_grad(f)(v), jax.jacfwd(f)(v)) for k, f in fns.items()},
        x,
    )
    flushed = case == "smallest subnormal" and not keeps_subnormals(dtype_name)
    eps = float(jnp.finfo(dtype_name).eps)

    def check(key: str) -> None:
        value, grad, forward = got[key]
        assert value.dtype == grad.dtype == jnp.dtype(dtype_name)
        if flushed:
            assert float(value) == 0.0 and np.all(as64(grad) == 0.0), (value, grad)
            np.testing.assert_array_equal(as64(forward), 0.0)
            return
        ord = 2 if key == "global_norm" else RANGE_ORDS[list(fns).index(key)]
        exact = exact_norm(entries, ord)
        error = abs(Decimal(float(value)) - exact) / Decimal(ulp(exact, dtype_name))
        assert error <= 2, f"{value} is {float(error):.2f} ulp from {float(exact)}"
        np.testing.assert_allclose(as64(grad), exact_gradient(entries, ord), rtol=4 * eps)
        np.testing.assert_allclose(as64(forward), exact_gradient(entries, ord), rtol=4 * eps)

    assert_each({key: functools.partial(check, key) for key in fns})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype_name", ["bfloat16", "float32", "float64"])
def test_norm_of_a_huge_step_is_not_zero(dtype_name, mode):
    """The convergence reproducer: SGD with lr=3 on ½‖w‖² diverges to steps above 2^126 in
    float32 (8.5e37), whose norm came out 0 (``1/m`` subnormal, flushed), so it "converged".
    The same above 2^1022 in float64."""
    scale = 1e308 if dtype_name == "float64" else 1e38
    step = {
        "w": jnp.asarray([scale, scale], dtype_name),
        "b": jnp.asarray([-scale / 10, scale / 4, scale / 10], dtype_name),
    }
    got = run(mode, lambda s: [global_norm(s), global_norm(s, 3), vector_norm(s["w"])], step)
    flat, w = np.r_[as64(step["w"]), as64(step["b"])], as64(step["w"])
    expected = [reference_norm(flat, 2), reference_norm(flat, 3), reference_norm(w, 2)]
    rtol = 2 * float(jnp.finfo(dtype_name).eps)
    np.testing.assert_allclose(as64(jnp.stack(got)), expected, rtol=rtol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype_name", FLOAT_DTYPES)
def test_empty_axes(dtype_name, mode):
    """Every p-norm over an empty axis is 0 with gradient 0 (torch); ±inf raise there
    (torch too); empty leaves take no part in global_norm; matrices without rows or
    columns have norm 0 unless the norm is a minimum over nothing."""
    empty, tall, wide = (jnp.zeros(s, dtype_name) for s in [(0,), (3, 0), (0, 3)])
    leaf = jnp.asarray([3.0, -4.0], dtype_name)
    ords = [*P_ORDS, 0]

    def values(empty, tall, wide, leaf):
        out = {f"vector ord={o}": vector_norm(empty, o) for o in ords}
        out |= {f"vector rows ord={o}": vector_norm(tall, o, axis=-1) for o in ords}
        out |= {f"vector no rows ord={o}": vector_norm(wide, o, axis=-1) for o in VECTOR_ORDS}
        out |= {
            f"grad ord={o}": jax.grad(functools.partial(vector_norm, ord=o))(empty) for o in ords
        }
        out |= {
            f"global all empty ord={o}": global_norm({"a": empty, "b": tall}, o)
            for o in VECTOR_ORDS
        }
        out |= {f"global ord={o}": global_norm({"a": empty, "b": leaf}, o) for o in VECTOR_ORDS}
        out |= {
            f"matrix {n} ord={o}": matrix_norm(m, o)
            for n, m in [("0x3", wide), ("3x0", tall)]
            for o in ["fro", "nuc", 1, 2, INF]
        }
        out["matrix 0x3 ord=-1"] = matrix_norm(wide, -1)
        out["matrix 3x0 ord=-inf"] = matrix_norm(tall, -INF)
        return out

    got = run(mode, values, empty, tall, wide, leaf)
    assert got["vector no rows ord=2"].shape == (0,)
    ordinary = {o: np.linalg.norm([3.0, -4.0], o) for o in VECTOR_ORDS}
    eps = float(jnp.finfo(dtype_name).eps)
    for key, value in got.items():
        assert value.dtype == jnp.dtype(dtype_name), key
        if key.startswith("global ord="):
            expected = ordinary[float(key.split("=")[1])]
            np.testing.assert_allclose(as64(value), expected, rtol=2 * eps, err_msg=key)
        else:
            np.testing.assert_array_equal(as64(value), 0.0, key)

    raising = (
        {f"vector ord={o}": lambda o=o: vector_norm(empty, o) for o in (INF, -INF)}
        | {f"vector rows ord={o}": lambda o=o: vector_norm(tall, o, axis=-1) for o in (INF, -INF)}
        | {
            "matrix 0x3 ord=-2": lambda: matrix_norm(wide, -2),
            "matrix 3x0 ord=-2": lambda: matrix_norm(tall, -2),
            "matrix 3x0 ord=-1": lambda: matrix_norm(tall, -1),
            "matrix 0x3 ord=-inf": lambda: matrix_norm(wide, -INF),
        }
    )
    for call in raising.values():
        with pytest.raises(ValueError, match="`ord`"):
            run(mode, call)


def test_p_norm_jvp_check_grads(rng):
    """The one custom JVP of the p-norms (p != 1): other orders, kept axes, several leaves."""
    x = generic_point(rng, (3, 4))
    tree = {"w": generic_point(rng, (2, 3)), "b": generic_point(rng, (3,))}

    def norms(v: jax.Array, t: dict) -> dict[str, jax.Array]:
        out = {f"ord={o}": vector_norm(v, o, axis=0, keepdims=True) for o in (1.5, 2, 8)}
        return out | {f"global ord={o}": global_norm(t, o) for o in (0.5, 3)}

    check_grads64(norms, (x, tree), order=2, jit=True)


# ----------------------------------------------------------------------------- negative orders

NEGATIVE_ORDS = [-0.5, -1, -2, -3.5]


def test_negative_orders_match_numpy(rng):
    """``p < 0`` (torch and NumPy allow it): NumPy's values; the exact gradient
    ``sign(x)·(|x|/‖x‖)^(p-1)``; ``check_grads`` to second order."""
    x = rng.normal(size=(3, 5))
    for ord in NEGATIVE_ORDS:
        np.testing.assert_allclose(
            vector_norm(x, ord, axis=-1), np.linalg.norm(x, ord, axis=-1), rtol=1e-13
        )
        grad = jax.grad(lambda v, ord=ord: vector_norm(v, ord))(x[0])
        np.testing.assert_allclose(grad, exact_gradient(list(x[0]), ord), rtol=1e-12)
        check_grads64(lambda v, ord=ord: vector_norm(v, ord, axis=-1), (x,))
    check_grads64(lambda t: global_norm(t, -1.5), (tree_example(rng),))


@pytest.mark.parametrize("mode", MODES)
def test_negative_orders_with_zero_or_infinite_entries(mode):
    """A zero entry gives 0 (torch's and NumPy's value, the limit) with gradient 0; an
    infinite entry takes no part (``|inf|^p = 0``); all infinite gives ``inf``; a NaN
    gives NaN, also beside a zero; over an empty axis a negative order raises (torch)."""
    x = jnp.array(
        [[0.0, 2.0, -3.0], [np.inf, 2.0, -4.0], [np.inf, -np.inf, np.inf], [0.0, np.nan, 1.0]]
    )
    for ord in [-1, -2.5]:
        value, grad = run(mode, jax.value_and_grad(lambda v, o=ord: vector_norm(v[:3], o)), x[0])
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, 0.0)
        rows = as64(run(mode, lambda v, o=ord: vector_norm(v, o, axis=-1), x))
        with np.errstate(divide="ignore"):
            expected_row1 = np.linalg.norm([2.0, -4.0], ord)
        np.testing.assert_allclose(rows, [0.0, expected_row1, INF, np.nan], rtol=1e-15)
        finite = jnp.array([1.0, 1.0, 0.0, 0.0])  # cotangent 0 where the value is not finite
        grads = run(
            mode,
            jax.grad(lambda v, o=ord, f=finite: jnp.sum(f * vector_norm(v, o, axis=-1))),
            x,
        )
        assert_finite(grads[:3])
        np.testing.assert_array_equal(grads[1, 0], 0.0)
    with pytest.raises(ValueError, match="`ord`=-1.0 over axis"):
        vector_norm(jnp.ones((2, 0)), -1, axis=-1)


@pytest.mark.parametrize("case", ["huge", "small"])
@pytest.mark.parametrize("dtype_name", FLOAT_DTYPES)
def test_negative_orders_over_the_range(dtype_name, case):
    """Scaled by the smallest magnitude: within 2 ulp of the exact norm, exact gradient, at
    the top of the range (the sum of powers underflows) and near the bottom (it overflows)."""
    finfo = jnp.finfo(dtype_name)
    entries = {
        "huge": [float(finfo.max) / 4, -float(finfo.max) / 8],
        "small": [float(finfo.tiny) * 8, -float(finfo.tiny) * 16],
    }[case]
    x = jnp.asarray(entries, dtype_name)
    eps = float(finfo.eps)
    for ord in [-0.5, -1, -2.5]:
        value, grad = jax.jit(jax.value_and_grad(lambda v, o=ord: vector_norm(v, o)))(x)
        assert value.dtype == grad.dtype == jnp.dtype(dtype_name)
        exact = exact_norm(entries, ord)
        error = abs(Decimal(float(value)) - exact) / Decimal(ulp(exact, dtype_name))
        assert error <= 2, f"ord {ord}: {value} is {float(error):.2f} ulp from {float(exact)}"
        np.testing.assert_allclose(as64(grad), exact_gradient(entries, ord), rtol=4 * eps)


# ----------------------------------------------------------------------------- where= masks

MASKED_ORDS = [2, 1, 3, 0.5, INF, -INF, 0, -1, -2.5]


@jax.jit
def masked_norms_and_grads(x: jax.Array, mask: jax.Array) -> dict:
    out = {}
    for ord in MASKED_ORDS:
        norms = vector_norm(x, ord, axis=-1, where=mask)
        finite = jnp.where(jnp.isfinite(norms), 1.0, 0.0)

        def total(v, o=ord, f=finite):
            return jnp.sum(f * vector_norm(v, o, -1, where=mask))

        grad = jax.grad(total)(x)
        out[ord] = (norms, grad)
    return out


def test_where_equals_slicing(rng):
    """``where`` is ``torch.masked.norm``'s mask: each row's norm and gradient are those of
    its kept entries (0 gradient elsewhere); a fully masked row is the norm of nothing (0,
    and ``+inf`` for ``-inf`` and ``p < 0``) with gradient 0; a NaN masked out takes no
    part."""
    x = rng.normal(size=(4, 6))
    mask = rng.random((4, 6)) < 0.6
    mask[0] = False
    mask[1:, 0] = True
    x[~mask & (np.arange(6) % 2 == 0)] = np.nan  # masked out: takes no part
    got = masked_norms_and_grads(jnp.asarray(x), jnp.asarray(mask))
    for ord in MASKED_ORDS:
        norms, grad = (as64(a) for a in got[ord])
        empty = INF if ord < 0 else 0.0
        assert norms[0] == empty, (ord, norms[0])
        np.testing.assert_array_equal(grad[~mask], 0.0)
        for i in range(1, 4):
            kept = jnp.asarray(x[i][mask[i]])
            expected, expected_grad = jax.value_and_grad(lambda v, o=ord: vector_norm(v, o))(kept)
            np.testing.assert_allclose(norms[i], expected, rtol=1e-14, err_msg=f"ord {ord}")
            np.testing.assert_allclose(grad[i][mask[i]], expected_grad, rtol=1e-13, atol=1e-300)


def test_where_check_grads_broadcasts_and_errors(rng):
    x = rng.normal(size=(3, 5))
    mask = np.array([True, False, True, True, False])  # broadcast over the rows
    for ord in [2, 3, 0.5, -1.5]:
        check_grads64(lambda v, o=ord: vector_norm(v, o, axis=-1, where=mask), (x,))
    np.testing.assert_allclose(
        vector_norm(x, 2, axis=-1, where=mask), np.linalg.norm(x[:, mask], axis=-1), rtol=1e-15
    )
    np.testing.assert_allclose(vector_norm(x, 2, where=mask), np.linalg.norm(x[:, mask]))
    assert float(vector_norm(jnp.ones((2, 0)), 2, axis=-1, where=jnp.ones((2, 0), bool)).sum()) == 0
    with pytest.raises(ValueError, match="`where` of shape"):
        vector_norm(x, where=mask[:3])
    with pytest.raises(TypeError, match="`where` must be a boolean mask"):
        vector_norm(x, where=mask.astype(float))
