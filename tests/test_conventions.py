"""The rows of the README's convention table that concern empty and degenerate shapes,
class ids and class weights, and fully masked rows — one test per row, float32 and
float64, eager and under ``jax.jit``. (NaN propagation: tests/test_nan.py; traced
hyperparameters: tests/test_traced.py; norms over the float range: tests/test_norms.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg
from jaxreg.information import xlogy
from tests.helpers import assert_finite

DTYPES = [jnp.float32, jnp.float64]
MODES = ["eager", "jit"]


def run(mode, fn, *args):
    return jax.jit(fn)(*args) if mode == "jit" else fn(*args)


# --- empty axes -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_axis(mode, dtype):
    """logsumexp -inf, entropies 0, softmax/log_softmax empty, gradients 0 (no error)."""
    x = jnp.zeros((3, 0), dtype)
    out = run(mode, lambda x: jaxreg.logsumexp(x), x)
    np.testing.assert_array_equal(out, np.full(3, -np.inf))
    assert out.dtype == dtype
    np.testing.assert_array_equal(run(mode, lambda x: jaxreg.entropy_from_logits(x), x), 0.0)
    np.testing.assert_array_equal(run(mode, lambda x: jaxreg.entropy(x), x), 0.0)
    assert run(mode, lambda x: jaxreg.softmax(x), x).shape == (3, 0)
    assert run(mode, lambda x: jaxreg.log_softmax(x), x).shape == (3, 0)
    assert run(mode, lambda x: jaxreg.logsumexp(x, keepdims=True), x).shape == (3, 1)
    grad = jax.grad(lambda x: jnp.sum(jnp.where(jnp.isinf(y := jaxreg.logsumexp(x)), 0.0, y)))
    assert grad(x).shape == (3, 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("labels", ["int", "probabilities"])
def test_mean_cross_entropy_over_no_rows_is_zero(mode, labels):
    """0 rows: the mean is 0 with gradient 0, for class ids and probabilities alike."""
    x = jnp.zeros((0, 4))
    y = jnp.zeros((0,), jnp.int32) if labels == "int" else jnp.zeros((0, 4))
    loss = run(mode, lambda x: jaxreg.softmax_cross_entropy(x, y), x)
    assert float(loss) == 0.0
    grad = run(mode, jax.grad(lambda x: jaxreg.softmax_cross_entropy(x, y)), x)
    assert grad.shape == (0, 4)


# --- tuples of axes ---------------------------------------------------------------------


@pytest.mark.parametrize("axis", [(0, 1), (1, 2), (0, 2), None, [2, 0]])
def test_tuples_of_axes_equal_one_flattened_axis(rng, axis):
    x = rng.standard_normal((3, 4, 5))
    axes = tuple(range(3)) if axis is None else tuple(sorted(a % 3 for a in axis))
    rest = [a for a in range(3) if a not in axes]
    flat = np.transpose(x, rest + list(axes)).reshape(*(x.shape[a] for a in rest), -1)
    np.testing.assert_allclose(
        jaxreg.logsumexp(x, axis=axis), jaxreg.logsumexp(flat, axis=-1), rtol=1e-14
    )
    np.testing.assert_allclose(
        jaxreg.entropy_from_logits(x, axis=axis),
        jaxreg.entropy_from_logits(flat, axis=-1),
        rtol=1e-13,
    )
    np.testing.assert_allclose(jnp.sum(jaxreg.softmax(x, axis=axis), axis=axis), 1.0, rtol=1e-14)
    np.testing.assert_allclose(
        jax.nn.log_softmax(x, axis=axes), jaxreg.log_softmax(x, axis=axis), rtol=1e-13
    )
    p = jaxreg.softmax(x, axis=axis)
    np.testing.assert_allclose(
        jaxreg.entropy(p, axis=axis), jaxreg.entropy_from_logits(x, axis=axis), rtol=1e-12
    )


def test_bad_axis_names_axis():
    with pytest.raises(ValueError, match="`axis`"):
        jaxreg.logsumexp(jnp.zeros((2, 3)), axis=(0, 5))


# --- fully masked rows of length 1 and 0 -----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length", [0, 1, 2])
def test_masked_rows_of_length_one(mode, dtype, length):
    """A fully masked row: softmax 0, log_softmax -inf, entropy 0, logsumexp -inf, every
    gradient 0 — also for rows of length 1 (XLA drops a reduction's initial value there)
    and 0."""
    x = jnp.ones((2, length), dtype)
    where = jnp.zeros((2, length), bool)
    fns = {
        "softmax": lambda x: jaxreg.softmax(x, where=where),
        "log_softmax": lambda x: jaxreg.log_softmax(x, where=where),
        "entropy_from_logits": lambda x: jaxreg.entropy_from_logits(x, where=where),
        "logsumexp": lambda x: jaxreg.logsumexp(x, where=where),
    }
    expected = {"softmax": 0.0, "log_softmax": -np.inf, "entropy_from_logits": 0.0}
    for name, fn in fns.items():
        out = np.asarray(run(mode, fn, x))
        want = expected.get(name, -np.inf)
        np.testing.assert_array_equal(out, np.full(out.shape, want), err_msg=name)

        def finite_sum(x, fn=fn):
            y = fn(x)
            return jnp.sum(jnp.where(jnp.isinf(y), 0.0, y))

        grad = run(mode, jax.grad(finite_sum), x)
        np.testing.assert_array_equal(grad, 0.0, err_msg=name)


# --- class ids --------------------------------------------------------------------------


def _losses():
    return {
        "softmax_cross_entropy": lambda x, y, **kw: jaxreg.softmax_cross_entropy(x, y, **kw),
        "nll_loss": lambda x, y, **kw: jaxreg.nll_loss(jax.nn.log_softmax(x), y, **kw),
        "fused_linear_cross_entropy": lambda x, y, **kw: jaxreg.fused_linear_cross_entropy(
            x, jnp.eye(x.shape[-1], dtype=x.dtype), y, **kw
        ),
    }


@pytest.mark.parametrize("loss", sorted(_losses()))
@pytest.mark.parametrize("bad", [-1, 4, 100, -101])
def test_concrete_out_of_range_labels_raise(loss, bad):
    x = jnp.ones((3, 4))
    y = jnp.array([0, bad, 2])
    with pytest.raises(ValueError, match=rf"`labels` holds {bad} at position 1"):
        _losses()[loss](x, y)
    # under a caller's jit with labels closed over (concrete), it raises too
    with pytest.raises(ValueError, match="at position 1"):
        jax.jit(lambda x: _losses()[loss](x, y))(x)


@pytest.mark.parametrize("loss", sorted(_losses()))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [-1, 4])
def test_traced_out_of_range_label_gives_nan_loss_and_nan_gradient_row(rng, loss, dtype, bad):
    """A label of -1 must not train on the last class, nor a label >= C give a finite
    gradient: that row's loss and gradient are NaN, the other rows are exact."""
    x = jnp.asarray(rng.standard_normal((3, 4)), dtype)
    y = jnp.array([0, bad, 2])
    fn = _losses()[loss]
    per_row = np.asarray(jax.jit(lambda x, y: fn(x, y, reduction="none"))(x, y))
    assert np.isnan(per_row[1]) and np.isfinite(per_row[[0, 2]]).all()
    good = np.asarray(jax.jit(lambda x, y: fn(x, y, reduction="none"))(x, jnp.array([0, 1, 2])))
    np.testing.assert_array_equal(per_row[[0, 2]], good[[0, 2]])
    grad = np.asarray(jax.jit(jax.grad(lambda x, y: fn(x, y, reduction="sum")))(x, y))
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()
    assert np.isnan(jax.jit(fn)(x, y))


def test_float_class_ids_get_a_clear_error():
    with pytest.raises(ValueError, match="class ids must be integers"):
        jaxreg.softmax_cross_entropy(jnp.ones((3, 4)), jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="`labels` must be an integer"):
        jaxreg.nll_loss(jnp.ones((3, 4)), jnp.array([0.0, 1.0, 2.0]))


# --- class weights ----------------------------------------------------------------------


def _torch_weighted_mean(x, y, w, eps=0.0):
    """torch's weighted mean of the smoothed cross-entropy, in float64 NumPy."""
    x = np.asarray(x, np.float64)
    log_p = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
    log_p -= x.max(-1, keepdims=True)
    c = x.shape[-1]
    valid = y != -100
    rows = np.where(valid, y, 0)
    nll = -log_p[np.arange(len(y)), rows] * w[rows]
    smooth = -(log_p * w).sum(-1)
    losses = np.where(valid, (1 - eps) * nll + eps / c * smooth, 0.0)
    return losses.sum() / np.where(valid, w[rows], 0.0).sum()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "weight", [[-1.0, -2.0, -3.0], [1.0, -1.0, 0.5], [0.0, 1.0, 1.0]], ids=["neg", "mixed", "zero"]
)
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_class_weighted_mean_divides_as_torch(mode, weight, eps):
    """Any weight sum (negative, mixed) is torch's division; the issue's reproducer gives
    torch's 1.4824, not 0."""
    x = jnp.array([[0.1, -0.3, 0.7], [1.0, 0.2, -0.5]])
    y = jnp.array([1, 1])
    w = jnp.array(weight)
    got = run(mode, lambda x: jaxreg.softmax_cross_entropy(x, y, weight=w, label_smoothing=eps), x)
    np.testing.assert_allclose(got, _torch_weighted_mean(x, np.asarray(y), np.asarray(w), eps))
    if weight == [-1.0, -2.0, -3.0] and eps == 0.0:
        np.testing.assert_allclose(got, 1.4824476, rtol=1e-6)
        nll = run(mode, lambda x: jaxreg.nll_loss(jax.nn.log_softmax(x), y, weight=w), x)
        np.testing.assert_allclose(nll, got, rtol=1e-12)


