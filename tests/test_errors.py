"""Bad input raises at trace time, inside ``jax.jit``, with a message naming the argument."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest

from jaxreg import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    elastic_net_penalty,
    entropy,
    entropy_from_logits,
    global_norm,
    group_lasso_penalty,
    js_divergence,
    kl_divergence,
    l1_penalty,
    l2_penalty,
    log_softmax,
    logsumexp,
    matrix_norm,
    mse_loss,
    nll_loss,
    softmax,
    softmax_cross_entropy,
    vector_norm,
)

X = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
P = np.full((3, 4), 0.25)
LABELS = np.array([0, 1, 3], dtype=np.int32)
INT_X = np.arange(12, dtype=np.int32).reshape(3, 4)
PARAMS = {"w": X, "b": X[0]}


def raises_in_jit(exc: type[Exception] | tuple, match: str, fn: Callable, *args: Any) -> None:
    """``jax.jit(fn)(*args)`` raises ``exc`` whose message matches ``match`` while tracing."""
    with pytest.raises(exc, match=match):
        jax.jit(fn)(*args)


def test_labels_batch_shape_mismatch():
    bad = np.zeros((5,), dtype=np.int32)
    raises_in_jit(ValueError, "labels", softmax_cross_entropy, X, bad)
    raises_in_jit(ValueError, "labels", nll_loss, X, bad)
    raises_in_jit(ValueError, "labels", softmax_cross_entropy, X, np.zeros((3, 5)))


@pytest.mark.parametrize(
    "fn",
    [
        functools.partial(softmax_cross_entropy, reduction="average"),
        functools.partial(nll_loss, reduction="average"),
        functools.partial(binary_cross_entropy_with_logits, reduction="average"),
        functools.partial(mse_loss, reduction="average"),
    ],
    ids=["softmax_cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "mse_loss"],
)
def test_unknown_reduction(fn):
    target = LABELS if fn.func in (softmax_cross_entropy, nll_loss) else P
    raises_in_jit(ValueError, "reduction", fn, X, target)


@pytest.mark.parametrize(
    ("fn", "ord"),
    [(vector_norm, "fro"), (vector_norm, math.nan), (matrix_norm, 3), (matrix_norm, "l1")],
    ids=["vector-fro", "vector-nan-p", "matrix-3", "matrix-l1"],
)
def test_unknown_ord(fn, ord):
    raises_in_jit(ValueError, "ord", functools.partial(fn, ord=ord), X)


def test_unknown_global_ord():
    raises_in_jit(ValueError, "ord", functools.partial(global_norm, ord="nuc"), PARAMS)


@pytest.mark.parametrize("smoothing", [-0.1, 1.5])
def test_label_smoothing_out_of_range(smoothing):
    fn = functools.partial(softmax_cross_entropy, label_smoothing=smoothing)
    raises_in_jit(ValueError, "label_smoothing", fn, X, LABELS)


@pytest.mark.parametrize("fn", [cross_entropy, kl_divergence, js_divergence])
def test_distribution_shape_mismatch(fn):
    raises_in_jit(ValueError, r"\bq\b", fn, P, np.full((3, 5), 0.2))


INTEGER_CASES = {
    "vector_norm": (vector_norm, "x", (INT_X,)),
    "matrix_norm": (matrix_norm, "x", (INT_X,)),
    "logsumexp": (logsumexp, "x", (INT_X,)),
    "softmax": (softmax, "x", (INT_X,)),
    "entropy": (entropy, r"\bp\b", (INT_X,)),
    "entropy_from_logits": (entropy_from_logits, "logits", (INT_X,)),
    "kl_divergence": (kl_divergence, r"\bq\b", (P, INT_X)),
    "softmax_cross_entropy": (softmax_cross_entropy, "logits", (INT_X, LABELS)),
    "nll_loss": (nll_loss, "log_probs", (INT_X, LABELS)),
    "binary_cross_entropy_with_logits": (binary_cross_entropy_with_logits, "logits", (INT_X, P)),
    "l2_penalty": (l2_penalty, "params", ({"w": INT_X},)),
}


@pytest.mark.parametrize("name", list(INTEGER_CASES))
def test_integer_input_is_type_error(name):
    fn, match, args = INTEGER_CASES[name]
    raises_in_jit(TypeError, match, fn, *args)


def test_probability_labels_with_ignore_index():
    fn = functools.partial(softmax_cross_entropy, ignore_index=1)
    raises_in_jit(ValueError, "ignore_index", fn, X, P)


@pytest.mark.parametrize(
    "fn", [logsumexp, softmax, log_softmax, entropy_from_logits], ids=lambda f: f.__name__
)
def test_where_of_wrong_shape(fn):
    where = np.ones((3, 5), dtype=bool)
    raises_in_jit(ValueError, "where", lambda x: fn(x, where=where), X)


@pytest.mark.parametrize("fn", [softmax_cross_entropy, nll_loss], ids=lambda f: f.__name__)
def test_weight_of_wrong_length(fn):
    raises_in_jit(ValueError, "weight", functools.partial(fn, weight=np.ones(5)), X, LABELS)


@pytest.mark.parametrize(
    "fn",
    [l1_penalty, l2_penalty, elastic_net_penalty, group_lasso_penalty],
    ids=lambda f: f.__name__,
)
def test_mask_structure_mismatch(fn):
    raises_in_jit((ValueError, TypeError), "mask", functools.partial(fn, mask={"w": True}), PARAMS)
