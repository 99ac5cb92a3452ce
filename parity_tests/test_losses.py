"""Parity of :mod:`jaxreg.losses` with :mod:`torch_ref.losses` and raw torch.

Values and gradients (VJPs) in float32 and float64, on every available device:
``softmax_cross_entropy`` with integer and probability labels, class weights,
``ignore_index``, label smoothing, the three reductions and a class axis that is
not last; ``nll_loss``, ``binary_cross_entropy_with_logits`` (``weight``,
``pos_weight``), ``squared_loss`` and ``mse_loss``; the raw ``F.cross_entropy``,
``F.nll_loss``, ``F.binary_cross_entropy_with_logits`` and ``F.mse_loss`` where
they are finite; the convention table's edge cases (every label ignored, label
smoothing, ``±1e4`` logits, errors) and generated inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxreg import losses as jl
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import losses as tl

N, C = 6, 4


def class_ids(rng: np.random.Generator, shape, ignored: float = 0.0) -> np.ndarray:
    """Integer labels in ``[0, C)``, about ``ignored`` of them ``-100``; the first is valid."""
    labels = rng.integers(0, C, size=shape)
    labels = np.where(rng.random(shape) < ignored, -100, labels)
    labels.flat[0] = 0
    return labels


def int_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Logits ``[N, C]``, labels with ignored entries, positive class weights."""
    return 2 * rng.standard_normal((N, C)), class_ids(rng, N, 0.3), rng.random(C) + 0.5


def prob_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Logits ``[N, C]``, probability labels (with exact zeros), class weights."""
    target = rng.random((N, C)) * (rng.random((N, C)) < 0.7)
    target[:, 0] += 0.1
    return 2 * rng.standard_normal((N, C)), target / target.sum(-1, keepdims=True), rng.random(C)


def signed_weight_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Class weights of both signs whose valid sum is not 0: torch divides by it as it is
    (a negative mean weight included), and so does jaxreg."""
    weight = rng.uniform(0.5, 1.5, C) * np.array([1.0, -1.0, -1.0, 1.0])
    labels = np.array([1, 2, 1, 2, 0, 1])  # Σ w[y] < 0
    return 2 * rng.standard_normal((N, C)), labels, weight


REDUCTIONS = ("mean", "sum", "none")


def ce(module, **kwargs):
    """``softmax_cross_entropy`` with class weights ``w`` and ``kwargs``, in every reduction."""
    return lambda x, y, w: [
        module.softmax_cross_entropy(x, y, weight=w, reduction=r, **kwargs) for r in REDUCTIONS
    ]


def ce_class_ids(module):
    """Unweighted, weighted with ignored labels, and smoothed: every reduction."""
    return lambda x, y, w: [
        module.softmax_cross_entropy(x, y),
        *ce(module)(x, y, w),
        *ce(module, label_smoothing=0.2)(x, y, w),
    ]


def bce_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Logits, targets (with exact zeros), per-element weights, per-class ``pos_weight``."""
    shape = (N, C)
    return (
        3 * rng.standard_normal(shape),
        rng.random(shape) * (rng.random(shape) < 0.8),
        rng.random(shape) + 0.5,
        rng.random(C) + 0.5,
    )


def log_prob_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    x, y, w = int_inputs(rng)
    return x - np.log(np.exp(x).sum(-1, keepdims=True)), y, w


def regression_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((N, 3)), rng.standard_normal((N, 3))


def raw_torch(x, y, w, x2, t2, w2, z, t, bw, pw):
    """torch.nn.functional's own losses (class axis 1 = last for ``[N, C]`` inputs)."""
    return [
        *[F.cross_entropy(x, y, weight=w, label_smoothing=0.2, reduction=r) for r in REDUCTIONS],
        *[F.cross_entropy(x2, t2, weight=w2, label_smoothing=0.1, reduction=r) for r in REDUCTIONS],
        F.nll_loss(x, y, weight=w),
        F.binary_cross_entropy_with_logits(z, t, weight=bw, pos_weight=pw),
        F.mse_loss(z, t, reduction="sum"),
    ]


