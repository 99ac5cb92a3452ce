"""jaxreg.losses against NumPy formulas with torch semantics, in float64, plus edge cases."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

from jaxreg import (
    binary_cross_entropy_with_logits,
    mse_loss,
    nll_loss,
    softmax_cross_entropy,
    squared_loss,
)
from tests.helpers import (
    LOW_PRECISION,
    assert_each,
    assert_edge_rules,
    assert_finite,
    assert_low_precision,
    check_grads64,
    generic_point,
    rounded,
    value_grad_hessian,
)

N, C = 3, 4
REDUCTIONS = ["none", "sum", "mean"]


def reduce(per: np.ndarray, reduction: str, denominator: float) -> np.ndarray:
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.sum() / denominator


def np_class_loss(
    log_probs: np.ndarray,
    labels: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> np.ndarray:
    """torch's ``cross_entropy``/``nll_loss`` on log-probabilities, class axis last.

    Integer labels: ``l_i = (1-ε)·w[y_i]·(-log p_i[y_i]) + ε/C·Σ_c w[c]·(-log p_i[c])``, 0 when
    ignored; mean is ``Σ l_i / Σ_valid w[y_i]``. Probability labels:
    ``l_i = -Σ_c w[c]·((1-ε)·y_ic + ε/C)·log p_ic``; mean is ``Σ l_i / N``.
    """
    n_classes = log_probs.shape[-1]
    w = np.ones(n_classes) if weight is None else weight
    eps = label_smoothing
    if labels.shape == log_probs.shape:
        target = (1 - eps) * labels + eps / n_classes
        per = -(w * sps.xlogy(target, np.exp(log_probs))).sum(-1)
        return reduce(per, reduction, per.size)
    valid = labels != ignore_index
    y = np.where(valid, labels, 0)
    picked = -np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    smooth = -(w * log_probs).sum(-1)
    per = np.where(valid, (1 - eps) * w[y] * picked + eps / n_classes * smooth, 0.0)
    return reduce(per, reduction, np.where(valid, w[y], 0.0).sum())


def make_labels(rng: np.random.Generator, shape: tuple[int, ...], ignore: int | None) -> np.ndarray:
    labels = rng.integers(0, C, size=shape).astype(np.int32)
    if ignore is not None:
        labels.flat[0] = C - 1  # a kept target (the ignored class id in the tests is 2 or -100)
        labels.flat[1] = ignore
    return labels


CE_GRID = list(itertools.product([None, "weight"], [None, -100, 2], [0.0, 0.1], REDUCTIONS))


@pytest.mark.parametrize(("weighted", "ignore", "smoothing", "reduction"), CE_GRID)
def test_softmax_cross_entropy_integer_labels(rng, weighted, ignore, smoothing, reduction):
    logits = rng.normal(size=(N, C)) * 3
    labels = make_labels(rng, (N,), ignore)
    weight = rng.uniform(0.5, 2.0, size=C) if weighted else None
    kwargs = {"weight": weight, "label_smoothing": smoothing, "reduction": reduction}
    if ignore is not None:
        kwargs["ignore_index"] = ignore
    expected = np_class_loss(sps.log_softmax(logits, axis=-1), labels, **kwargs)
    np.testing.assert_allclose(
        softmax_cross_entropy(logits, labels, **kwargs), expected, rtol=1e-12
    )
    if smoothing == 0.0:
        nll_kwargs = {k: v for k, v in kwargs.items() if k != "label_smoothing"}
        log_probs = sps.log_softmax(logits, axis=-1)
        np.testing.assert_allclose(
            nll_loss(log_probs, labels, **nll_kwargs),
            np_class_loss(log_probs, labels, **nll_kwargs),
            rtol=1e-12,
        )


@pytest.mark.parametrize(
    ("weighted", "smoothing", "reduction"),
    [(w, s, r) for w, s, r in itertools.product([False, True], [0.0, 0.2], REDUCTIONS)],
)
def test_softmax_cross_entropy_probability_labels(rng, weighted, smoothing, reduction):
    logits = rng.normal(size=(N, C)) * 3
    labels = sps.softmax(rng.normal(size=(N, C)), axis=-1)
    labels[0] = [1.0, 0.0, 0.0, 0.0]
    weight = rng.uniform(0.5, 2.0, size=C) if weighted else None
    kwargs = {"weight": weight, "label_smoothing": smoothing, "reduction": reduction}
    expected = np_class_loss(sps.log_softmax(logits, axis=-1), labels, **kwargs)
    np.testing.assert_allclose(
        softmax_cross_entropy(logits, labels, **kwargs), expected, rtol=1e-12
    )


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.normal(size=(N, C))
    labels = make_labels(rng, (N,), None)
    grad = jax.grad(softmax_cross_entropy)(logits, labels)
    expected = (sps.softmax(logits, axis=-1) - np.eye(C)[labels]) / N
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)


def test_class_axis_equals_moveaxis(rng):
    logits = rng.normal(size=(3, C, 2))
    labels = make_labels(rng, (3, 2), -100)
    probs = sps.softmax(rng.normal(size=(3, C, 2)), axis=1)
    moved = np.moveaxis(logits, 1, -1)
    for reduction in ("none", "mean"):
        for target, moved_target in ((labels, labels), (probs, np.moveaxis(probs, 1, -1))):
            np.testing.assert_allclose(
                softmax_cross_entropy(logits, target, axis=1, reduction=reduction),
                softmax_cross_entropy(moved, moved_target, reduction=reduction),
                rtol=1e-13,
            )
        np.testing.assert_allclose(
            nll_loss(logits, labels, axis=1, reduction=reduction),
            nll_loss(moved, labels, reduction=reduction),
            rtol=1e-13,
        )


def test_extra_batch_axes(rng):
    logits = rng.normal(size=(2, 3, C))
    labels = make_labels(rng, (2, 3), -100)
    expected = np_class_loss(sps.log_softmax(logits, axis=-1), labels, reduction="none")
    got = softmax_cross_entropy(logits, labels, reduction="none")
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# ----------------------------------------------------------------------------- binary, regression


def np_bce_with_logits(x, t, weight=None, pos_weight=None, reduction="mean"):
    log_sig, log_one_minus_sig = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
    pw = 1.0 if pos_weight is None else pos_weight
    per = -(pw * t * log_sig + (1 - t) * log_one_minus_sig)
    per = per if weight is None else weight * per
    return reduce(per, reduction, per.size)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_with_logits(rng, reduction, weighted):
    x = rng.normal(size=(N, C)) * 4
    t = rng.uniform(size=(N, C))
    t[0] = [0.0, 1.0, 1.0, 0.0]
    weight = rng.uniform(0.5, 2.0, size=(N, C)) if weighted else None
    pos_weight = rng.uniform(0.5, 3.0, size=(C,)) if weighted else None
    got = binary_cross_entropy_with_logits(
        x, t, weight=weight, pos_weight=pos_weight, reduction=reduction
    )
    np.testing.assert_allclose(
        got, np_bce_with_logits(x, t, weight, pos_weight, reduction), rtol=1e-10
    )


def test_binary_cross_entropy_gradient(rng):
    x, t = rng.normal(size=(N, C)), rng.uniform(size=(N, C))
    grad = jax.grad(binary_cross_entropy_with_logits)(x, t)
    np.testing.assert_allclose(grad, (sps.expit(x) - t) / x.size, rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_squared_loss(rng, reduction):
    pred, target = rng.normal(size=(N, C)), rng.normal(size=(N, C))
    np.testing.assert_allclose(squared_loss(pred, target), 0.5 * (pred - target) ** 2, rtol=1e-14)
    np.testing.assert_allclose(
        jax.grad(lambda p: jnp.sum(squared_loss(p, target)))(pred), pred - target, rtol=1e-14
    )
    expected = reduce((pred - target) ** 2, reduction, pred.size)
    np.testing.assert_allclose(mse_loss(pred, target, reduction=reduction), expected, rtol=1e-14)


# ----------------------------------------------------------------------------- gradients


def test_softmax_cross_entropy_check_grads(rng):
    """Integer labels (weights, smoothing, an ignored target) and probability labels, in one
    program (check_grads compiles a dozen programs per call). The other losses have no custom
    derivative of their own; their gradients are checked against formulas above and against
    finite differences in tests/test_jax_transformations.py."""
    x = generic_point(rng, (N, C))
    labels = make_labels(rng, (N,), -100)
    weight = rng.uniform(0.5, 2.0, size=(C,))
    probs = sps.softmax(rng.normal(size=(N, C)), axis=-1)

    def both(v: jax.Array) -> tuple[jax.Array, jax.Array]:
        kwargs = {"weight": weight, "label_smoothing": 0.1, "reduction": "none"}
        return softmax_cross_entropy(v, labels, **kwargs), softmax_cross_entropy(v, probs, **kwargs)

    check_grads64(both, (x,), order=2, jit=True)


# ----------------------------------------------------------------------------- edge cases


def test_every_target_ignored(rng):
    """torch gives NaN for the mean here; the convention is loss 0, gradient 0."""
    logits = rng.normal(size=(N, C))
    labels = np.full((N,), -100, dtype=np.int32)
    weight = rng.uniform(0.5, 2.0, size=C)
    fns = {
        f"{fn.__name__}-{reduction}": functools.partial(
            fn, labels=labels, weight=weight, reduction=reduction
        )
        for fn in (softmax_cross_entropy, nll_loss)
        for reduction in REDUCTIONS
    }
    for key, fn in fns.items():
        np.testing.assert_array_equal(fn(logits), 0.0, err_msg=key)
    assert_edge_rules(fns, (logits,), value=0.0, grad=np.zeros((N, C)))


def test_extreme_logits_are_finite():
    logits = jnp.array([[1e4, -1e4, 0.0, -jnp.inf], [-1e4, 1e4, -jnp.inf, 0.0]])
    labels = jnp.array([1, 0], dtype=jnp.int32)
    # Probability labels: 0 · log 0 = 0 where the label is zero and the logit is -inf.
    probs = jnp.array([[0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    fns = {
        "integer labels": lambda x: softmax_cross_entropy(x, labels),
        "probability labels": lambda x: softmax_cross_entropy(x, probs),
        "binary": lambda x: binary_cross_entropy_with_logits(x[:, :2], probs[:, :2]),
    }
    results = value_grad_hessian(fns, (logits,))
    assert_each({key: functools.partial(assert_finite, got) for key, got in results.items()})
    value, grad, _ = results["integer labels"]
    np.testing.assert_allclose(value, 2e4, rtol=1e-14)
    np.testing.assert_allclose(grad, np.array([[1, -1, 0, 0], [-1, 1, 0, 0]]) / 2, atol=1e-15)
    np.testing.assert_allclose(results["probability labels"][0], 1e4 / 2, rtol=1e-14)
    np.testing.assert_allclose(results["binary"][0], 1e4 / 4, rtol=1e-14)


# ----------------------------------------------------------------------------- low precision


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_low_precision_losses(rng, dtype_name):
    """Values and the CE gradient round the exact results (optax's bf16 CE gradient is ~1%
    off; within one ulp, ~0.4%, is required here)."""
    logits = rounded(rng.normal(size=(N, C)) * 3 + 50, dtype_name)
    labels = make_labels(rng, (N,), None)
    log_probs = rounded(sps.log_softmax(logits, axis=-1), dtype_name)
    x = rounded(rng.normal(size=(N, C)) * 4, dtype_name)
    t = jnp.asarray(rounded(rng.uniform(size=(N, C)), dtype_name), LOW_PRECISION[dtype_name][0])
    t64 = np.asarray(t, dtype=np.float64)
    ce = functools.partial(softmax_cross_entropy, labels=labels)
    cases = {
        "softmax_cross_entropy": (
            ce,
            logits,
            np_class_loss(sps.log_softmax(logits, axis=-1), labels),
        ),
        # (softmax - onehot) / N
        "grad softmax_cross_entropy": (
            jax.grad(ce),
            logits,
            (sps.softmax(logits, axis=-1) - np.eye(C)[labels]) / N,
        ),
        "nll_loss": (
            functools.partial(nll_loss, labels=labels),
            log_probs,
            np_class_loss(log_probs, labels),
        ),
        "binary_cross_entropy_with_logits": (
            functools.partial(binary_cross_entropy_with_logits, targets=t),
            x,
            np_bce_with_logits(x, t64),
        ),
        "mse_loss": (functools.partial(mse_loss, target=t), x, ((x - t64) ** 2).mean()),
    }
    # atol: float32 cancellation in softmax - 1 for the target class.
    assert_low_precision(cases, dtype_name, atol=1e-7)
    # Elementwise (no reduction to protect): the input dtype, a few roundings of it.
    dtype, rtol, _ = LOW_PRECISION[dtype_name]
    squared = squared_loss(jnp.asarray(x, dtype), t)
    assert squared.dtype == dtype
    np.testing.assert_allclose(np.asarray(squared, np.float64), 0.5 * (x - t64) ** 2, rtol=4 * rtol)
