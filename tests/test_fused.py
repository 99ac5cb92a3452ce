"""jaxreg.fused against the unfused ``softmax_cross_entropy(hidden @ weight + bias)``.

Values and gradients (hidden, weight, bias) in float64 and float32 with ignore_index,
label smoothing, the reductions, leading batch dimensions and chunk sizes that do and do
not divide the vocabulary; second derivatives; bf16/fp16; edge cases; trace-time errors;
and the compiled memory of loss + gradient at N=8192, D=4096, V=128256 (compiled for the
CPU, never run): no ``[N, V]`` array, temp memory under 256 MiB (float32) and 512 MiB
(bfloat16), and no growth when V doubles.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import fused as jf
from jaxreg import softmax_cross_entropy
from tests.helpers import LOW_PRECISION, assert_finite, check_grads64

B, T, D, V = 2, 4, 5, 23  # hidden [B, T, D]; 23 is prime, so no chunk size divides it
MiB = 2**20


def inputs(rng: np.random.Generator, dtype=np.float64) -> tuple[np.ndarray, ...]:
    """``hidden [B, T, D]``, ``weight (D, V)``, ``bias (V,)``, labels with -100 and 3."""
    labels = rng.integers(0, V, size=(B, T))
    labels[0, :2] = -100, 3
    return (
        rng.standard_normal((B, T, D)).astype(dtype),
        rng.standard_normal((D, V)).astype(dtype),
        rng.standard_normal(V).astype(dtype),
        labels,
    )


def unfused(h, w, y, *, bias=None, chunk_size=None, **kwargs):
    """The reference: ``softmax_cross_entropy`` of the full logits."""
    logits = jnp.matmul(h, w)
    if bias is not None:
        logits = logits + bias.reshape((1,) * (logits.ndim - 1) + (-1,))
    return softmax_cross_entropy(logits, y, **kwargs)


def variants(fn, y):
    """Two calls of ``fn(h, w, y, **kw)`` as one function of ``(h, w, b)`` (each is a
    compiled loop, so they are few): bias, smoothing and per-row losses in chunks of 4
    (ignored labels, a partial last chunk); bias, full smoothing, a sum and another
    ignore_index in chunks of 1. The defaults are compared with torch in parity_tests/."""
    y3 = np.where(y < 0, 5, y)  # -100 is a class id out of range when ignore_index=3
    return lambda h, w, b: [
        fn(h, w, y, bias=b, reduction="none", label_smoothing=0.1, chunk_size=4),
        fn(h, w, y3, bias=b, reduction="sum", ignore_index=3, label_smoothing=1.0, chunk_size=1),
    ]


def rel_err(got, want) -> float:
    """Norm-wise relative error ``max|got - want| / max|want|``."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_value_and_gradients_equal_unfused(rng, dtype, tol):
    h, w, b, y = inputs(rng, dtype)

    @jax.jit
    def both(h, w, b):
        outs = []
        for fn in (jf.fused_linear_cross_entropy, unfused):
            value, pullback = jax.vjp(variants(fn, y), h, w, b)
            cotangent = [
                jnp.full_like(v, 0.7) + jnp.arange(v.size, dtype=v.dtype).reshape(v.shape)
                for v in value
            ]
            outs.append((value, pullback(cotangent)))
        return outs

    (value, grads), (want_value, want_grads) = both(h, w, b)
    for got, want in zip(
        jax.tree.leaves((value, grads)), jax.tree.leaves((want_value, want_grads)), strict=True
    ):
        assert got.dtype == dtype and got.shape == want.shape
        assert rel_err(got, want) <= tol
    assert value[0].shape == (B, T)


def test_check_grads_first_and_second_order(rng):
    h, w, b, y = inputs(rng)

    def loss(h, w, b):
        return jf.fused_linear_cross_entropy(
            h, w, y, bias=b, label_smoothing=0.1, reduction="none", chunk_size=4
        )

    check_grads64(loss, (h, w, b), order=2, modes=("rev",), jit=True)


def test_forward_mode_is_documented_as_unsupported(rng):
    h, w, _, y = inputs(rng)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda h: jf.fused_linear_cross_entropy(h, w, y), (h,), (h,))


def test_edge_cases(rng):
    """One program for the edge cases: every label ignored (0, gradient 0); logits near
    ±1e4 (finite, exact); a traced label out of range (NaN row and NaN gradient row, like
    the unfused loss); no rows."""
    h, w, b, y = inputs(rng)
    ignored = np.full((B, T), -100)
    w_big = w * (1e4 / np.abs(h @ w).max())
    y_bad = y.copy()
    y_bad[1, 1] = V

    def value_and_grads(fn, h, w, y, **kwargs):
        return jax.value_and_grad(lambda h, w: fn(h, w, y, **kwargs), argnums=(0, 1))(h, w)

    @jax.jit
    def edges(h, w, w_big, y_bad):
        fused, ref = jf.fused_linear_cross_entropy, unfused
        return {
            "ignored": value_and_grads(fused, h, w, ignored, bias=b),
            "extreme": value_and_grads(fused, h, w_big, y, chunk_size=3),
            "extreme_ref": value_and_grads(ref, h, w_big, y),
            "bad": [fn(h, w, y_bad, reduction="none") for fn in (fused, ref)],
            "bad_grad": [value_and_grads(fn, h, w, y_bad)[1][0] for fn in (fused, ref)],
            "empty": fused(h[:0, 0], w, y[:0, 0]),
        }

    out = edges(h, w, w_big, y_bad)
    value, grads = out["ignored"]
    assert float(value) == 0.0 and all(not np.any(g) for g in grads)
    assert_finite(out["extreme"])
    for got, want in zip(
        *(jax.tree.leaves(out[k]) for k in ("extreme", "extreme_ref")), strict=True
    ):
        assert rel_err(got, want) <= 1e-12
    got, want = out["bad"]
    assert np.isnan(got[1, 1]) and np.isnan(want[1, 1])
    assert np.isfinite(np.delete(np.asarray(got).ravel(), T + 1)).all()
    for grad_h in out["bad_grad"]:  # the bad row's gradient is NaN, the others finite
        assert np.isnan(grad_h[1, 1]).all()
        assert np.isfinite(np.delete(np.asarray(grad_h).reshape(B * T, -1), T + 1, 0)).all()
    assert float(out["empty"]) == 0.0


