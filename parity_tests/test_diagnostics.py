"""Parity of :mod:`jaxreg.diagnostics` with :mod:`torch_ref.diagnostics`.

The five entropies and the confidence penalty, values and gradients, float32 and
float64, on inputs with negative values and exact zeros (where the study notes'
``-Σ x log x`` is NaN); the histogram entropy compares values only (its
gradient is 0 by construction).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxreg import diagnostics as jd
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import diagnostics as td


def _with_zeros(*shape: int):
    """Standard normal values with about a quarter of them exactly 0."""

    def make(rng: np.random.Generator):
        x = rng.standard_normal(shape)
        x[rng.random(shape) < 0.25] = 0.0
        return (x,)

    return make


def _tree(module, name):
    return lambda w, b: getattr(module, name)({"w": w, "b": [b]})


def _report(module):
    def fn(logits, h, w, r):
        return module.entropy_report(logits=logits, activations=h, params={"w": w}, residuals=r)

    return fn


CASES = [
    ParityCase(
        "diagnostics.output_entropy",
        jd.output_entropy,
        td.output_entropy,
        lambda rng: (3 * rng.standard_normal((6, 5)),),
    ),
    ParityCase(
        "diagnostics.magnitude_entropy",
        jd.magnitude_entropy,
        td.magnitude_entropy,
        _with_zeros(4, 5),
    ),
    ParityCase(
        "diagnostics.activation_entropy",
        jd.activation_entropy,
        td.activation_entropy,
        _with_zeros(6, 7),
    ),
    ParityCase(
        "diagnostics.gradient_entropy",
        _tree(jd, "gradient_entropy"),
        _tree(td, "gradient_entropy"),
        lambda rng: (rng.standard_normal((3, 4)), np.zeros(4)),
        grad_argnums=(0, 1),
    ),
    ParityCase(
        "diagnostics.parameter_entropy",
        _tree(jd, "parameter_entropy"),
        _tree(td, "parameter_entropy"),
        lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal(4)),
        grad_argnums=(0, 1),
    ),
    ParityCase(
        "diagnostics.histogram_entropy",
        lambda x: jd.histogram_entropy(x, bins=16),
        lambda x: td.histogram_entropy(x, bins=16),
        lambda rng: (rng.standard_normal(500),),
        grad_argnums=(),
    ),
    ParityCase(
        "diagnostics.error_entropy",
        jd.error_entropy,
        td.error_entropy,
        lambda rng: (rng.standard_normal(40),),
    ),
    ParityCase(
        "diagnostics.error_entropy[bandwidth]",
        lambda r: jd.error_entropy(r, bandwidth=0.3),
        lambda r: td.error_entropy(r, bandwidth=0.3),
        lambda rng: (rng.standard_normal(40),),
    ),
    ParityCase(
        "diagnostics.entropy_report",
        _report(jd),
        _report(td),
        lambda rng: (
            rng.standard_normal((4, 3)),
            rng.standard_normal((4, 6)),
            rng.standard_normal(5),
            rng.standard_normal(10),
        ),
        grad_argnums=(0, 1, 2, 3),
    ),
    ParityCase(
        "diagnostics.confidence_penalty",
        lambda x: jd.confidence_penalty(x, 0.3),
        lambda x: td.confidence_penalty(x, 0.3),
        lambda rng: (rng.standard_normal((5, 4)),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "x",
    [
        np.zeros(5),
        np.array([0.0, -3.0, 0.0]),
        np.array([1.0, -1.0, 1.0, -1.0]),
        np.array([-2.0, 0.0, 1e-30, 4.0]),
    ],
    ids=["zeros", "one-nonzero", "equal", "tiny"],
)
def test_magnitude_entropy_edges(x, dtype):
    assert_parity(compare(jd.magnitude_entropy, td.magnitude_entropy, [x], dtype=dtype))


@settings(max_examples=15, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.one_of(st.just(0.0), st.floats(1e-3, 50), st.floats(-50, -1e-3)),
    ),
)
def test_activation_entropy_generated(h):
    # Magnitudes are kept >= 1e-3 (or exactly 0): the entropy is scale invariant, so its
    # gradient scales like 1/|x| and rounding noise would dominate at |x| ~ 1e-234.
    assert_parity(compare(jd.activation_entropy, td.activation_entropy, [h], dtype="float64"))