def test_zero_weight_sum_with_valid_targets_divides():
    """Σ valid weights = 0 with valid targets is torch's x/0, not the 'no target' 0."""
    x = jnp.array([[0.1, -0.3], [1.0, 0.2]])
    loss = jaxreg.softmax_cross_entropy(x, jnp.array([0, 1]), weight=jnp.array([1.0, -1.0]))
    assert not np.isfinite(loss)


def test_no_valid_target_is_zero_with_zero_gradient():
    x = jnp.ones((3, 4))
    y = jnp.full(3, -100)
    for w in (None, jnp.arange(1.0, 5.0)):
        value, grad = jax.value_and_grad(
            lambda x, w=w: jaxreg.softmax_cross_entropy(x, y, weight=w)
        )(x)
        assert float(value) == 0.0 and not np.any(grad)


def test_smoothing_off_adds_exactly_nothing():
    """With ε = 0 (concrete or traced) a -inf logit of another class, or a NaN weight of a
    class no label names, changes nothing (as in torch)."""
    x = jnp.array([[1.0, -jnp.inf, 0.5], [0.2, 0.3, -jnp.inf]])
    y = jnp.array([0, 1])
    w = jnp.array([1.0, 2.0, jnp.nan])
    for eps in (0.0, jnp.asarray(0.0)):
        loss = jax.jit(lambda e: jaxreg.softmax_cross_entropy(x, y, label_smoothing=e))(eps)
        assert np.isfinite(loss)
        grad = jax.grad(lambda x, e=eps: jaxreg.softmax_cross_entropy(x, y, label_smoothing=e))(x)
        assert not np.isnan(grad).any()
        no_nan = jaxreg.softmax_cross_entropy(
            x.at[:, 1:].set(0.0), y, weight=w, label_smoothing=eps
        )
        assert np.isfinite(no_nan)


