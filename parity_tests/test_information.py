"""Parity of :mod:`jaxreg.information` with :mod:`torch_ref.information` and raw torch.

Values and gradients (VJPs) in float32 and float64, on every available device.
Related functions share one comparison (each output is checked): logsumexp,
softmax, log_softmax and KL of logits; the same with ``where`` masks (fully masked
rows included); self-information and the entropies; cross-entropy, KL and JS of
distributions with exact zeros, in nats and bits; the raw torch functions where
they are finite (``torch.logsumexp``, ``torch.softmax``, ``torch.log_softmax``,
``Categorical.entropy``, ``torch.distributions.kl_divergence``,
``torch.special.entr``/``xlogy``, ``F.kl_div``). Then the convention table's edge
cases (all ``-inf`` and fully masked rows, ``0·log 0``, ``KL = +inf``, the tie at
``1e30``, ``±1e4`` logits, errors) and generated inputs.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, kl_divergence

from jaxreg import information as ji
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import information as ti

INF = math.inf


def distribution(rng: np.random.Generator, shape, zeros: float = 0.0, keep=None) -> np.ndarray:
    """Random distributions along the last axis, with about ``zeros`` of the entries 0.

    Every row keeps at least one positive entry; ``keep`` (a boolean array) marks
    entries that must stay positive.
    """
    p = rng.random(shape) + 0.05
    drop = rng.random(shape) < zeros
    kept = rng.integers(0, shape[-1], size=(*shape[:-1], 1))
    np.put_along_axis(drop, kept, False, axis=-1)
    if keep is not None:
        drop &= ~keep
    p = np.where(drop, 0.0, p)
    return p / p.sum(axis=-1, keepdims=True)


def p_and_q(rng: np.random.Generator, shape=(3, 5), zeros=0.3) -> tuple[np.ndarray, np.ndarray]:
    """``p`` with zeros, ``q`` with zeros only where ``p`` is 0 (so H(p,q), KL are finite)."""
    p = distribution(rng, shape, zeros)
    return p, distribution(rng, shape, zeros, keep=p > 0)


def two_logits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return 3 * rng.standard_normal((3, 5)), 3 * rng.standard_normal((3, 5))


def masked_logits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    mask = rng.random((4, 5)) < 0.6
    mask[0] = False  # a fully masked row
    mask[1:, 0] = True  # every other row keeps an entry
    return 3 * rng.standard_normal((4, 5)), mask


def logit_family(module):
    return lambda x, y: [
        module.logsumexp(x),
        module.softmax(x),
        module.log_softmax(x),
        module.entropy_from_logits(x),
        module.kl_divergence_from_logits(x, y),
    ]


def masked_family(module):
    return lambda x, mask: [
        module.logsumexp(x, where=mask),
        module.softmax(x, where=mask),
        module.log_softmax(x, where=mask),
        module.entropy_from_logits(x, where=mask),
    ]


def divergence_family(module):
    return lambda p, q: [
        module.entropy(p),
        module.cross_entropy(p, q),
        module.kl_divergence(p, q),
        module.js_divergence(p, q),
    ]


def torch_raw(x, y, p, q):
    """Raw torch's twins of jaxreg's functions on logits ``x, y`` and positive ``p, q``."""
    return [
        torch.logsumexp(x, -1),
        torch.softmax(x, -1),
        torch.log_softmax(x, -1),
        Categorical(logits=x).entropy(),
        kl_divergence(Categorical(logits=x), Categorical(logits=y)),
        torch.special.entr(p).sum(-1),
        -torch.special.xlogy(p, q).sum(-1),
        F.kl_div(q.log(), p, reduction="none").sum(-1),
    ]


def twin_case(name: str, call, inputs, grad_argnums=(0,)) -> ParityCase:
    """A case calling ``call(module, *args)`` with jaxreg and with torch_ref."""
    return ParityCase(
        f"information.{name}",
        lambda *args: call(ji, *args),
        lambda *args: call(ti, *args),
        inputs,
        grad_argnums=grad_argnums,
    )


def logits(*shape: int):
    return lambda rng: (3 * rng.standard_normal(shape),)


def divergence(name: str):
    """``name(p, q)`` in nats and in bits."""
    return lambda m, p, q: [getattr(m, name)(p, q), getattr(m, name)(p, q, base=2)]


PQ = (0, 1)


def lower(x):
    """``x`` in a lower precision, either framework: float64 -> float32 -> bfloat16."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float32 if x.dtype == torch.float64 else torch.bfloat16)
    return x.astype(jnp.float32 if x.dtype == jnp.float64 else jnp.bfloat16)