@pytest.mark.parametrize("label", [-1, V, -7])
def test_concrete_label_out_of_range_raises(rng, label):
    h, w, b, y = inputs(rng)
    y = y.copy()
    y[0, 2] = label
    for fn in (jf.fused_linear_cross_entropy, softmax_cross_entropy):
        args = (h, w, y) if fn is jf.fused_linear_cross_entropy else (h @ w, y)
        with pytest.raises(ValueError, match=rf"holds {label} at position \(0, 2\)"):
            fn(*args)


def test_float16_is_reduced_in_float32(rng):
    h, w, b, y = inputs(rng)
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
    """bf16 in, bf16 out; the weight gradient of bf16 is assembled in blocks (made 3 chunks
    small here), which must land every column in its place."""
    monkeypatch.setattr(jf, "_BLOCK_BYTES", 3 * 4 * D * 2)
    dtype, rtol, _ = LOW_PRECISION["bfloat16"]
    h, w, b, y = (jnp.asarray(x, dtype) if x.dtype == np.float64 else x for x in inputs(rng))

    def grads(fn, cast):
        def loss(h, w, b):
            return fn(cast(h), cast(w), y, bias=cast(b), label_smoothing=0.1, chunk_size=4)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(h, w, b)

    got = grads(jf.fused_linear_cross_entropy, lambda x: x)
    want = grads(unfused, lambda x: x.astype(jnp.float32))
    for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == dtype
        # d_logits is rounded to the input dtype before the gradient matmuls.
        assert rel_err(a, e) <= 4 * rtol


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w.T, y), ValueError, "weight"),
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y[:, :2]), ValueError, "labels"),
        (lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y, bias=b[:3]), ValueError, "bias"),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y.astype(h.dtype)),
            TypeError,
            "labels",
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
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y, reduction="avg"),
            ValueError,
            "reduction",
        ),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y, label_smoothing=1.5),
            ValueError,
            "label_smoothing",
        ),
        (
            lambda h, w, b, y: jf.fused_linear_cross_entropy(h, w, y, chunk_size=0),
            ValueError,
            "chunk_size",
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
    h, w, b, y = inputs(rng)
    with pytest.raises(error, match=match):
        jax.jit(call)(h, w, b, y)


def test_default_chunk_size_follows_the_shapes_and_backend():
    assert jf._default_chunk_size(8, 50, "cpu") == 50  # small: one chunk
    assert jf._default_chunk_size(8192, 128256, "cpu") == 128  # 2**20 logits: cache-sized
    assert jf._default_chunk_size(8192, 128256, "gpu") == 1024  # 2**23 logits
    assert jf._default_chunk_size(10**7, 128256, "cpu") == 128  # never below 128


# --------------------------------------------------------------------------- memory

BIG_N, BIG_D, BIG_V = 8192, 4096, 128256


def compiled_loss_and_grad(dtype, vocab: int):
    """Loss + gradients w.r.t. hidden and weight, compiled for the CPU (nothing runs)."""
    spec = jax.ShapeDtypeStruct
    args = (spec((BIG_N, BIG_D), dtype), spec((BIG_D, vocab), dtype), spec((BIG_N,), jnp.int32))
    fn = jax.value_and_grad(jf.fused_linear_cross_entropy, argnums=(0, 1))
    return jax.jit(fn).lower(*args).compile()


@pytest.mark.parametrize(("dtype", "limit"), [(jnp.float32, 256 * MiB), (jnp.bfloat16, 512 * MiB)])
def test_compiled_memory_is_small_and_flat_in_vocab(dtype, limit):
    temps = []
    for vocab in (BIG_V, 2 * BIG_V):
        compiled = compiled_loss_and_grad(dtype, vocab)
        temps.append(compiled.memory_analysis().temp_size_in_bytes)
        # No array of N x V elements anywhere in the program (any dtype, either order).
        shapes = re.findall(r"\[([\d,]+)\]", compiled.as_text())
        sizes = {int(np.prod([int(d) for d in s.split(",")])) for s in shapes if s}
        assert BIG_N * vocab not in sizes
    assert temps[0] <= limit, f"temp {temps[0] / MiB:.0f} MiB > {limit / MiB:.0f} MiB"
    assert temps[1] <= temps[0], f"temp grew with V: {[t / MiB for t in temps]} MiB"