# --- 0·log 0 is for zeros, not for NaN ---------------------------------------------------


def test_xlogy_zero_times_nan_is_nan():
    assert np.isnan(xlogy(jnp.array(0.0), jnp.array(jnp.nan)))
    assert float(xlogy(jnp.array(0.0), jnp.array(0.0))) == 0.0
    assert float(xlogy(jnp.array(0.0), jnp.array(3.0))) == 0.0
    assert np.isnan(jaxreg.kl_divergence(jnp.array([0.0, 1.0]), jnp.array([jnp.nan, 1.0])))
    assert np.isnan(jaxreg.cross_entropy(jnp.array([0.0, 1.0]), jnp.array([jnp.nan, 1.0])))


def test_kl_div_zero_target_is_zero_not_nan():
    """torch's ``F.kl_div`` order: ``p = 0`` contributes 0 also where ``log q = -inf`` (torch:
    NaN), in both target spaces; a NaN ``log q`` beside it is still NaN."""
    log_q = jnp.array([-jnp.inf, -1.0])
    for target, log_target in [(jnp.array([0.0, 1.0]), False), (jnp.array([-jnp.inf, 0.0]), True)]:
        out = jaxreg.kl_div(log_q, target, reduction="none", log_target=log_target)
        np.testing.assert_array_equal(out, [0.0, 1.0])
        nan_q = log_q.at[0].set(jnp.nan)
        assert np.isnan(jaxreg.kl_div(nan_q, target, reduction="sum", log_target=log_target))


