"""jaxreg.fused against the unfused loss: the full logits, then the same formula.

Values and gradients (hidden, weight, bias, class weights, token weights, probability
targets, the cap) in float64 and float32 for the options alone, all together and a
covering array of every pair of them (class ``weight``, ``token_weight``, label
smoothing, ``z_loss``, ``softcap``, ``num_valid_classes``, probability targets, the aux
outputs, bias), with the reductions, leading batch dimensions and chunk sizes that do
and do not divide the vocabulary; the vocab-parallel losses (shards simulated with
``vmap``) against the single-device one with every option; second derivatives;
bf16/fp16 and ``out_dtype``; properties (a token weight of 2 is a repeated row, masking
columns is slicing them); edge cases; trace-time errors; and the compiled memory of loss
+ gradient at N=8192, D=4096, V=128256 with every option on (compiled for the CPU, never
run): no ``[N, V]`` array, temp memory under 256 MiB (float32) and 512 MiB (bfloat16),
and no growth when V doubles.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import _fused_kernel as kernel
from jaxreg import _fused_xla as xla
from jaxreg import fused as jf
from jaxreg import softmax_cross_entropy
from parity_tests._shared import FUSED_FACTORS, fused_covering_array
from tests.helpers import LOW_PRECISION, assert_finite, check_grads64

B, T, D, V = 2, 4, 5, 23  # hidden [B, T, D]; 23 is prime, so no chunk size divides it
C = 19  # classes when num_valid_classes is set (columns 19..22 are padding)
MiB = 2**20


def inputs(rng: np.random.Generator, dtype=np.float64) -> dict[str, np.ndarray]:
    """hidden, weight, bias, labels (with -100 and 3), probabilities (zeros included, mass
    on the padding columns too), class weights (V), token weights (a zero), the cap."""
    labels = rng.integers(0, C, size=(B, T))
    labels[0, :2] = -100, 3
    target = rng.uniform(0, 1, (B, T, V)) * (rng.random((B, T, V)) < 0.7)
    token_weight = rng.uniform(0.2, 2.0, (B, T))
    token_weight[1, 2] = 0.0
    arrays = {
        "hidden": rng.standard_normal((B, T, D)),
        "linear_weight": rng.standard_normal((D, V)),
        "bias": rng.standard_normal(V),
        "target": target / target.sum(-1, keepdims=True),
        "weight": rng.uniform(0.2, 2.0, V),
        "token_weight": token_weight,
        "softcap": np.asarray(2.0),
    }
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    return {**arrays, "labels": labels}


def reference(
    h,
    w,
    labels,
    *,
    bias=None,
    weight=None,
    token_weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    z_loss=0.0,
    softcap=None,
    num_valid_classes=None,
    reduction="mean",
    return_aux=False,
    out_dtype=None,
    chunk_size=None,
):
    """The straightforward loss: full logits, the cap, the class columns, then
    ``softmax_cross_entropy`` per row, token weights and the z-loss."""
    z = jnp.matmul(h, w)
    z = z if bias is None else z + bias.reshape((1,) * (z.ndim - 1) + (-1,))
    z = z if softcap is None else softcap * jnp.tanh(z / softcap)
    z = z[..., : num_valid_classes or w.shape[1]]
    soft = jnp.issubdtype(labels.dtype, jnp.floating)
    labels = labels[..., : z.shape[-1]] if soft else labels
    lse = jax.nn.logsumexp(z, axis=-1)
    if soft:
        # -Σ_c w_c t'_c log p_c written out: softmax_cross_entropy's guard gives the
        # gradient 0 instead of -w_c log p_c at the entries where t_c = 0.
        smoothed = (1 - label_smoothing) * labels + label_smoothing / z.shape[-1]
        smoothed = (
            smoothed if weight is None else smoothed * weight.reshape((1,) * lse.ndim + (-1,))
        )
        rows = -jnp.sum(smoothed * (z - lse[..., None]), axis=-1)
    else:
        rows = softmax_cross_entropy(
            z,
            labels,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            reduction="none",
        )
    valid = jnp.ones(lse.shape, bool) if soft else labels != ignore_index
    row_weight = jnp.ones_like(lse)
    if weight is not None and not soft:
        row_weight = jnp.asarray(weight, lse.dtype)[jnp.where(valid, labels, 0)]
    tau = jnp.ones_like(lse) if token_weight is None else jnp.asarray(token_weight, lse.dtype)
    valid = valid & (tau != 0)
    ce = jnp.where(valid, tau * rows, 0.0)
    zt = jnp.where(valid, z_loss * tau * lse**2, 0.0)
    if reduction == "mean":
        ce = jnp.sum(ce) / jnp.sum(jnp.where(valid, tau * row_weight, 0.0))
        zt = jnp.sum(zt) / jnp.sum(jnp.where(valid, tau, 0.0))
    elif reduction == "sum":
        ce, zt = jnp.sum(ce), jnp.sum(zt)
    loss = ce + zt
    if not return_aux:
        return loss
    answer = jnp.argmax(labels, -1) if soft else labels
    correct = jnp.sum(valid & (jnp.argmax(z, axis=-1) == answer), dtype=jnp.int32)
    return loss, jf.CrossEntropyAux(lse, zt, correct)


#: The options as factors; the covering array switches them so that every pair of
#: options meets in all four on/off combinations (row r has a factor on when r is in its
#: set: distinct 3-subsets of {1..5}, row 0 has none), in 6 rows instead of 2**9.
FACTORS = FUSED_FACTORS
COVERING = fused_covering_array(range(6))
VARIANTS = [
    *COVERING,
    *(frozenset({f}) for f in FACTORS),
    frozenset(FACTORS),
    frozenset(FACTORS) - {"soft"},
]
DIFF = ("hidden", "linear_weight", "bias", "target", "weight", "token_weight", "softcap")


def variant_call(fn, variant, k, labels):
    """``fn(**arrays)`` with the options of ``variant``: ``(float outputs, num_correct)``.
    Reductions and chunk sizes (overlapping last chunks, one column, one chunk) cycle."""

    def call(arrays):
        kwargs = {"reduction": ("none", "mean", "sum")[k % 3], "chunk_size": (4, 1, V, 6)[k % 4]}
        classes = C if "num_valid_classes" in variant else V
        if "num_valid_classes" in variant:
            kwargs["num_valid_classes"] = C
        for name in ("bias", "token_weight", "softcap"):
            if name in variant:
                kwargs[name] = arrays[name]
        if "weight" in variant:
            kwargs["weight"] = arrays["weight"][:classes]
        kwargs["label_smoothing"] = 0.1 if "label_smoothing" in variant else 0.0
        kwargs["z_loss"] = 0.05 if "z_loss" in variant else 0.0
        kwargs["return_aux"] = "return_aux" in variant
        y = arrays["target"] if "soft" in variant else labels
        out = fn(arrays["hidden"], arrays["linear_weight"], y, **kwargs)
        if kwargs["return_aux"]:
            return [out[0], out[1].logsumexp, out[1].z_loss], out[1].num_correct
        return [out], None

    return call


def cotangent_like(v):
    return jnp.full_like(v, 0.7) + jnp.arange(v.size, dtype=v.dtype).reshape(v.shape) / v.size


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_every_option_and_pair_of_options_equals_unfused(rng, dtype, tol):
    data = inputs(rng, dtype)
    labels = data.pop("labels")

    @jax.jit
    def run(arrays):
        out = {}
        for k, variant in enumerate(VARIANTS):
            for name, fn in (("fused", jf.fused_linear_cross_entropy), ("ref", reference)):
                call = variant_call(fn, variant, k, labels)
                diff = {n: arrays[n] for n in DIFF}
                value, pullback, correct = jax.vjp(call, diff, has_aux=True)
                out[k, name] = (value, pullback([cotangent_like(v) for v in value]), correct)
        return out

    out = run(data)
    failures = []
    for k, variant in enumerate(VARIANTS):
        (value, grads, correct), (want, want_grads, want_correct) = out[k, "fused"], out[k, "ref"]
        assert int(correct if correct is not None else 0) == int(
            want_correct if want_correct is not None else 0
        )
        for got, exp in zip(
            jax.tree.leaves((value, grads)), jax.tree.leaves((want, want_grads)), strict=True
        ):
            assert got.dtype == dtype and got.shape == exp.shape
            if rel_err(got, exp) > tol:
                failures.append((sorted(variant), k, rel_err(got, exp)))
    assert not failures, failures


def rel_err(got, want) -> float:
    """Norm-wise relative error ``max|got - want| / max|want|`` (0 when both are 0)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.max(np.abs(want), initial=0.0)
    err = np.max(np.abs(got - want), initial=0.0)
    return float(err / scale) if scale > 0 else float(err)