def raw_twins(x, y, w, x2, t2, w2, z, t, bw, pw):
    return [
        *ce(jl, label_smoothing=0.2)(x, y, w),
        *ce(jl, label_smoothing=0.1)(x2, t2, w2),
        jl.nll_loss(x, y, weight=w),
        jl.binary_cross_entropy_with_logits(z, t, weight=bw, pos_weight=pw),
        jl.mse_loss(z, t, reduction="sum"),
    ]


# torch's class-id losses are not differentiable w.r.t. the class weights, nor its BCE
# w.r.t. ``weight`` and ``pos_weight``: those enter the comparisons as values only.
CASES = [
    ParityCase(
        "losses.softmax_cross_entropy[weight,ignore_index,smoothing]",
        ce_class_ids(jl),
        ce_class_ids(tl),
        int_inputs,
    ),
    ParityCase(
        "losses.softmax_cross_entropy[probabilities,smoothing,weight]",
        ce(jl, label_smoothing=0.1),
        ce(tl, label_smoothing=0.1),
        prob_inputs,
        grad_argnums=(0, 1, 2),
    ),
    ParityCase(
        "losses.softmax_cross_entropy[probabilities with zeros,no smoothing]",
        ce(jl),
        ce(tl),
        prob_inputs,
        grad_argnums=(0, 1),  # d/dt at t = 0 is -w·log p (torch), not 0
    ),
    ParityCase(
        "losses.softmax_cross_entropy[axis=1,ignore_index=2,smoothing]",
        lambda x, y: jl.softmax_cross_entropy(x, y, axis=1, ignore_index=2, label_smoothing=0.3),
        lambda x, y: tl.softmax_cross_entropy(x, y, axis=1, ignore_index=2, label_smoothing=0.3),
        lambda rng: (rng.standard_normal((2, C, 3)), rng.integers(0, C, size=(2, 3))),
        dtypes=("float64",),  # a variant of the above, in float64 only
    ),
    ParityCase(
        "losses.nll_loss[weight,ignore_index]",
        lambda x, y, w: [jl.nll_loss(x, y, weight=w, reduction=r) for r in REDUCTIONS],
        lambda x, y, w: [tl.nll_loss(x, y, weight=w, reduction=r) for r in REDUCTIONS],
        log_prob_inputs,
    ),
    ParityCase(
        "losses.binary_cross_entropy_with_logits[weight,pos_weight]",
        lambda x, t, w, pw: [
            jl.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction=r)
            for r in REDUCTIONS
        ],
        lambda x, t, w, pw: [
            tl.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction=r)
            for r in REDUCTIONS
        ],
        bce_inputs,
        grad_argnums=(0, 1),
    ),
    ParityCase("losses.squared_loss", jl.squared_loss, tl.squared_loss, regression_inputs, (0, 1)),
    ParityCase(
        "losses.mse_loss",
        lambda p, t: [jl.mse_loss(p, t, reduction=r) for r in REDUCTIONS],
        lambda p, t: [tl.mse_loss(p, t, reduction=r) for r in REDUCTIONS],
        regression_inputs,
        grad_argnums=(0, 1),
    ),
    ParityCase(
        "losses.softmax_cross_entropy+nll_loss[signed weights,smoothing]",
        lambda x, y, w: [
            jl.softmax_cross_entropy(x, y, weight=w, label_smoothing=0.2),
            jl.nll_loss(x, y, weight=w),
        ],
        lambda x, y, w: [
            F.cross_entropy(x, y, weight=w, label_smoothing=0.2),
            F.nll_loss(x, y, weight=w),
        ],
        signed_weight_inputs,
        reference="torch",
    ),
    ParityCase(
        "losses.softmax_cross_entropy+nll_loss+bce+mse[torch.nn.functional]",
        raw_twins,
        raw_torch,
        lambda rng: (*int_inputs(rng), *prob_inputs(rng), *bce_inputs(rng)),
        grad_argnums=(0, 3, 4, 5, 6, 7),
        reference="torch",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case: ParityCase) -> None:
    check_case(case)


# --- edge cases of the convention table --------------------------------------------