def log_or_minus_inf(p: np.ndarray) -> np.ndarray:
    """``log p`` with ``-inf`` at the zeros (no divide-by-zero warning)."""
    positive = p > 0
    return np.where(positive, np.log(np.where(positive, p, 1.0)), -INF)


def kl_div_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log q, p, log p)`` with exact zeros in ``p`` (``log p = -inf``) and in ``q``
    where ``p`` is 0 (``log q = -inf``): torch's NaN points, jaxreg's 0."""
    p, q = p_and_q(rng, (3, 5), zeros=0.3)
    return log_or_minus_inf(q), p, log_or_minus_inf(p)


def positive_kl_div_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(log q, p, log p)`` without zeros: where raw torch is finite."""
    p, q = p_and_q(rng, (3, 5), zeros=0.0)
    return np.log(q), p, np.log(p)


KL_DIV_REDUCTIONS = ("none", "sum", "batchmean", "mean")


def kl_div_family(module):
    """``kl_div`` with every reduction, on probabilities and on log-probabilities."""
    return lambda log_q, p, log_p: [
        *[module.kl_div(log_q, p, reduction=r) for r in KL_DIV_REDUCTIONS],
        *[module.kl_div(log_q, log_p, reduction=r, log_target=True) for r in KL_DIV_REDUCTIONS],
    ]


def torch_kl_div(log_q, p, log_p):
    """Raw ``F.kl_div`` (its warning about ``'mean'`` is torch's business)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            *[F.kl_div(log_q, p, reduction=r) for r in KL_DIV_REDUCTIONS],
            *[F.kl_div(log_q, log_p, reduction=r, log_target=True) for r in KL_DIV_REDUCTIONS],
        ]


def xlogy_inputs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``x`` with zeros, ``y`` with zeros (some where ``x`` is 0 too, some where not)."""
    x = rng.random((3, 5))
    y = rng.random((3, 5)) + 0.05
    x[0, :2] = 0.0
    y[0, 1:3] = 0.0  # (0, 1): x = y = 0; (0, 2): x > 0 = y, -inf
    return x, y