def test_check_grads_first_and_second_order(rng):
    """Every differentiable operand at once: hidden, weight, bias, probabilities, class
    weights, token weights and the cap (the kernel's hand-written VJP and autodiff of it).
    Zero probabilities take part (the derivative there is ``-w_c log p_c``, not 0); a token
    weight of 0 would not (that token takes no part: its derivative is 0)."""
    data = inputs(rng)
    data["token_weight"][1, 2] = 0.5

    def loss(h, w, b, t, cw, tw, cap):
        return jf.fused_linear_cross_entropy(
            h,
            w,
            t,
            bias=b,
            weight=cw[:C],
            token_weight=tw,
            label_smoothing=0.1,
            z_loss=0.05,
            softcap=cap,
            num_valid_classes=C,
            reduction="none",
            chunk_size=4,
        )

    check_grads64(loss, [data[n] for n in DIFF], order=2, modes=("rev",), jit=True)


def test_forward_mode_is_documented_as_unsupported(rng):
    data = inputs(rng)
    h, w, y = data["hidden"], data["linear_weight"], data["labels"]
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda h: jf.fused_linear_cross_entropy(h, w, y), (h,), (h,))


S = 4  # shards of the simulated vocab axis
VP = 24  # a vocabulary the shards divide: 6 columns each


