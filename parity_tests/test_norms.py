"""Parity of :mod:`jaxreg.norms` with :mod:`torch_ref.norms` and ``torch.linalg``.

Values and gradients (VJPs) in float32 and float64, on every available device:
every ord of ``vector_norm`` and ``matrix_norm`` (several ords per comparison, each
output checked), over chosen axes, ``global_norm`` of a pytree, the conveniences;
the raw ``torch.linalg`` functions where they are finite; the convention table's
edge cases (all-zero inputs for every ord, no spurious overflow or underflow, low
precision, errors) and generated inputs.
"""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxreg import norms as jn
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import norms as tn

INF = math.inf
VECTOR_ORDS = (2, 1, 3, 0.5, INF, -INF, 0)
NEGATIVE_ORDS = (-0.5, -1, -2.5)
MATRIX_ORDS = ("fro", "nuc", 1, -1, 2, -2, INF, -INF)


def normal(*shape: int):
    """``inputs`` for a case: one standard-normal array of ``shape``."""
    return lambda rng: (rng.standard_normal(shape),)


def vector_norms(module, ords=VECTOR_ORDS, axis=-1, keepdims=False):
    """The norms for several ords as one function (one compilation for all)."""
    return lambda x: [module.vector_norm(x, ord, axis, keepdims) for ord in ords]


def matrix_norms(module, ords=MATRIX_ORDS, axis=(-2, -1), keepdims=False):
    return lambda x: [module.matrix_norm(x, ord, axis, keepdims) for ord in ords]


def vector_norm_variants(module):
    """Every ord over the last axis; all axes; two axes with ``keepdims``."""
    return lambda x: [
        *vector_norms(module)(x),
        module.vector_norm(x, 2, None),
        module.vector_norm(x, 3, (0, 2), True),
    ]


def matrix_norm_variants(module):
    """Every ord over the last two axes; other axes (in either order) with ``keepdims``."""
    return lambda x: [
        *matrix_norms(module)(x),
        module.matrix_norm(x, "nuc", (0, 2), True),
        module.matrix_norm(x, 1, (2, 0)),
    ]


def global_norms(module, ords=(2, 1, INF)):
    return lambda w, b, s: [module.global_norm({"w": w, "b": [b, {"s": s}]}, ord) for ord in ords]


# Raw torch.linalg behind jaxreg's argument names: it is finite (and differentiable,
# ord 0 with gradient 0) on random inputs for every ord, so the raw comparisons use the
# very same jaxreg functions and inputs as the torch_ref ones (compiled once).
TORCH_LINALG = types.SimpleNamespace(
    vector_norm=lambda x, ord=2, axis=None, keepdims=False: torch.linalg.vector_norm(
        x, ord, axis, keepdims
    ),
    matrix_norm=lambda x, ord="fro", axis=(-2, -1), keepdims=False: torch.linalg.matrix_norm(
        x, ord, axis, keepdims
    ),
)
JAX_VECTOR_NORMS = vector_norm_variants(jn)
JAX_MATRIX_NORMS = matrix_norm_variants(jn)


def with_a_zero(rng: np.random.Generator) -> tuple[np.ndarray]:
    """``[3, 4]`` normal entries, one exact zero in row 0 (a negative-order norm is 0 there)."""
    x = rng.standard_normal((3, 4))
    x[0, 1] = 0.0
    return (x,)