CASES = [
    twin_case(
        "logsumexp",
        lambda m, x: [m.logsumexp(x), m.logsumexp(x, 0, keepdims=True)],
        logits(3, 5),
    ),
    twin_case("softmax", lambda m, x: [m.softmax(x), m.softmax(x, axis=0)], logits(3, 4)),
    twin_case(
        "log_softmax", lambda m, x: [m.log_softmax(x), m.log_softmax(x, axis=0)], logits(3, 4)
    ),
    ParityCase(
        "information.logsumexp+softmax+log_softmax+entropy_from_logits[where]",
        masked_family(ji),
        masked_family(ti),
        masked_logits,
    ),
    twin_case(
        "self_information",
        lambda m, p: [m.self_information(p), m.self_information(p, base=2)],
        lambda rng: (rng.random((3, 4)) + 0.01,),
    ),
    twin_case(
        "entropy",
        lambda m, p: [m.entropy(p), m.entropy(p.T, axis=0, base=2)],
        lambda rng: (distribution(rng, (3, 5), 0.3),),
    ),
    twin_case(
        "entropy_from_logits",
        lambda m, x: [m.entropy_from_logits(x), m.entropy_from_logits(x, base=2)],
        logits(4, 4),
    ),
    twin_case("cross_entropy", divergence("cross_entropy"), p_and_q, PQ),
    twin_case("kl_divergence", divergence("kl_divergence"), p_and_q, PQ),
    twin_case("js_divergence", divergence("js_divergence"), p_and_q, PQ),
    twin_case(
        "kl_divergence_from_logits",
        lambda m, x, y: m.kl_divergence_from_logits(x, y),
        two_logits,
        PQ,
    ),
    # torch's dtype= (the cast first, the result in dtype), from a lower precision: values
    # only (a gradient through the downcast is rounded to it; tests/ check its gradient).
    twin_case(
        "softmax[dtype]",
        lambda m, x: [
            m.softmax(lower(x), dtype=x.dtype),
            m.log_softmax(lower(x), axis=0, dtype=x.dtype),
        ],
        logits(3, 4),
        grad_argnums=(),
    ),
    twin_case("log_softmax[dtype]", lambda m, x: m.log_softmax(x, dtype=x.dtype), logits(3, 4)),
    # torch's F.kl_div with its argument order, every reduction, log_target both ways
    ParityCase(
        "information.kl_div", kl_div_family(ji), kl_div_family(ti), kl_div_inputs, (0, 1, 2)
    ),
    twin_case(
        "xlogy",
        lambda m, x, y: [m.xlogy(x, y), m.xlogy(x, y[:1]), m.xlogy(x, 2.0)],
        xlogy_inputs,
        PQ,
    ),
    # Raw torch, where it is finite: no masks, no zero probabilities.
    ParityCase(
        "information.logsumexp+softmax+log_softmax+entropies+kl[torch]",
        lambda x, y, p, q: [*logit_family(ji)(x, y), *divergence_family(ji)(p, q)[:3]],
        torch_raw,
        lambda rng: (*two_logits(rng), *p_and_q(rng, zeros=0.0)),
        grad_argnums=(0, 1, 2, 3),
        reference="torch",
    ),
    ParityCase(
        "information.kl_div[torch]",
        kl_div_family(ji),
        torch_kl_div,
        positive_kl_div_inputs,
        grad_argnums=(0, 1, 2),
        reference="torch",
    ),
    ParityCase(
        "information.xlogy[torch]",
        ji.xlogy,
        torch.xlogy,
        lambda rng: (rng.random((3, 5)) + 0.05, rng.random((3, 5)) + 0.05),
        grad_argnums=PQ,
        reference="torch",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case: ParityCase) -> None:
    check_case(case)


# --- edge cases of the convention table --------------------------------------------


def finite_ones(values):
    """Cotangent 1 where a value is finite, 0 where it is infinite."""
    return [jnp.where(jnp.isfinite(v), jnp.ones_like(v), jnp.zeros_like(v)) for v in values]


@functools.partial(jax.jit, static_argnums=0)
def jax_value_and_vjp(fn, *args):
    values, pullback = jax.vjp(lambda *a: list(fn(*a)), *args)
    return values, pullback(finite_ones(values))


def torch_value_and_vjp(fn, *args):
    values = list(fn(*args))
    cots = [torch.where(torch.isfinite(v), 1.0, 0.0).to(v.dtype) for v in values]
    grads = torch.autograd.grad(values, args, cots, allow_unused=True)
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(args, grads, strict=True)]
    return [v.detach() for v in values], grads


def check_edge(jax_fn, torch_fn, args, values, grads=None, dtype="float64") -> list[np.ndarray]:
    """Both sides give ``values`` (infinities included, one per output of the functions)
    and the same finite gradients (``grads`` when given, one per argument) for the
    cotangent 1 wherever a value is finite. Returns jaxreg's gradients."""
    values_j, grads_j = jax_value_and_vjp(jax_fn, *[jnp.asarray(a, dtype) for a in args])
    targs = [torch.tensor(np.asarray(a), dtype=getattr(torch, dtype)) for a in args]
    values_t, grads_t = torch_value_and_vjp(torch_fn, *[a.requires_grad_() for a in targs])
    rtol = 1e-6 if dtype == "float32" else 1e-12
    for side, vs, gs in (("jaxreg", values_j, grads_j), ("torch_ref", values_t, grads_t)):
        for v, expected in zip(vs, values, strict=True):
            np.testing.assert_allclose(np.asarray(v, np.float64), expected, rtol=rtol, err_msg=side)
        for i, g in enumerate(gs):
            g = np.asarray(g, np.float64)
            assert np.all(np.isfinite(g)), f"{side}: gradient w.r.t. argument {i} is {g}"
            if grads is not None:
                np.testing.assert_allclose(g, grads[i], rtol=rtol, atol=1e-15, err_msg=side)
    for g_j, g_t in zip(grads_j, grads_t, strict=True):
        np.testing.assert_allclose(np.asarray(g_j), g_t.numpy(), rtol=rtol, atol=1e-15)
    return [np.asarray(g) for g in grads_j]