def on_shards(fn, *sharded):
    """``fn`` on every shard of axis ``"vocab"`` (``vmap`` runs the same collectives as
    ``shard_map``); the result is the same on all shards, shard 0's is returned."""
    return jax.tree.map(lambda x: x[0], jax.vmap(fn, axis_name="vocab")(*sharded))


def shard_columns(x):
    return jnp.moveaxis(x.reshape(*x.shape[:-1], S, x.shape[-1] // S), -2, 0)


@pytest.mark.parametrize("classes", [VP, 21, 11], ids=["all", "partial shard", "empty shards"])
def test_vocab_parallel_equals_one_device_with_every_option(rng, classes):
    """Both vocab-parallel losses with every option against the single-device fused loss
    (itself checked against the unfused reference above); 11 classes leave the last two
    shards without a class column (their lse is -inf, their gradient must be finite)."""
    data = inputs(rng)
    h, y = data["hidden"], np.minimum(data["labels"], classes - 1)
    w = np.concatenate([data["linear_weight"], data["linear_weight"][:, :1]], 1)
    b, t = np.append(data["bias"], 0.3), np.concatenate([data["target"]] * 2, -1)[..., :VP]
    options = {
        "token_weight": data["token_weight"],
        "label_smoothing": 0.1,
        "z_loss": 0.05,
        "softcap": 2.0,
        "num_valid_classes": classes,
        "return_aux": True,
    }
    cw = np.linspace(0.5, 1.5, classes)

    def fused(h, w, b, cw, labels, **kw):
        return jf.fused_linear_cross_entropy(h, w, labels, bias=b, weight=cw, **options, **kw)

    def parallel_fused(h, w, b, cw, labels, **kw):
        def local(w, b, labels):
            return jf.vocab_parallel_fused_linear_cross_entropy(
                h,
                w,
                labels,
                axis_name="vocab",
                bias_shard=b,
                weight=cw,
                chunk_size=4,
                **options,
                **kw,
            )

        labels = shard_columns(labels) if labels.dtype.kind == "f" else labels[None].repeat(S, 0)
        return on_shards(local, shard_columns(w), shard_columns(b), labels)

    def parallel_logits(h, w, b, cw, labels, **kw):
        def local(z, labels):
            return jf.vocab_parallel_cross_entropy(
                z, labels, axis_name="vocab", weight=cw, **options, **kw
            )

        labels = shard_columns(labels) if labels.dtype.kind == "f" else labels[None].repeat(S, 0)
        return on_shards(local, shard_columns(h @ w + b[None, None, :]), labels)

    def value_and_grads(fn):
        def run(h, w, b, cw):
            out = {}
            for name, labels, kw in (("ids", y, {}), ("probs", t, {"reduction": "none"})):

                def scalar(*a, labels=labels, kw=kw):
                    loss, aux = fn(*a, labels, **kw)
                    return jnp.sum(loss) + 0.3 * jnp.sum(aux.logsumexp), aux.num_correct

                out[name] = jax.value_and_grad(scalar, argnums=(0, 1, 2, 3), has_aux=True)(
                    h, w, b, cw
                )
            return out

        return run

    got = jax.jit(
        lambda *a: [value_and_grads(f)(*a) for f in (parallel_fused, parallel_logits, fused)]
    )(h, w, b, cw)
    want = got.pop()
    for out in got:
        assert_finite(out)
        for a, e in zip(jax.tree.leaves(out), jax.tree.leaves(want), strict=True):
            assert rel_err(a, e) <= 1e-12


def test_token_weight_of_two_is_a_repeated_row_and_zero_an_ignored_one(rng):
    """The mean's denominator counts a token of weight 2 twice (with its class weight)."""
    data = inputs(rng)
    h, w, y = data["hidden"][0], data["linear_weight"], data["labels"][0]
    cw, tw = data["weight"], np.array([1.0, 2.0, 0.0, 1.0])
    kw = {"weight": cw, "label_smoothing": 0.1, "z_loss": 0.05, "chunk_size": 4}
    rows = np.array([0, 1, 1, 3])
    ignored = y.copy()
    ignored[2] = -100

    @jax.jit
    def both(h, w):
        weighted = jf.fused_linear_cross_entropy(h, w, y, token_weight=tw, **kw)
        repeated = jf.fused_linear_cross_entropy(h[rows], w, y[rows], **kw)
        zero_is_ignored = [
            jf.fused_linear_cross_entropy(h, w, y, token_weight=np.array([1.0, 1, 0, 1]), **kw),
            jf.fused_linear_cross_entropy(h, w, ignored, **kw),
        ]
        return weighted, repeated, zero_is_ignored

    weighted, repeated, (zero, ignore) = both(h, w)
    assert rel_err(weighted, repeated) <= 1e-14
    assert rel_err(zero, ignore) <= 1e-15


def test_padded_columns_are_sliced_away_even_with_nan_and_smoothing(rng):
    """num_valid_classes=C equals slicing the weight to C columns, with label smoothing
    (padding with a -inf bias instead gives inf); a NaN in a padding column takes no
    part."""
    data = inputs(rng)
    h, w, b, y = data["hidden"], data["linear_weight"].copy(), data["bias"], data["labels"]
    w[1, C + 1] = np.nan
    kw = {"label_smoothing": 0.1, "chunk_size": 4, "return_aux": True}

    @jax.jit
    def both(h, w, b):
        padded = jf.fused_linear_cross_entropy(h, w, y, bias=b, num_valid_classes=C, **kw)
        sliced = jf.fused_linear_cross_entropy(h, w[:, :C], y, bias=b[:C], **kw)
        minus_inf = jf.fused_linear_cross_entropy(
            h, w.at[:, C:].set(0.0), y, bias=b.at[C:].set(-jnp.inf), **kw
        )
        return padded, sliced, minus_inf

    padded, sliced, minus_inf = both(h, w, b)
    assert_finite(padded)
    for a, e in zip(jax.tree.leaves(padded), jax.tree.leaves(sliced), strict=True):
        assert rel_err(a, e) <= 1e-15
    assert np.isinf(minus_inf[0])


def test_edge_cases(rng):
    """One program for the edge cases: every label ignored and every token weight 0 (0,
    gradient 0); logits near ±1e4 (finite, exact); a traced label out of range (NaN row and
    NaN gradient row, like the unfused loss), also a label among the padding columns; no
    rows (0 for each reduction, integer and probability targets, with aux)."""
    data = inputs(rng)
    h, w, b, y = data["hidden"], data["linear_weight"], data["bias"], data["labels"]
    ignored = np.full((B, T), -100)
    w_big = w * (1e4 / np.abs(h @ w).max())
    y_bad = y.copy()
    y_bad[1, 1] = V
    y_pad = y.copy()
    y_pad[1, 1] = C + 1

    def value_and_grads(fn, h, w, y, **kwargs):
        return jax.value_and_grad(lambda h, w: fn(h, w, y, **kwargs), argnums=(0, 1))(h, w)

    @jax.jit
    def edges(h, w, w_big, y_bad, y_pad):
        fused, ref = jf.fused_linear_cross_entropy, reference
        return {
            "ignored": value_and_grads(fused, h, w, ignored, bias=b, z_loss=0.1),
            "weightless": value_and_grads(fused, h, w, y, token_weight=np.zeros((B, T))),
            "extreme": value_and_grads(fused, h, w_big, y, chunk_size=3, softcap=50.0),
            "extreme_ref": value_and_grads(ref, h, w_big, y, softcap=50.0),
            "bad": [fn(h, w, y_bad, reduction="none") for fn in (fused, ref)],
            "bad_grad": [value_and_grads(fn, h, w, y_bad)[1][0] for fn in (fused, ref)],
            "pad": fused(h, w, y_pad, num_valid_classes=C, reduction="none"),
            "empty": [
                fused(h[:0, 0], w, y[:0, 0], reduction=r, return_aux=True, z_loss=0.1)
                for r in ("mean", "sum")
            ]
            + [fused(h[:0, 0], w, data["target"][:0, 0], return_aux=True, z_loss=0.1)],
        }

    out = edges(h, w, w_big, y_bad, y_pad)
    for key in ("ignored", "weightless"):
        value, grads = out[key]
        assert float(value) == 0.0 and all(not np.any(g) for g in grads)
    assert_finite(out["extreme"])
    for got, want in zip(
        *(jax.tree.leaves(out[k]) for k in ("extreme", "extreme_ref")), strict=True
    ):
        assert rel_err(got, want) <= 1e-12
    for got in (*out["bad"], out["pad"]):
        assert np.isnan(got[1, 1])
        assert np.isfinite(np.delete(np.asarray(got).ravel(), T + 1)).all()
    for grad_h in out["bad_grad"]:  # the bad row's gradient is NaN, the others finite
        assert np.isnan(grad_h[1, 1]).all()
        assert np.isfinite(np.delete(np.asarray(grad_h).reshape(B * T, -1), T + 1, 0)).all()
    for loss, aux in out["empty"]:
        assert float(loss) == 0.0 and float(aux.z_loss) == 0.0 and int(aux.num_correct) == 0


@pytest.mark.parametrize("label", [-1, V, -7, C])
def test_concrete_label_out_of_range_raises(rng, label):
    data = inputs(rng)
    h, w, y = data["hidden"], data["linear_weight"], data["labels"].copy()
    y[0, 2] = label
    kw = {"num_valid_classes": C} if label == C else {}
    with pytest.raises(ValueError, match=rf"holds {label} at position \(0, 2\)"):
        jf.fused_linear_cross_entropy(h, w, y, **kw)
    if not kw:
        with pytest.raises(ValueError, match=rf"holds {label} at position \(0, 2\)"):
            softmax_cross_entropy(h @ w, y)


def test_float16_is_reduced_in_float32(rng):
    data = inputs(rng)
    h, w, b, y = (data[k] for k in ("hidden", "linear_weight", "bias", "labels"))
    h, w, b = (x.astype(np.float16) for x in (h, w, b))
    logits = h.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)
    lse = np.log(np.exp(logits).sum(-1))
    picked = np.take_along_axis(logits, np.maximum(y, 0)[..., None], -1)[..., 0]
    exact = np.where(y != -100, lse - picked, 0.0).sum() / (y != -100).sum()
    got = jax.jit(lambda h, w, b: jf.fused_linear_cross_entropy(h, w, y, bias=b, chunk_size=4))(
        h, w, b
    )
    assert got.dtype == jnp.float16
    np.testing.assert_allclose(np.float64(got), exact, rtol=LOW_PRECISION["float16"][1])


def test_bfloat16_accumulates_in_float32(rng, monkeypatch):
    """bf16 in, bf16 out, or float32 out with ``out_dtype``: the float32 loss of the
    rounded inputs to float32 rounding (bf16 would round 9.009 to 9.0). The weight gradient
    of bf16 is assembled in blocks (made 3 chunks small here), which must land every
    column in its place, also with every option on."""
    monkeypatch.setattr(xla, "BLOCK_BYTES", 3 * 4 * D * 2)
    dtype, rtol, _ = LOW_PRECISION["bfloat16"]
    data = inputs(rng)
    h, w, b = (jnp.asarray(data[k], dtype) for k in ("hidden", "linear_weight", "bias"))
    y, tw = data["labels"], data["token_weight"]
    options = {
        "token_weight": tw,
        "weight": data["weight"][:C],
        "z_loss": 0.05,
        "softcap": 2.0,
        "num_valid_classes": C,
    }

    def grads(fn, cast, **kw):
        def loss(h, w, b):
            return fn(cast(h), cast(w), y, bias=cast(b), label_smoothing=0.1, chunk_size=4, **kw)

        return jax.value_and_grad(loss, argnums=(0, 1, 2))

    @jax.jit
    def run(h, w, b):
        f32 = lambda x: x.astype(jnp.float32)  # noqa: E731
        return [
            (
                grads(jf.fused_linear_cross_entropy, lambda x: x, **kw)(h, w, b),
                grads(reference, f32, **kw)(h, w, b),
            )
            for kw in ({}, options)
        ] + [
            (
                jf.fused_linear_cross_entropy(h, w, y, out_dtype=jnp.float32, **options),
                jf.fused_linear_cross_entropy(f32(h), f32(w), y, **options),
            )
        ]

    *cases, (loss32, want32) = run(h, w, b)
    for got, want in cases:
        for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert a.dtype == dtype
            # d_logits is rounded to the input dtype before the gradient matmuls.
            assert rel_err(a, e) <= 4 * rtol
    assert loss32.dtype == jnp.float32
    assert rel_err(loss32, want32) <= 1e-6


def _call(**kw):
    def call(h, w, b, y):
        return jf.fused_linear_cross_entropy(h, w, y, **kw)

    return call


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w.T, y), ValueError, "linear_weight"),
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y[:, :2]), ValueError, "labels"),
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y, bias=b[:3]), ValueError, "bias"),
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y > 0), TypeError, "labels"),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y.astype(h.dtype)),
            ValueError,
            "probab",
        ),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h.astype(jnp.int32), w, y),
            TypeError,
            "hidden",
        ),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w.astype(jnp.float32), y),
            TypeError,
            "dtype",
        ),
        (_call(reduction="avg"), ValueError, "reduction"),
        (_call(label_smoothing=1.5), ValueError, "label_smoothing"),
        (_call(chunk_size=0), ValueError, "chunk_size"),
        (_call(z_loss=-1.0), ValueError, "z_loss"),
        (_call(softcap=0.0), ValueError, "softcap"),
        (_call(softcap=jnp.ones(2)), ValueError, "softcap"),
        (_call(num_valid_classes=V + 1), ValueError, "num_valid_classes"),
        (_call(num_valid_classes=0), ValueError, "num_valid_classes"),
        (_call(weight=jnp.ones(V - 1)), ValueError, r"weight.*\(23,\)"),
        (_call(weight=jnp.ones(V), num_valid_classes=C), ValueError, r"weight.*\(19,\)"),
        (_call(token_weight=jnp.ones(3)), ValueError, "token_weight"),
        (_call(out_dtype=jnp.int32), TypeError, "out_dtype"),
        (_call(return_aux=1), TypeError, "return_aux"),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(
                h, w, jnp.ones((B, T, V)) / V, ignore_index=0
            ),
            ValueError,
            "ignore_index",
        ),
        (
            lambda h, w, b, y: jf.vocab_parallel_cross_entropy(h, y[:, :1], axis_name="v"),
            ValueError,
            "labels",
        ),
        (
            lambda h, w, b, y: jf.vocab_parallel_fused_linear_cross_entropy(
                h, w[:3], y, axis_name="v"
            ),
            ValueError,
            "weight_shard",
        ),
    ],
)
def test_bad_input_raises_at_trace_time(rng, call, error, match):
    data = inputs(rng)
    h, w, b, y = (data[k] for k in ("hidden", "linear_weight", "bias", "labels"))
    with pytest.raises(error, match=match):
        jax.jit(call)(h, w, b, y)