# --- negative orders, masked norms --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_order_norm_with_a_zero_entry(mode, dtype):
    """``p < 0`` with a zero entry: 0 (torch's and NumPy's value), gradient 0."""
    x = jnp.array([0.0, 2.0, -3.0], dtype)
    value, grad = run(mode, jax.value_and_grad(lambda x: jaxreg.vector_norm(x, -1.5)), x)
    assert float(value) == 0.0 and value.dtype == dtype
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_vector_norm(mode, dtype):
    """``where`` all False: the norm of no entries, 0 for ``p >= 0`` and ``inf`` (a sum or
    max over nothing), ``+inf`` for ``-inf`` and ``p < 0``; gradient 0; a NaN there takes
    no part."""
    x = jnp.array([[jnp.nan, 2.0], [1.0, 2.0]], dtype)
    mask = jnp.array([[False, False], [True, True]])
    for ord, empty in [(2, 0.0), (0.5, 0.0), (jnp.inf, 0.0), (0, 0.0), (-jnp.inf, jnp.inf)]:
        out = run(mode, lambda x, o=ord: jaxreg.vector_norm(x, o, axis=-1, where=mask), x)
        assert float(out[0]) == empty and np.isfinite(float(out[1]))
    out, grad = run(
        mode,
        jax.value_and_grad(lambda x: jaxreg.vector_norm(x, -1.5, axis=-1, where=mask)[1]),
        x,
    )
    np.testing.assert_array_equal(grad[0], 0.0)
    assert float(jaxreg.vector_norm(x, -1.5, axis=-1, where=mask)[0]) == jnp.inf


# --- traced rates ------------------------------------------------------------------------


def test_traced_dropout_rate_one_is_zero_with_zero_gradient():
    x = jnp.arange(1.0, 5.0)
    key = jax.random.key(0)
    out = jax.jit(lambda r: jaxreg.dropout(x, r, key=key))(1.0)
    np.testing.assert_array_equal(out, 0.0)
    grad = jax.jit(jax.grad(lambda x, r: jnp.sum(jaxreg.dropout(x, r, key=key))))(x, 1.0)
    np.testing.assert_array_equal(grad, 0.0)
    assert_finite(grad)
