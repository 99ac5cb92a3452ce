"""jaxreg.information against SciPy in float64: values, gradients, masks, properties, edge cases."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.extend.core import Jaxpr, subjaxprs
from scipy.spatial.distance import jensenshannon

from jaxreg import (
    cross_entropy,
    entropy,
    entropy_from_logits,
    js_divergence,
    kl_divergence,
    kl_divergence_from_logits,
    log_softmax,
    logsumexp,
    self_information,
    softmax,
)
from jaxreg.information import kl_div, xlogy
from tests.helpers import (
    assert_each,
    assert_finite,
    assert_low_precision,
    assert_no_nan,
    check_grads64,
    generic_point,
    rounded,
    value_grad_hessian,
)

INF = float("inf")
LOG2 = math.log(2.0)


def distributions(rng: np.random.Generator, shape: tuple[int, ...], axis: int = -1) -> np.ndarray:
    return sps.softmax(rng.normal(size=shape), axis=axis)


def finite_weighted_sum(fn: Callable[..., jax.Array], weights: np.ndarray) -> Callable:
    """``x -> Σ c·fn(x)`` over the finite outputs: a scalar whose gradient is a generic VJP.

    ``weights`` has the input's shape; its first column weighs reduced (per-row) outputs.
    """

    def scalar(*args: jax.Array) -> jax.Array:
        out = fn(*args)
        c = weights if out.shape == weights.shape else weights[..., 0]
        return jnp.sum(jnp.where(jnp.isfinite(out), out, 0.0) * jnp.asarray(c, out.dtype))

    return scalar


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("axis", [-1, 0])
def test_logsumexp_softmax_log_softmax(rng, axis):
    x = rng.normal(size=(3, 4)) * 5
    np.testing.assert_allclose(logsumexp(x, axis), sps.logsumexp(x, axis=axis), rtol=1e-13)
    kept = logsumexp(x, axis, keepdims=True)
    np.testing.assert_allclose(kept, sps.logsumexp(x, axis=axis, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(softmax(x, axis), sps.softmax(x, axis=axis), rtol=1e-13)
    np.testing.assert_allclose(log_softmax(x, axis), sps.log_softmax(x, axis=axis), rtol=1e-13)
    grad = jax.grad(lambda v: jnp.sum(logsumexp(v, axis)))(x)
    np.testing.assert_allclose(grad, sps.softmax(x, axis=axis), rtol=1e-13)


@pytest.mark.parametrize("base", [None, 2])
def test_entropies_match_scipy(rng, base):
    p, q = distributions(rng, (3, 4)), distributions(rng, (3, 4))
    scale = 1.0 if base is None else math.log(base)
    np.testing.assert_allclose(self_information(p, base=base), -np.log(p) / scale, rtol=1e-13)
    np.testing.assert_allclose(
        entropy(p, base=base), scipy.stats.entropy(p, base=base, axis=-1), rtol=1e-13
    )
    np.testing.assert_allclose(entropy(p, base=base), sps.entr(p).sum(-1) / scale, rtol=1e-13)
    np.testing.assert_allclose(
        cross_entropy(p, q, base=base), -sps.xlogy(p, q).sum(-1) / scale, rtol=1e-13
    )
    np.testing.assert_allclose(
        kl_divergence(p, q, base=base), scipy.stats.entropy(p, q, base=base, axis=-1), rtol=1e-12
    )
    np.testing.assert_allclose(
        kl_divergence(p, q, base=base), sps.rel_entr(p, q).sum(-1) / scale, rtol=1e-12
    )
    # scipy's jensenshannon is the square root of the divergence.
    np.testing.assert_allclose(
        js_divergence(p, q, base=base), jensenshannon(p, q, base=base, axis=-1) ** 2, rtol=1e-12
    )


def test_from_logits_match_scipy(rng):
    a, b = rng.normal(size=(3, 4)) * 3, rng.normal(size=(3, 4)) * 3
    pa, pb = sps.softmax(a, axis=-1), sps.softmax(b, axis=-1)
    np.testing.assert_allclose(entropy_from_logits(a), scipy.stats.entropy(pa, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(
        entropy_from_logits(a, base=2), scipy.stats.entropy(pa, base=2, axis=-1), rtol=1e-12
    )
    np.testing.assert_allclose(
        kl_divergence_from_logits(a, b), scipy.stats.entropy(pa, pb, axis=-1), rtol=1e-12
    )


def test_analytic_gradients(rng):
    p, q = distributions(rng, (4,)), distributions(rng, (4,))
    np.testing.assert_allclose(jax.grad(entropy)(p), -(np.log(p) + 1), rtol=1e-13)
    np.testing.assert_allclose(jax.grad(cross_entropy, 1)(p, q), -p / q, rtol=1e-13)
    np.testing.assert_allclose(jax.grad(kl_divergence)(p, q), np.log(p / q) + 1, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(kl_divergence, 1)(p, q), -p / q, rtol=1e-13)
    m = (p + q) / 2
    np.testing.assert_allclose(jax.grad(js_divergence)(p, q), 0.5 * np.log(p / m), atol=1e-14)


def test_softmax_vjps_are_analytic_and_hold_the_max_constant(rng):
    x = rng.standard_normal((3, 5)) * 4
    ct = rng.standard_normal((3, 5))
    y = sps.softmax(x, axis=-1)
    got = jax.vjp(softmax, x)[1](ct)[0]
    np.testing.assert_allclose(got, y * (ct - np.sum(y * ct, -1, keepdims=True)), rtol=1e-13)
    got = jax.vjp(log_softmax, x)[1](ct)[0]
    np.testing.assert_allclose(got, ct - y * np.sum(ct, -1, keepdims=True), rtol=1e-13)
    # The row max is taken of a constant: differentiating the max's reduction (its
    # initial value is not max's identity) would make JAX build a tree of slices, several
    # times slower to run.
    for f in (softmax, log_softmax):
        vjp = jax.make_jaxpr(lambda x, f=f: jax.vjp(f, x)[1](x))(x)
        used = primitives(vjp.jaxpr)
        assert "reduce_max" in used or "reduce" in used, used
        assert "slice" not in used, used


def primitives(jaxpr: Jaxpr) -> set[str]:
    """The names of the primitives in ``jaxpr`` and in the jaxprs nested in it."""
    names = {eqn.primitive.name for eqn in jaxpr.eqns}
    for sub in subjaxprs(jaxpr):
        names |= primitives(sub)
    return names


# ----------------------------------------------------------------------------- masks


def random_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    mask = rng.random(shape) < 0.5
    mask[:, 0] = True  # every row keeps at least one entry here
    return mask


def test_masking_equals_slicing(rng):
    x = rng.normal(size=(3, 4)) * 3
    mask = random_mask(rng, x.shape)
    x[~mask] = 1e4  # masked entries must not leak, however large
    lse = logsumexp(x, where=mask)
    sm, lsm = softmax(x, where=mask), log_softmax(x, where=mask)
    ent = entropy_from_logits(x, where=mask)
    grad_lse = jax.grad(lambda v: jnp.sum(logsumexp(v, where=mask)))(x)
    grad_ent = jax.grad(lambda v: jnp.sum(entropy_from_logits(v, where=mask)))(x)
    for i in range(x.shape[0]):
        row, keep = x[i][mask[i]], mask[i]
        s = sps.softmax(row)
        h = scipy.stats.entropy(s)
        np.testing.assert_allclose(lse[i], sps.logsumexp(row), rtol=1e-13)
        np.testing.assert_allclose(sm[i][keep], s, rtol=1e-12)
        np.testing.assert_array_equal(sm[i][~keep], 0.0)
        np.testing.assert_allclose(lsm[i][keep], sps.log_softmax(row), rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(lsm[i][~keep], -INF)
        np.testing.assert_allclose(ent[i], h, rtol=1e-12)
        np.testing.assert_allclose(grad_lse[i][keep], s, rtol=1e-12)
        np.testing.assert_array_equal(grad_lse[i][~keep], 0.0)
        np.testing.assert_allclose(grad_ent[i][keep], -s * (np.log(s) + h), atol=1e-13)
        np.testing.assert_array_equal(grad_ent[i][~keep], 0.0)


MASKED_ROWS = {logsumexp: -INF, softmax: 0.0, log_softmax: -INF, entropy_from_logits: 0.0}


def test_fully_masked_rows(rng):
    x = rng.normal(size=(3, 4))
    x[1] = [5.0, 1e4, -2.0, 0.0]
    mask = random_mask(rng, x.shape)
    mask[:, :2] = True  # two kept entries: non-constant rows, non-zero gradients
    mask[1] = False
    weights = rng.normal(size=x.shape)
    fns = {
        fn.__name__: finite_weighted_sum(functools.partial(fn, where=mask), weights)
        for fn in MASKED_ROWS
    }
    results = value_grad_hessian(fns, (x,))

    def check(fn: Callable, expected: float) -> None:
        np.testing.assert_array_equal(fn(x, where=mask)[1], expected)
        _, grad, hessian = results[fn.__name__]
        assert_finite(grad, hessian)
        np.testing.assert_array_equal(grad[1], 0.0)
        assert np.all(np.any(np.asarray(grad)[[0, 2]] != 0.0, axis=-1))

    assert_each({fn.__name__: functools.partial(check, fn, e) for fn, e in MASKED_ROWS.items()})


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize(
    "fn",
    [logsumexp, softmax, log_softmax, entropy, entropy_from_logits],
    ids=lambda f: f.__name__,
)
def test_unary_axis_equals_moveaxis(rng, fn):
    x = distributions(rng, (2, 3, 4), axis=1)
    got = fn(x, axis=1)
    moved = fn(np.moveaxis(x, 1, -1), axis=-1)
    if got.ndim == 3:
        moved = jnp.moveaxis(moved, -1, 1)
    np.testing.assert_allclose(got, moved, rtol=1e-13)


@pytest.mark.parametrize(
    "fn",
    [cross_entropy, kl_divergence, kl_divergence_from_logits, js_divergence],
    ids=lambda f: f.__name__,
)
def test_binary_axis_equals_moveaxis(rng, fn):
    p, q = distributions(rng, (2, 3, 4), axis=1), distributions(rng, (2, 3, 4), axis=1)
    moved = fn(np.moveaxis(p, 1, -1), np.moveaxis(q, 1, -1), axis=-1)
    np.testing.assert_allclose(fn(p, q, axis=1), moved, rtol=1e-13)


logit_vectors = hnp.arrays(
    np.float64, (4,), elements=st.floats(-20, 20, allow_nan=False, allow_infinity=False)
)


@settings(max_examples=20, deadline=None)
@given(a=logit_vectors, b=logit_vectors)
def test_information_identities(a, b):
    p, q = sps.softmax(a), sps.softmax(b)
    h_p, h_pq, kl = float(entropy(p)), float(cross_entropy(p, q)), float(kl_divergence(p, q))
    # KL >= 0 up to rounding: at p ≈ q the terms cancel to a few ulps of either sign
    # (scipy's rel_entr gives the same -1.1e-16 at a = 0, b = [5e-14, 0, 0, 0]).
    assert kl >= -1e-15
    np.testing.assert_allclose(h_pq, h_p + kl, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(kl_divergence(p, q, base=2)), kl / LOG2, rtol=1e-12)
    np.testing.assert_allclose(float(entropy(p, base=2)), h_p / LOG2, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(float(cross_entropy(p, q, base=2)), h_pq / LOG2, rtol=1e-12)
    np.testing.assert_allclose(float(kl_divergence_from_logits(a, b)), kl, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(entropy_from_logits(a)), h_p, rtol=1e-9, atol=1e-12)
    js_pq, js_qp = float(js_divergence(p, q)), float(js_divergence(q, p))
    np.testing.assert_allclose(js_pq, js_qp, rtol=1e-12, atol=1e-15)
    assert -1e-15 <= js_pq <= LOG2 * (1 + 1e-12)
    np.testing.assert_allclose(float(js_divergence(p, q, base=2)), js_pq / LOG2, rtol=1e-12)
    assert float(kl_divergence(p, p)) == pytest.approx(0.0, abs=1e-14)


# ----------------------------------------------------------------------------- gradients


def test_check_grads(rng):
    """The functions with custom derivatives (``xlogy``, KL) and the masked and shifted
    ones, masked variants included, in one program (check_grads compiles a dozen
    programs per call).
    ``self_information`` and ``kl_divergence_from_logits`` are compositions of these; their
    gradients are checked against finite differences in tests/test_jax_transformations.py."""
    x = generic_point(rng, (3, 4))
    mask = random_mask(rng, x.shape)
    # Entries of order 1/4, so finite differences stay far from the boundary p = 0.
    p, q = (sps.softmax(0.3 * rng.normal(size=(3, 4)), axis=-1) for _ in range(2))

    def everything(x: jax.Array, p: jax.Array, q: jax.Array) -> dict[str, jax.Array]:
        out = {fn.__name__: fn(x) for fn in (logsumexp, softmax, log_softmax, entropy_from_logits)}
        for fn in (logsumexp, softmax, entropy_from_logits):
            out[f"{fn.__name__}[where]"] = fn(x, where=mask)
        out["log_softmax[where]"] = jnp.where(mask, log_softmax(x, where=mask), 0.0)
        out["entropy"] = entropy(p)
        out |= {fn.__name__: fn(p, q) for fn in (cross_entropy, kl_divergence, js_divergence)}
        return out

    check_grads64(everything, (x, p, q), order=2, jit=True)


# ----------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_logsumexp_ties_split_gradient_exactly(dtype):
    x = jnp.array([1e30, 1e30], dtype=dtype)
    value, grad = jax.value_and_grad(logsumexp)(x)
    assert np.isfinite(float(value))
    np.testing.assert_array_equal(grad, np.array([0.5, 0.5]))


def test_logsumexp_all_minus_inf_row():
    x = jnp.full((2, 3), -INF).at[0].set(jnp.array([0.0, 1.0, -INF]))
    value = logsumexp(x)
    assert float(value[1]) == -INF
    np.testing.assert_allclose(value[0], np.log(1 + np.e), rtol=1e-14)
    fns = {"logsumexp": finite_weighted_sum(logsumexp, np.ones((2, 3)))}
    _, grad, hessian = value_grad_hessian(fns, (x,))["logsumexp"]
    assert_finite(grad, hessian)
    np.testing.assert_allclose(grad[0], sps.softmax([0.0, 1.0, -INF]), rtol=1e-14)
    np.testing.assert_array_equal(grad[1], 0.0)


def test_extreme_logits_are_finite():
    x = jnp.array([[1e4, -1e4, 0.0], [-INF, 2.0, 1e4], [-1e4, -INF, -1e4]])
    weights = np.array([[0.2, -1.0, 0.5], [0.7, 0.3, -0.4], [1.0, 2.0, -3.0]])
    assert_finite(logsumexp(x), softmax(x), entropy_from_logits(x))
    lsm = log_softmax(x)
    np.testing.assert_array_equal(np.isinf(lsm), np.isinf(x))
    fns = {fn.__name__: finite_weighted_sum(fn, weights) for fn in MASKED_ROWS}
    results = value_grad_hessian(fns, (x,))
    assert_each({key: functools.partial(assert_finite, got) for key, got in results.items()})
    np.testing.assert_allclose(logsumexp(x), [1e4, 1e4, -1e4 + LOG2], rtol=1e-14)
    np.testing.assert_allclose(entropy_from_logits(x)[2], LOG2, rtol=1e-14)


def test_zero_log_zero_is_zero():
    p = jnp.array([0.5, 0.5, 0.0])
    q = jnp.array([0.25, 0.25, 0.5])
    np.testing.assert_allclose(entropy(p), LOG2, rtol=1e-15)
    np.testing.assert_allclose(cross_entropy(p, q), math.log(4.0), rtol=1e-15)
    np.testing.assert_allclose(kl_divergence(p, q), LOG2, rtol=1e-15)
    grad_p = jax.grad(entropy)(p)
    assert_no_nan(grad_p)
    np.testing.assert_allclose(grad_p[:2], -(np.log(0.5) + 1), rtol=1e-15)
    grad_q = jax.grad(cross_entropy, 1)(p, q)
    np.testing.assert_allclose(grad_q, [-2.0, -2.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(jax.grad(kl_divergence, 1)(p, q), [-2.0, -2.0, 0.0], rtol=1e-15)
    assert float(self_information(jnp.array(0.0))) == INF
    # The rule is for zeros (either sign), not for entries outside the domain.
    assert float(entropy(jnp.array([0.5, 0.5, -0.0]))) == LOG2
    assert np.isnan(entropy(jnp.array([1.5, -0.5])))
    assert np.isnan(entropy(jnp.array([1.0, jnp.nan])))
    assert float(entropy(jnp.array([1.0, 0.0, jnp.inf]))) == -INF


def test_kl_support_mismatch_is_infinite():
    p = jnp.array([0.5, 0.5, 0.0])
    q = jnp.array([1.0, 0.0, 0.0])
    assert float(kl_divergence(p, q)) == INF
    assert float(cross_entropy(p, q)) == INF
    assert_no_nan(jax.grad(kl_divergence, (0, 1))(p, q))
    a = jnp.array([0.0, 0.0, -INF])
    b = jnp.array([0.0, -INF, -INF])
    assert float(kl_divergence_from_logits(a, b)) == INF
    np.testing.assert_allclose(kl_divergence_from_logits(b, a), LOG2, rtol=1e-15)
    assert_finite(jax.grad(kl_divergence_from_logits, (0, 1))(b, a))


def test_kl_zero_zero_has_zero_gradient():
    p = jnp.array([0.4, 0.6, 0.0])
    q = jnp.array([0.5, 0.5, 0.0])
    expected = 0.4 * math.log(0.8) + 0.6 * math.log(1.2)
    np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-14)
    grad_p, grad_q = jax.grad(kl_divergence, (0, 1))(p, q)
    assert_finite(grad_p, grad_q)
    np.testing.assert_allclose(grad_p[:2], np.log([0.8, 1.2]) + 1, rtol=1e-14)
    np.testing.assert_allclose(grad_q[:2], [-0.8, -1.2], rtol=1e-14)
    np.testing.assert_array_equal([grad_p[2], grad_q[2]], 0.0)
    zero = jnp.zeros(3)
    value, grads = jax.value_and_grad(kl_divergence, (0, 1))(zero, zero)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grads, 0.0)
    np.testing.assert_array_equal(jax.grad(cross_entropy, 1)(zero, zero), 0.0)


def test_js_disjoint_supports_is_log2():
    p, q = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    np.testing.assert_allclose(js_divergence(p, q), LOG2, rtol=1e-15)
    np.testing.assert_allclose(js_divergence(p, q, base=2), 1.0, rtol=1e-15)
    assert_no_nan(jax.grad(js_divergence, (0, 1))(p, q))


# ----------------------------------------------------------------------------- low precision


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_low_precision(rng, dtype_name):
    """Values, and the gradient of logsumexp (the softmax), round the exact results: torch's
    bf16 logsumexp gradient is ~11% off, within one ulp (~0.4%) is required here."""
    x = rounded(rng.normal(size=(3, 4)) * 3 + 50, dtype_name)
    p = rounded(distributions(rng, (3, 4)), dtype_name)
    softmax_x = sps.softmax(x, axis=-1)
    cases = {
        "logsumexp": (logsumexp, x, sps.logsumexp(x, axis=-1)),
        "softmax": (softmax, x, softmax_x),
        "log_softmax": (log_softmax, x, sps.log_softmax(x, axis=-1)),
        "entropy_from_logits": (entropy_from_logits, x, scipy.stats.entropy(softmax_x, axis=-1)),
        "entropy": (entropy, p, sps.entr(p).sum(-1)),
        "grad logsumexp": (jax.grad(lambda v: jnp.sum(logsumexp(v))), x, softmax_x),
    }
    assert_low_precision(cases, dtype_name)


# ----------------------------------------------------------------------------- torch's dtype=


@pytest.mark.parametrize("fn", [softmax, log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(
    ("low", "high"), [(jnp.bfloat16, jnp.float32), (jnp.float32, jnp.float64)], ids=str
)
def test_dtype_casts_before_the_reduction(rng, fn, low, high):
    """``dtype=`` is torch's: ``fn(x, dtype=d) == fn(x.astype(d))`` exactly, in dtype ``d``,
    with the gradient of the cast (the upcast one, rounded to ``x``'s dtype)."""
    x = jnp.asarray(rng.normal(size=(3, 5)) * 4, low)
    out = fn(x, dtype=high)
    assert out.dtype == high
    np.testing.assert_array_equal(out, fn(x.astype(high)))
    w = jnp.asarray(rng.normal(size=(3, 5)), high)
    grad = jax.grad(lambda v: jnp.sum(w * fn(v, axis=0, dtype=high)))(x)
    expected = jax.grad(lambda v: jnp.sum(w * fn(v.astype(high), axis=0)))(x)
    assert grad.dtype == low
    np.testing.assert_array_equal(grad, expected)
    # a downcast too: torch casts first, the result is in the narrower dtype
    assert fn(jnp.asarray(x, high), dtype=low).dtype == low


def test_dtype_must_be_floating():
    with pytest.raises(TypeError, match="`dtype` must be a real floating dtype"):
        softmax(jnp.ones(3), dtype=jnp.int32)
    with pytest.raises(TypeError, match="`dtype` .* static"):
        jax.jit(lambda d: softmax(jnp.ones(3), dtype=d))(jnp.float32(0))


# ----------------------------------------------------------------------------- xlogy


def test_xlogy_matches_scipy_and_broadcasts(rng):
    """Public ``xlogy``: SciPy's values (0·log 0 = 0, x > 0 = y: -inf, y < 0: NaN), torch's
    broadcasting (Python numbers too), the promoted dtype; gradients never NaN."""
    x = np.concatenate([[0.0, 0.0, 2.0, 1.5, 0.0], rng.random(5)])
    y = np.concatenate([[0.0, 3.0, 0.0, -1.0, np.nan], rng.random(5) + 0.1])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(np.asarray(xlogy(x, y)), sps.xlogy(x, y))
    np.testing.assert_allclose(xlogy(x[:, None], y[None, 5:]), sps.xlogy(x[:, None], y[5:]))
    assert xlogy(jnp.ones(2, jnp.float32), 2.0).dtype == jnp.float32
    np.testing.assert_allclose(xlogy(3.0, jnp.array([1.0, 2.0])), [0.0, 3 * math.log(2)])
    grads = jax.grad(lambda a, b: jnp.sum(xlogy(a, b)), argnums=(0, 1))(x[:4], y[:4])
    np.testing.assert_array_equal(grads[0], [0.0, math.log(3.0), 0.0, 0.0])  # ∂x = log y
    np.testing.assert_array_equal(grads[1], [0.0, 0.0, 0.0, 0.0])  # held where y <= 0
    check_grads64(xlogy, (x[5:], y[5:]))
    with pytest.raises(ValueError, match="broadcast"):
        xlogy(jnp.ones(3), jnp.ones(2))


# ----------------------------------------------------------------------------- kl_div


def scipy_kl_div(log_q, target, reduction, log_target=False):
    p = np.exp(target) if log_target else target
    pointwise = sps.rel_entr(p, np.exp(log_q))
    return {
        "none": pointwise,
        "sum": pointwise.sum(),
        "mean": pointwise.mean(),
        "batchmean": pointwise.sum() / pointwise.shape[0],
    }[reduction]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_is_torchs_with_scipys_values(rng, reduction, log_target):
    """torch's ``F.kl_div(log q, p)``: KL(p‖q) pointwise, torch's four reductions
    (``batchmean`` is the mean of the rows' KL divergences), SciPy's values."""
    p, q = distributions(rng, (4, 5)), distributions(rng, (4, 5))
    target = np.log(p) if log_target else p
    out = kl_div(np.log(q), target, reduction=reduction, log_target=log_target)
    np.testing.assert_allclose(out, scipy_kl_div(np.log(q), target, reduction, log_target))
    if reduction == "batchmean":
        np.testing.assert_allclose(out, np.mean(kl_divergence(p, q)), rtol=1e-14)


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_gradients(rng, log_target):
    """``check_grads`` of the custom derivative (first and second order), interior points."""
    p, q = distributions(rng, (3, 4)), distributions(rng, (3, 4))
    target = np.log(p) if log_target else p

    def fn(log_q, t):
        return kl_div(log_q, t, reduction="none", log_target=log_target)

    check_grads64(fn, (np.log(q), target))


def test_kl_div_in_log_space_has_no_round_trip():
    """``log q = -800`` (``q`` below the smallest float64): exact and finite, no ``exp``."""
    log_q = np.array([-800.0, np.log(0.5)])
    p = np.array([0.5, 0.5])
    expected = 0.5 * (np.log(0.5) + 800.0) + 0.0
    np.testing.assert_allclose(kl_div(log_q, p, reduction="sum"), expected, rtol=1e-15)
    np.testing.assert_allclose(
        kl_div(log_q, np.log(p), reduction="sum", log_target=True), expected, rtol=1e-15
    )


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_zero_target(log_target):
    """``p = 0`` contributes 0, also where ``log q = -inf`` (torch: NaN), with finite
    gradients (``-log q`` in ``p``, 0 in ``log q``); ``p > 0 = q`` gives ``+inf``; NaN in
    either argument gives NaN."""
    log_q = np.array([-np.inf, np.log(0.25), -np.inf, np.log(0.75)])
    p = np.array([0.0, 0.0, 0.5, 0.5])
    target = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf) if log_target else p
    out = kl_div(log_q, target, reduction="none", log_target=log_target)
    np.testing.assert_array_equal(out[:3], [0.0, 0.0, np.inf])
    finite = jnp.array([1.0, 1.0, 0.0, 1.0])
    grads = jax.grad(
        lambda a, b: jnp.sum(finite * kl_div(a, b, reduction="none", log_target=log_target)),
        argnums=(0, 1),
    )(jnp.asarray(log_q), jnp.asarray(target))
    assert_finite(grads)
    np.testing.assert_array_equal(grads[0][:2], 0.0)  # ∂log q = -p
    if not log_target:
        np.testing.assert_allclose(grads[1][:2], [0.0, -np.log(0.25)])  # ∂p = -log q at p = 0
    for nan_in in (0, 1):
        args = [log_q.copy(), target.copy()]
        args[nan_in][0] = np.nan
        assert np.isnan(kl_div(*args, reduction="none", log_target=log_target)[0])