def test_default_chunk_size_follows_the_shapes_and_backend():
    assert kernel.default_chunk_size(8, 50, "cpu") == 50  # small: one chunk
    assert kernel.default_chunk_size(8192, 128256, "cpu") == 128  # 2**20 logits: cache-sized
    assert kernel.default_chunk_size(8192, 128256, "gpu") == 1024  # 2**23 logits
    assert kernel.default_chunk_size(10**7, 128256, "cpu") == 128  # never below 128


def test_backward_skips_the_gradients_nobody_asked_for(rng):
    """Gradients of hidden alone: the backward loop has one matmul per chunk, not two."""
    data = inputs(rng)
    h, w, y = data["hidden"], data["linear_weight"], data["labels"]

    def matmuls(argnums):
        fn = jax.grad(lambda h, w: jf.fused_linear_cross_entropy(h, w, y), argnums=argnums)
        return str(jax.make_jaxpr(fn)(h, w)).count("dot_general")

    assert matmuls((0,)) == matmuls((0, 1)) - 1


def _loops_around(hlo: str, pattern: str) -> list[list[int | None]]:
    """For each computation of the compiled ``hlo`` text whose instructions match
    ``pattern``: the known trip counts of the while loops around it (None: unknown)."""
    comps: dict[str, list[str]] = {}
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            comps[head.group(1)] = []
        elif comps:
            comps[list(comps)[-1]].append(line)

    def trips(name: str, seen: frozenset = frozenset()) -> list[int | None]:
        out = []
        for parent, lines in comps.items():
            for line in lines:
                if parent not in seen and re.search(rf"=%{re.escape(name)}\b", line):
                    if " while(" in line:
                        count = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
                        out.append(int(count.group(1)) if count else None)
                    out += trips(parent, seen | {parent})
        return out

    return [trips(c) for c, lines in comps.items() if any(re.search(pattern, x) for x in lines)]