def masked_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``x [4, 5]`` and a mask with a fully masked row; a NaN sits in a masked-out entry."""
    x = rng.standard_normal((4, 5))
    mask = rng.random((4, 5)) < 0.6
    mask[1] = False
    mask[[0, 2, 3], 0] = True
    x[2, ~mask[2]] = np.nan  # masked out: takes no part
    return x, mask


def masked_norms(module, ords=VECTOR_ORDS + NEGATIVE_ORDS):
    """Every ord over the last axis with ``where``, and over all axes."""
    return lambda x, mask: [
        *[module.vector_norm(x, ord, -1, where=mask) for ord in ords],
        module.vector_norm(x, 2, None, where=mask),
    ]


def torch_masked_norms(x, mask):
    """``torch.masked.norm`` where its semantics are jaxreg's (every ord ``>= 0``, and
    ``-inf``; for ``p < 0`` it counts masked-out entries as zeros, jaxreg as absent)."""
    return [
        *[torch.masked.norm(x, ord, -1, mask=mask) for ord in VECTOR_ORDS],
        torch.masked.norm(x, 2, mask=mask),
    ]


CASES = [
    ParityCase("norms.vector_norm", JAX_VECTOR_NORMS, vector_norm_variants(tn), normal(2, 3, 4)),
    ParityCase("norms.matrix_norm", JAX_MATRIX_NORMS, matrix_norm_variants(tn), normal(3, 4, 2)),
    ParityCase(
        "norms.global_norm",
        global_norms(jn),
        global_norms(tn),
        lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(2)),
        grad_argnums=(0, 1, 2),
    ),
    ParityCase(
        "norms.l1_norm",
        lambda x: [jn.l1_norm(x), jn.l1_norm(x, axis=0)],
        lambda x: [tn.l1_norm(x), tn.l1_norm(x, axis=0)],
        normal(4, 3),
    ),
    ParityCase("norms.l2_norm", jn.l2_norm, tn.l2_norm, normal(4, 3)),
    ParityCase(
        "norms.frobenius_norm",
        lambda x: jn.frobenius_norm(x, axis=(0, 2)),
        lambda x: tn.frobenius_norm(x, axis=(0, 2)),
        normal(3, 2, 3),
    ),
    ParityCase(
        "norms.vector_norm[torch.linalg.vector_norm]",
        JAX_VECTOR_NORMS,
        vector_norm_variants(TORCH_LINALG),
        normal(2, 3, 4),
        reference="torch",
    ),
    ParityCase(
        "norms.matrix_norm[torch.linalg.matrix_norm]",
        JAX_MATRIX_NORMS,
        matrix_norm_variants(TORCH_LINALG),
        normal(3, 4, 2),
        reference="torch",
    ),
    # negative orders (torch, NumPy): a zero entry gives 0 with gradient 0
    ParityCase(
        "norms.vector_norm[ord<0]",
        vector_norms(jn, NEGATIVE_ORDS),
        vector_norms(tn, NEGATIVE_ORDS),
        with_a_zero,
    ),
    ParityCase(
        "norms.vector_norm[ord<0][torch.linalg.vector_norm]",
        vector_norms(jn, NEGATIVE_ORDS),
        vector_norms(TORCH_LINALG, NEGATIVE_ORDS),
        normal(3, 4),
        reference="torch",
    ),
    # where= masks (torch.masked.norm): a fully masked row, a NaN that takes no part
    ParityCase("norms.vector_norm[where]", masked_norms(jn), masked_norms(tn), masked_inputs),
    ParityCase(
        "norms.vector_norm[where][torch.masked.norm]",
        masked_norms(jn, VECTOR_ORDS),
        torch_masked_norms,
        masked_inputs,
        reference="torch",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case: ParityCase) -> None:
    check_case(case)


# --- edge cases of the convention table --------------------------------------------


def every_norm(module):
    """Every vector and matrix norm ord (and a few global ones), of one ``[2, 3, 2]`` input."""
    return lambda x: [
        *vector_norms(module)(x),
        *matrix_norms(module)(x),
        *[module.global_norm([x, x[0]], ord) for ord in (2, 0.5, INF)],
    ]


def test_zero_input_every_ord() -> None:
    """All-zero input: value 0 and gradient 0 for every ord and norm, on both sides."""
    x = np.zeros((2, 3, 2))

    def total(a):
        return sum(jnp.sum(n) for n in every_norm(jn)(a))

    value, grad = jax.jit(jax.value_and_grad(total))(jnp.asarray(x))
    assert float(value) == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)
    xt = torch.zeros(x.shape, dtype=torch.float64, requires_grad=True)
    value_t = sum(n.sum() for n in every_norm(tn)(xt))
    (grad_t,) = torch.autograd.grad(value_t, xt)
    assert float(value_t.detach()) == 0.0
    np.testing.assert_array_equal(grad_t.numpy(), 0.0)


@pytest.mark.parametrize(
    ("dtype", "xs", "ords", "expected"),
    [
        (
            "float32",
            ([1e20, 1e20], [3e20, -4e20], [1e-30] * 4),
            (2, 3, 2),
            (math.sqrt(2) * 1e20, 91 ** (1 / 3) * 1e20, 2e-30),
        ),
        (
            "float64",
            ([1e-300] * 4, [1e-160] * 4, [1e200, 1e200]),
            (2, 2, 0.5),
            (2e-300, 2e-160, 4e200),
        ),
        # Above 2^126 (float32) and 2^1022 (float64), where 1/max is subnormal.
        (
            "float32",
            ([1e38, 1e38], [2e38, -1e38], [1e38, 5e37]),
            (2, 3, 0.5),
            (math.sqrt(2) * 1e38, 9 ** (1 / 3) * 1e38, (1 + math.sqrt(0.5)) ** 2 * 1e38),
        ),
        (
            "float64",
            ([1e308, 1e308], [1e308, -5e307], [5e307, 2e307]),
            (2, 3, 0.5),
            (math.sqrt(2) * 1e308, 1.125 ** (1 / 3) * 1e308, (5**0.5 + 2**0.5) ** 2 * 1e307),
        ),
    ],
)
def test_no_overflow_or_underflow(dtype, xs, ords, expected) -> None:
    """Where the result is representable it is exact (BLAS nrm2), on both sides."""

    def norms(module):
        return lambda *xs: [module.vector_norm(x, ord) for x, ord in zip(xs, ords, strict=True)]

    inputs = [np.asarray(x) for x in xs]
    result = compare(norms(jn), norms(tn), inputs, dtype=dtype, grad_argnums=(0, 1, 2))
    assert_parity(result)
    rtol = 1e-6 if dtype == "float32" else 1e-14
    values = norms(tn)(*[torch.tensor(x, dtype=getattr(torch, dtype)) for x in inputs])
    np.testing.assert_allclose([float(v) for v in values], expected, rtol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_negative_orders_over_the_float_range(dtype) -> None:
    """``p < 0`` is scaled by the smallest magnitude: exact where raw torch's sum of
    powers overflows (tiny entries: torch 0) or underflows (huge entries: torch inf);
    a zero entry gives 0 with gradient 0 on both sides."""
    tiny, huge = (1e-30, 1e30) if dtype == "float32" else (1e-300, 1e300)
    xs = [[tiny] * 3 + [huge], [huge, 2 * huge, 4 * huge], [0.0, 1.0, -2.0]]
    ord = -2.5

    def exact(x: list[float]) -> float:  # m·(Σ|x/m|^p)^(1/p), m the smallest magnitude
        m = min(abs(v) for v in x)
        return 0.0 if m == 0 else m * sum(abs(v / m) ** ord for v in x) ** (1 / ord)

    def norms(module):
        return lambda *xs: [module.vector_norm(x, ord) for x in xs]

    inputs = [np.asarray(x) for x in xs]
    assert_parity(compare(norms(jn), norms(tn), inputs, dtype=dtype, grad_argnums=(0, 1, 2)))
    rtol = 1e-6 if dtype == "float32" else 1e-14
    out = jax.jit(norms(jn))(*[jnp.asarray(x, dtype) for x in inputs])
    np.testing.assert_allclose([float(v) for v in out], [exact(x) for x in xs], rtol=rtol)
    raw = [
        float(torch.linalg.vector_norm(torch.tensor(x, dtype=getattr(torch, dtype)), ord))
        for x in xs[:2]
    ]
    assert raw[0] == 0.0 and raw[1] == INF  # what the scaling fixes
    grad = jax.grad(lambda x: jn.vector_norm(x, ord))(jnp.asarray(inputs[2], dtype))
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision(dtype, rng) -> None:
    """bf16/fp16 are reduced in float32 and returned in the input dtype, on both sides."""
    x = rng.standard_normal((3, 8)) * 100

    def norms(module):
        return lambda x: [
            module.vector_norm(x, 2, -1),
            module.vector_norm(x, 3, -1),
            module.matrix_norm(x, "nuc"),
            module.l1_norm(x),
        ]

    out_j = jax.jit(norms(jn))(jnp.asarray(x, dtype))
    out_t = norms(tn)(torch.tensor(x).to(getattr(torch, dtype)))
    for a, b in zip(out_j, out_t, strict=True):
        assert a.dtype == jnp.dtype(dtype) and b.dtype == getattr(torch, dtype)
        # Both round a float32 result: at most one unit in the last place apart.
        np.testing.assert_allclose(np.asarray(a, np.float64), b.double().numpy(), rtol=2.0**-7)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m, x: m.vector_norm(x[:, :0], -1, -1), ValueError),
        (lambda m, x: m.vector_norm(x, "fro"), ValueError),
        (lambda m, x: m.matrix_norm(x, 3), ValueError),
        (lambda m, x: m.matrix_norm(x[0], "fro"), ValueError),
        (lambda m, x: m.matrix_norm(x, "fro", axis=(1, 1)), ValueError),
        (lambda m, x: m.vector_norm(x > 0), TypeError),
        (lambda m, x: m.vector_norm(x[:, :0], INF, -1), ValueError),
        (lambda m, x: m.vector_norm(x[:0], -INF), ValueError),
        (lambda m, x: m.matrix_norm(x[:, :0], -2), ValueError),
        (lambda m, x: m.matrix_norm(x[:, :0], -1), ValueError),
        (lambda m, x: m.matrix_norm(x[:0], -INF), ValueError),
    ],
    ids=[
        "negative ord over empty axis",
        "matrix ord",
        "bad matrix ord",
        "vector",
        "same axes",
        "not float",
        "inf over empty axis",
        "-inf of empty",
        "-2 of empty matrix",
        "-1 without columns",
        "-inf without rows",
    ],
)
def test_errors(call, error) -> None:
    """Bad input raises the same error type on both sides."""
    with pytest.raises(error):
        call(jn, jnp.ones((2, 3)))
    with pytest.raises(error):
        call(tn, torch.ones(2, 3))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_entries(dtype) -> None:
    """NaN in, NaN out for every ord on both sides (torch's own ord=0 counts a NaN and its
    SVD raises on NaN); +inf gives +inf for p-norms, "nuc" and 2; other rows unaffected."""
    big = float(np.finfo(dtype).max) / 4
    rows = np.array(
        [[1.0, 2.0, -3.0, 0.5], [1.0, np.nan, 2.0, 0.0], [big, -big / 2, 1.0, 0.0]]
        + [[np.inf, 1.0, 0.0, -2.0]]
    )
    mats = np.array(
        [[[1.0, np.nan], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]], [[np.inf, 1.0], [2.0, 3.0]]]
    )

    def norms(module):
        return lambda x, m: [
            *vector_norms(module)(x),
            *[module.global_norm({"a": x[0], "b": x[1:3]}, ord) for ord in VECTOR_ORDS],
            *matrix_norms(module, ords=("fro", "nuc", 1, -1, 2, INF, -INF))(m),
            module.matrix_norm(m[:2], -2),
        ]

    # The harness counts any NaN as a failure: compare NaN for NaN here, values only.
    out_j = jax.jit(norms(jn))(jnp.asarray(rows, dtype), jnp.asarray(mats, dtype))
    out_t = norms(tn)(
        torch.tensor(rows).to(getattr(torch, dtype)), torch.tensor(mats).to(getattr(torch, dtype))
    )
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(out_j, out_t, strict=True):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=rtol)  # NaN == NaN
    n = len(VECTOR_ORDS)
    for value in out_j[:n]:
        assert np.isnan(value[1]) and not np.isnan(value[np.array([0, 2, 3])]).any()
    for value in out_j[n : 2 * n]:
        assert np.isnan(value)
    for value in out_j[2 * n :]:
        assert np.isnan(value[0]) and np.isfinite(value[1])


def test_empty_reductions() -> None:
    """Every p-norm over an empty axis, global_norm of empty leaves and the matrix norms
    of matrices without rows or columns are 0 on both sides."""

    def norms(module):
        return lambda x: [
            *[module.vector_norm(x[:, :0], ord, -1) for ord in (0.5, 1, 2, 3, 0)],
            *[module.global_norm({"a": x[:0], "b": [x[:, :0]]}, ord) for ord in VECTOR_ORDS],
            *[module.matrix_norm(x[:0], ord) for ord in ("fro", "nuc", 1, -1, 2, INF)],
            *[module.matrix_norm(x[:, :0], ord) for ord in ("fro", "nuc", 1, 2, INF, -INF)],
        ]

    result = compare(norms(jn), norms(tn), [np.ones((2, 3))], grad_argnums=(0,))
    assert_parity(result)
    for value in jax.jit(norms(jn))(jnp.ones((2, 3))):
        np.testing.assert_array_equal(value, 0.0)


# --- generated inputs ------------------------------------------------------------------


@settings(max_examples=3, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    ord=st.sampled_from(VECTOR_ORDS + (1.5, 4)),
    reduce_all=st.booleans(),
    zeros=st.floats(0.0, 0.5),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_vector_norm_generated(seed, shape, ord, reduce_all, zeros, dtype) -> None:
    """Random shapes, axes, magnitudes and exact zeros, any ord."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4)
    x = np.where(rng.random(shape) < zeros, 0.0, x)
    axis = None if reduce_all else int(rng.integers(-len(shape), len(shape)))
    result = compare(
        lambda a: jn.vector_norm(a, ord, axis),
        lambda a: tn.vector_norm(a, ord, axis),
        [x],
        dtype=dtype,
        name=f"vector_norm[{ord}]",
    )
    assert_parity(result)


@settings(max_examples=2, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    ord=st.sampled_from(MATRIX_ORDS),
)
def test_matrix_norm_generated(seed, shape, ord) -> None:
    """Random batched shapes (including 1-row and 1-column matrices), any ord."""
    x = np.random.default_rng(seed).standard_normal(shape)
    result = compare(
        lambda a: jn.matrix_norm(a, ord),
        lambda a: tn.matrix_norm(a, ord),
        [x],
        name=f"matrix_norm[{ord}]",
    )
    assert_parity(result)