def test_kl_div_reductions_of_nothing_and_of_a_scalar():
    """``mean``/``batchmean`` over no elements are 0 (torch: NaN); a 0-d input is not
    divided by a batch size (torch)."""
    for reduction in ("mean", "batchmean", "sum"):
        assert float(kl_div(jnp.zeros((0, 3)), jnp.zeros((0, 3)), reduction=reduction)) == 0.0
    out = kl_div(jnp.asarray(np.log(0.25)), jnp.asarray(0.5), reduction="batchmean")
    np.testing.assert_allclose(out, 0.5 * np.log(2.0))


def test_kl_div_errors():
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        kl_div(jnp.zeros(2), jnp.zeros(2), reduction="average")
    with pytest.raises(ValueError, match="same shape"):
        kl_div(jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(TypeError, match="same dtype"):
        kl_div(jnp.zeros(2, jnp.float32), jnp.zeros(2, jnp.float64))


def _full_size_arrays(fn: Callable, *args: jax.Array) -> list[str]:
    """The instructions of ``fn``'s optimized program that produce an array of the
    first argument's shape, other than the parameters."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    shape = "[" + ",".join(map(str, args[0].shape)) + "]"
    entry = text[text.index("ENTRY") :].splitlines()[1:]
    made = [line for line in entry if " = " in line and "parameter(" not in line]
    return [line.split(",")[0] for line in made if shape in line.split(" = ")[1].split("(")[0]]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU fusion property")
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_entropy_terms_are_not_written_to_memory(dtype):
    """``xlogx`` has no comparison or select, so XLA:CPU fuses the ``p·log p`` terms into
    the reduction: the compiled program makes no ``[n, c]`` array. With a select (as in
    ``-Σ xlogy(p, p)``) the terms are written to memory and read back, about 1.6× slower;
    see jaxreg/_entropy_terms.py."""
    p = jnp.full((256, 128), 1 / 128, dtype)
    assert not _full_size_arrays(entropy, p)
    # The property is observable: the select form does make the array.
    assert _full_size_arrays(lambda p: -jnp.sum(xlogy(p, p), axis=-1), p)