def test_bf16_weight_is_converted_at_most_once_per_block(monkeypatch):
    """Workarounds 2 and 3 of jaxreg/_fused_xla.py (the memory test cannot see them:
    XLA fuses the conversions): a float32 conversion of the whole bf16 ``(D, V)`` weight
    or gradient runs at most once per block of the weight gradient, never once per chunk
    (compiled for the CPU with 64 chunks in 16 blocks; nothing runs)."""
    monkeypatch.setattr(xla, "BLOCK_BYTES", 4 * 128 * 64 * 2)
    n, d, v = 256, 64, 8192
    spec = jax.ShapeDtypeStruct
    fn = jax.value_and_grad(
        lambda h, w, y: jf.fused_linear_cross_entropy(h, w, y, chunk_size=128), argnums=(0, 1)
    )
    args = (spec((n, d), jnp.bfloat16), spec((d, v), jnp.bfloat16), spec((n,), jnp.int32))
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    loops = _loops_around(hlo, rf"f32\[{d},{v}\]\S* convert\(")
    assert loops, "no conversion found: update the pattern to the HLO text"
    for trips in loops:
        assert None not in trips and np.prod(trips) <= 16, loops


# --------------------------------------------------------------------------- memory

BIG_N, BIG_D, BIG_V = 8192, 4096, 128256