def test_every_label_ignored() -> None:
    """Every target ignored: the mean is 0 with gradient 0 (raw torch: NaN), on both sides,
    with and without class weights and label smoothing."""
    x = np.random.default_rng(0).standard_normal((3, C))
    y, w = np.full(3, -100), np.ones(C)

    def total(module, tensor):
        def loss(x):
            return sum(
                module.softmax_cross_entropy(x, tensor(y), weight=weight, label_smoothing=eps)
                for weight in (None, tensor(w))
                for eps in (0.0, 0.2)
            )

        return loss

    value_j, grad_j = jax.jit(jax.value_and_grad(total(jl, jnp.asarray)))(jnp.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    value_t = total(tl, torch.tensor)(xt)
    (grad_t,) = torch.autograd.grad(value_t, xt)
    assert float(value_j) == 0.0 and float(value_t.detach()) == 0.0
    np.testing.assert_array_equal(np.asarray(grad_j), 0.0)
    np.testing.assert_array_equal(grad_t.numpy(), 0.0)
    raw = F.cross_entropy(torch.tensor(x), torch.tensor(y))
    assert torch.isnan(raw)  # the documented divergence from raw torch


def test_label_smoothing_is_torch_rule() -> None:
    """``(1-ε)·onehot + ε/C`` (not ``ε/(C-1)``): integer labels with smoothing equal the
    smoothed probability labels, across the two sides; ``ε = 1`` is the uniform target."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((N, C)), rng.integers(0, C, size=N)
    epsilons = (0.25, 1.0)
    smoothed = [(1 - eps) * np.eye(C)[y] + eps / C for eps in epsilons]

    def jax_fn(x, y):
        return [
            *[jl.softmax_cross_entropy(x, y, label_smoothing=eps) for eps in epsilons],
            *[jl.softmax_cross_entropy(x, jnp.asarray(t)) for t in smoothed],
        ]

    def torch_fn(x, y):
        return [
            *[tl.softmax_cross_entropy(x, torch.tensor(t)) for t in smoothed],
            *[tl.softmax_cross_entropy(x, y, label_smoothing=eps) for eps in epsilons],
        ]

    assert_parity(compare(jax_fn, torch_fn, [x, y]))


def test_extreme_logits() -> None:
    """``±1e4`` logits: finite losses and gradients, equal on both sides, in float32."""
    x = np.array([[1e4, -1e4, 0.0, 0.0], [-1e4, 1e4, 1e4, -1e4], [0.0, 0.0, -1e4, 1e4]])
    y = np.array([1, 0, 3])
    targets = (x > 0).astype(float)

    jy, jt, ty, tt = jnp.asarray(y), jnp.asarray(targets), torch.tensor(y), torch.tensor(targets)
    result = compare(
        lambda x: [
            jl.softmax_cross_entropy(x, jy, reduction="none", label_smoothing=0.1),
            jl.softmax_cross_entropy(x, jt.astype(x.dtype)),
            jl.binary_cross_entropy_with_logits(x, jt.astype(x.dtype), reduction="none"),
        ],
        lambda x: [
            tl.softmax_cross_entropy(x, ty, reduction="none", label_smoothing=0.1),
            tl.softmax_cross_entropy(x, tt.to(x.dtype)),
            tl.binary_cross_entropy_with_logits(x, tt.to(x.dtype), reduction="none"),
        ],
        [x],
        dtype="float32",
    )
    assert_parity(result)
    assert np.isfinite(result.value_abs) and np.isfinite(result.grad_abs)


@pytest.mark.parametrize("bad", [-1, C, -101])
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "nll_loss"])
def test_out_of_range_labels_raise_the_same_error(name, bad) -> None:
    """A class id out of range (not ignore_index): the same ValueError on both sides,
    naming its position (torch's own error names neither position nor fix)."""
    x, y = np.zeros((3, C)), np.array([0, bad, 2])
    message = rf"`labels` holds {bad} at position 1"
    with pytest.raises(ValueError, match=message):
        getattr(jl, name)(jnp.asarray(x), jnp.asarray(y))
    with pytest.raises(ValueError, match=message):
        getattr(tl, name)(torch.tensor(x), torch.tensor(y))


def test_mean_over_no_rows_is_zero_on_both_sides() -> None:
    for y in (np.zeros((0,), np.int64), np.zeros((0, C))):
        x = np.zeros((0, C))
        assert float(jl.softmax_cross_entropy(jnp.asarray(x), jnp.asarray(y))) == 0.0
        assert float(tl.softmax_cross_entropy(torch.tensor(x), torch.tensor(y))) == 0.0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m, x, y, p: m.softmax_cross_entropy(x, y, reduction="avg"), ValueError),
        (lambda m, x, y, p: m.softmax_cross_entropy(x, y, label_smoothing=1.5), ValueError),
        (lambda m, x, y, p: m.softmax_cross_entropy(x, y, label_smoothing=-0.1), ValueError),
        (lambda m, x, y, p: m.softmax_cross_entropy(x, y[:2]), ValueError),
        (lambda m, x, y, p: m.softmax_cross_entropy(x, p[:2]), ValueError),
        (lambda m, x, y, p: m.softmax_cross_entropy(x, p, ignore_index=0), ValueError),
        (lambda m, x, y, p: m.softmax_cross_entropy(x, y, weight=p[0, :2]), ValueError),
        (lambda m, x, y, p: m.nll_loss(x, p), TypeError),
        (lambda m, x, y, p: m.binary_cross_entropy_with_logits(x, p[:2]), ValueError),
        (
            lambda m, x, y, p: m.binary_cross_entropy_with_logits(x, p, pos_weight=p[0, :2]),
            ValueError,
        ),
        (lambda m, x, y, p: m.mse_loss(x, p[:2]), ValueError),
        (lambda m, x, y, p: m.mse_loss(x, p, reduction="batchmean"), ValueError),
        (lambda m, x, y, p: m.mse_loss(x, y), TypeError),
    ],
    ids=[
        "reduction",
        "smoothing > 1",
        "smoothing < 0",
        "label shape",
        "probability shape",
        "ignore_index with probabilities",
        "weight shape",
        "float nll labels",
        "bce shapes",
        "pos_weight shape",
        "mse shapes",
        "mse reduction",
        "integer target",
    ],
)
def test_errors(call, error) -> None:
    """Bad input raises the same error type on both sides."""
    x, y, p = np.zeros((3, C)), np.array([0, 1, 2]), np.full((3, C), 1 / C)
    with pytest.raises(error):
        call(jl, jnp.asarray(x), jnp.asarray(y), jnp.asarray(p))
    with pytest.raises(error):
        call(tl, torch.tensor(x), torch.tensor(y), torch.tensor(p))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision(dtype, rng) -> None:
    """bf16/fp16 logits are reduced in float32 and the loss returned in their dtype."""
    x = 4 * rng.standard_normal((N, C))
    y = class_ids(rng, N, 0.3)

    def losses(module, x, y):
        return [module.softmax_cross_entropy(x, y), module.mse_loss(x, 0.5 * x)]

    out_j = jax.jit(lambda x: losses(jl, x, jnp.asarray(y)))(jnp.asarray(x, dtype))
    out_t = losses(tl, torch.tensor(x).to(getattr(torch, dtype)), torch.tensor(y))
    for a, b in zip(out_j, out_t, strict=True):
        assert a.dtype == jnp.dtype(dtype) and b.dtype == getattr(torch, dtype)
        np.testing.assert_allclose(float(a), float(b), rtol=2.0**-7)


# --- generated inputs ------------------------------------------------------------------


@settings(max_examples=3, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 5),
    classes=st.integers(2, 5),
    ignored=st.floats(0.0, 1.0),
    smoothing=st.sampled_from([0.0, 0.1, 0.5]),
    weighted=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_softmax_cross_entropy_generated(
    seed, batch, classes, ignored, smoothing, weighted, reduction, dtype
) -> None:
    """Random labels (ignored ones too, possibly all), class weights, smoothing, reductions."""
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((batch, classes))
    y = np.where(rng.random(batch) < ignored, -100, rng.integers(0, classes, size=batch))
    w = rng.random(classes) + 0.1
    kwargs = {"label_smoothing": smoothing, "reduction": reduction}

    def loss(module):
        if weighted:
            return lambda x, y, w: module.softmax_cross_entropy(x, y, weight=w, **kwargs)
        return lambda x, y, w: module.softmax_cross_entropy(x, y, **kwargs)

    result = compare(loss(jl), loss(tl), [x, y, w], dtype=dtype)
    assert_parity(result)