def test_empty_rows() -> None:
    """All ``-inf`` and fully masked rows: logsumexp ``-inf``, softmax 0, log_softmax
    ``-inf``, entropy 0, gradient exactly 0 on them (and on masked entries)."""
    x = np.array([[-INF, -INF, -INF], [0.5, -INF, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = np.array([[True] * 3, [True] * 3, [False] * 3, [True, False, True]])
    log_p = np.array([0.5, -INF, 2.0]) - np.logaddexp(0.5, 2.0)  # rows 1 and 3 alike
    log_p3 = np.array([1.0, -INF, 3.0]) - np.logaddexp(1.0, 3.0)
    entropy = [-np.sum(np.exp(lp[[0, 2]]) * lp[[0, 2]]) for lp in (log_p, log_p3)]
    values = [
        [-INF, np.logaddexp(0.5, 2.0), -INF, np.logaddexp(1.0, 3.0)],
        [[0.0] * 3, np.exp(log_p), [0.0] * 3, np.exp(log_p3)],
        [[-INF] * 3, log_p, [-INF] * 3, log_p3],
        [0.0, entropy[0], 0.0, entropy[1]],
    ]
    (grad,) = check_edge(
        lambda x: masked_family(ji)(x, jnp.asarray(mask)),
        lambda x: masked_family(ti)(x, torch.from_numpy(mask)),
        [x],
        values,
    )
    np.testing.assert_array_equal(grad[[0, 2]], 0.0)
    np.testing.assert_array_equal(grad[~mask | np.isinf(x)], 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_tie_at_extreme_magnitude(dtype) -> None:
    """``logsumexp([1e30, 1e30])`` has gradient exactly ``[½, ½]`` (raw torch: ``[1, 1]``)."""
    x = np.array([1e30, 1e30])
    check_edge(
        lambda x: [ji.logsumexp(x)],
        lambda x: [ti.logsumexp(x)],
        [x],
        [1e30],
        grads=[[0.5, 0.5]],
        dtype=dtype,
    )
    xt = torch.tensor(x, requires_grad=True)
    (raw,) = torch.autograd.grad(torch.logsumexp(xt, 0), xt)
    assert raw.tolist() == [1.0, 1.0]  # the divergence from raw torch this fixes


def test_extreme_logits() -> None:
    """``±1e4`` logits: finite values and gradients, equal on both sides (float64 here,
    float32 in the losses' test)."""
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    y = x[:, ::-1].copy()
    assert_parity(compare(logit_family(ji), logit_family(ti), [x, y], grad_argnums=(0, 1)))


def test_zero_probabilities() -> None:
    """``0·log 0 = 0`` with gradient 0; ``p = 0 < q`` contributes 0, with gradient
    ``-log q`` w.r.t. ``p`` (the derivative of ``p·log q``) and 0 w.r.t. ``q``."""
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.25, 0.25, 0.5, 0.0])
    log_q = np.log(q[:3])
    # Gradients of H(p) + H(p, q) + KL(p‖q) (the cotangent is 1 for each).
    d_entropy = [-np.log(0.5) - 1, -np.log(0.5) - 1, 0.0, 0.0]
    d_cross = [-log_q[0], -log_q[1], -log_q[2], 0.0]
    d_kl = [np.log(0.5) + 1 - log_q[0], np.log(0.5) + 1 - log_q[1], -log_q[2], 0.0]
    grad_p = np.sum([d_entropy, d_cross, d_kl], axis=0)
    grad_q = 2 * np.array([-2.0, -2.0, 0.0, 0.0])

    def family(module):
        return lambda p, q: [
            module.entropy(p),
            module.cross_entropy(p, q),
            module.kl_divergence(p, q),
        ]

    values = [math.log(2), math.log(4), math.log(2)]
    check_edge(family(ji), family(ti), [p, q], values, grads=[grad_p, grad_q])


def test_divergence_infinite_where_q_is_zero() -> None:
    """``p > 0 = q``: KL and H(p, q) are ``+inf``; their gradients stay finite (no NaN)."""
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 1.0, 0.0])

    def family(module):
        return lambda p, q: [module.kl_divergence(p, q), module.cross_entropy(p, q)]

    check_edge(family(ji), family(ti), [p, q], [INF, INF])