def compiled_loss_and_grad(dtype, vocab: int, options: bool):
    """Loss + gradients w.r.t. hidden, weight and bias, compiled for the CPU (nothing runs);
    with ``options``: every option that keeps the targets integer."""
    spec = jax.ShapeDtypeStruct
    args = (
        spec((BIG_N, BIG_D), dtype),
        spec((BIG_D, vocab), dtype),
        spec((vocab,), dtype),
        spec((BIG_N,), jnp.int32),
        spec((vocab - 64,), jnp.float32),
        spec((BIG_N,), jnp.float32),
    )

    def loss(h, w, b, y, cw, tw):
        if not options:
            return jf.fused_linear_cross_entropy(h, w, y)
        loss, aux = jf.fused_linear_cross_entropy(
            h,
            w,
            y,
            bias=b,
            weight=cw,
            token_weight=tw,
            label_smoothing=0.1,
            z_loss=1e-4,
            softcap=30.0,
            num_valid_classes=vocab - 64,
            return_aux=True,
            out_dtype=jnp.float32,
        )
        return loss + jnp.sum(aux.logsumexp)

    fn = jax.value_and_grad(loss, argnums=(0, 1, 2) if options else (0, 1))
    return jax.jit(fn).lower(*args).compile()


@pytest.mark.parametrize(("dtype", "limit"), [(jnp.float32, 256 * MiB), (jnp.bfloat16, 512 * MiB)])
@pytest.mark.parametrize("options", [False, True], ids=["defaults", "every option"])
def test_compiled_memory_is_small_and_flat_in_vocab(dtype, limit, options):
    temps = []
    for vocab in (BIG_V, 2 * BIG_V):
        compiled = compiled_loss_and_grad(dtype, vocab, options)
        temps.append(compiled.memory_analysis().temp_size_in_bytes)
        # No array of N x V elements anywhere in the program (any dtype, either order).
        shapes = re.findall(r"\[([\d,]+)\]", compiled.as_text())
        sizes = {int(np.prod([int(d) for d in s.split(",")])) for s in shapes if s}
        assert BIG_N * vocab not in sizes
    assert temps[0] <= limit, f"temp {temps[0] / MiB:.0f} MiB > {limit / MiB:.0f} MiB"
    # (the options' vectors of V entries may grow: 16 bytes per column, not N·4)
    assert temps[1] <= temps[0] + 16 * BIG_V * options, f"temp grew with V: {temps} bytes"