def test_self_information_of_zero() -> None:
    """``-log 0 = +inf`` with a finite gradient (0); elsewhere ``-1/p``."""
    check_edge(
        lambda p: [ji.self_information(p)],
        lambda p: [ti.self_information(p)],
        [np.array([0.5, 0.0])],
        [[math.log(2), INF]],
        grads=[[-2.0, 0.0]],
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision(dtype) -> None:
    """bf16/fp16 are reduced in float32 and returned in the input dtype, on both sides."""
    rng = np.random.default_rng(4)
    x, (p, q) = 3 * rng.standard_normal((3, 5)), p_and_q(rng)

    def family(module):
        return lambda x, p, q: [*logit_family(module)(x, 0.5 * x), *divergence_family(module)(p, q)]

    out_j = jax.jit(family(ji))(*[jnp.asarray(a, dtype) for a in (x, p, q)])
    out_t = family(ti)(*[torch.tensor(a).to(getattr(torch, dtype)) for a in (x, p, q)])
    for a, b in zip(out_j, out_t, strict=True):
        assert a.dtype == jnp.dtype(dtype) and b.dtype == getattr(torch, dtype)
        # Both round a float32 result: at most one unit in the last place apart.
        np.testing.assert_allclose(np.asarray(a, np.float64), b.double().numpy(), rtol=2.0**-7)


def test_torch_ref_logsumexp_backward_is_differentiable() -> None:
    """torch_ref's custom logsumexp backward (the softmax) has correct first and second
    derivatives (``torch.autograd.gradcheck`` / ``gradgradcheck``), masked too."""
    x = torch.tensor(np.random.default_rng(3).standard_normal((3, 4)), requires_grad=True)
    mask = torch.tensor([[True, False, True, True]] * 3)
    for fn in (ti.logsumexp, lambda x: ti.logsumexp(x, -1, where=mask, keepdims=True)):
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m, p: m.kl_divergence(p, p[:, :2]), ValueError),
        (lambda m, p: m.cross_entropy(p, p[0]), ValueError),
        (lambda m, p: m.js_divergence(p, p.T), ValueError),
        (lambda m, p: m.entropy(p, base=1), ValueError),
        (lambda m, p: m.entropy(p, base=-2.0), ValueError),
        (lambda m, p: m.softmax(p, where=p), TypeError),
        (lambda m, p: m.logsumexp(p > 0), TypeError),
        (lambda m, p: m.kl_div(p, p, reduction="average"), ValueError),
        (lambda m, p: m.kl_div(p, p[0]), ValueError),
        (lambda m, p: m.softmax(p, dtype=jnp.int32 if m is ji else torch.int32), TypeError),
    ],
    ids=[
        "kl shapes",
        "ce shapes",
        "js shapes",
        "base 1",
        "negative base",
        "where",
        "bool x",
        "kl_div reduction",
        "kl_div shapes",
        "softmax dtype",
    ],
)
def test_errors(call, error) -> None:
    """Bad input raises the same error type on both sides."""
    with pytest.raises(error):
        call(ji, jnp.full((2, 3), 1 / 3))
    with pytest.raises(error):
        call(ti, torch.full((2, 3), 1 / 3))


# --- generated inputs ------------------------------------------------------------------


@settings(max_examples=3, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 3),
    cols=st.integers(1, 6),
    masked=st.floats(0.0, 1.0),
    scale=st.sampled_from([0.1, 3.0, 100.0]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_masked_softmax_generated(seed, rows, cols, masked, scale, dtype) -> None:
    """logsumexp/softmax/log_softmax/entropy_from_logits with random masks (empty rows too)."""
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((rows, cols))
    mask = rng.random((rows, cols)) >= masked
    assert_parity(compare(masked_family(ji), masked_family(ti), [x, mask], dtype=dtype))


@settings(max_examples=3, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 3),
    cols=st.integers(2, 6),
    zeros=st.floats(0.0, 0.8),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_distributions_generated(seed, rows, cols, zeros, dtype) -> None:
    """Entropy, H(p, q), KL and JS of random distributions with exact zeros."""
    p, q = p_and_q(np.random.default_rng(seed), (rows, cols), zeros)
    result = compare(
        divergence_family(ji), divergence_family(ti), [p, q], dtype=dtype, grad_argnums=(0, 1)
    )
    assert_parity(result)
