"""Parity of :mod:`jaxreg.fused` with :mod:`torch_ref.fused` and raw ``F.cross_entropy``.

Values and gradients with respect to ``hidden``, ``weight`` and ``bias`` in float32 and
float64: the chunked loss against torch_ref's chunked ``autograd.Function`` and against
``F.cross_entropy(hidden @ weight + bias, labels)``, with ``ignore_index``, label
smoothing, per-row losses, leading batch dimensions and chunk sizes that do not divide
the vocabulary, plus generated shapes. The vocab-parallel functions run here on shards
simulated with ``jax.vmap(..., axis_name=...)`` (the collectives are the same as under
``shard_map``), against torch_ref in a single process; ``tests/test_sharded.py`` runs
them on 8 devices. torch_ref's own conventions (every label ignored: 0, not NaN) and
errors are checked too. Each variant is a compiled loop, so the variants are few; the
other options are checked against ``jaxreg.softmax_cross_entropy`` in tests/.
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

from jaxreg import fused as jf
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import fused as tf

B, T, D, V = 2, 5, 6, 37  # hidden [B, T, D], vocabulary of 37 (prime: no chunk divides it)
SHARDS = 4
REDUCTIONS = ("mean", "sum", "none")


def linear_inputs(rng: np.random.Generator, ignored: float = 0.3) -> tuple[np.ndarray, ...]:
    """``hidden [B, T, D]``, ``weight (D, V)``, ``bias (V,)``, labels with ignored entries."""
    labels = rng.integers(0, V, size=(B, T))
    labels = np.where(rng.random((B, T)) < ignored, -100, labels)
    labels.flat[0] = 1
    return (
        rng.standard_normal((B, T, D)),
        rng.standard_normal((D, V)),
        rng.standard_normal(V),
        labels,
    )


def sharded_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """As :func:`linear_inputs` with a vocabulary divisible by the shard count."""
    h, w, b, y = linear_inputs(rng)
    return h, w[:, :36], b[:36], np.where(y >= 36, 0, y)


def fused_variants(fn):
    """Two calls of a fused loss ``fn(h, w, y, **kw)`` (each is compiled, so they are few):
    the defaults (mean, one chunk), and bias, label smoothing and per-row losses in chunks
    of 5 (the sum and more options are checked against jaxreg.losses in tests/)."""
    return lambda h, w, b, y: [
        fn(h, w, y),
        fn(h, w, y, bias=b, reduction="none", label_smoothing=0.2, chunk_size=5),
    ]


def f_cross_entropy(logits, y, **kwargs):
    """``F.cross_entropy`` over the last axis of ``logits [..., V]``."""
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), **kwargs)
    return loss.reshape(y.shape) if kwargs.get("reduction") == "none" else loss


def raw_torch(h, w, y, *, bias=None, chunk_size=None, **kwargs):
    """``F.cross_entropy`` of the full logits (``chunk_size`` has no meaning there)."""
    return f_cross_entropy(h @ w if bias is None else h @ w + bias, y, **kwargs)


def torch_vocab_parallel_fused(h, w, y, *, bias=None, **kwargs):
    """torch_ref's vocab-parallel loss in one process: one shard holding the whole weight."""
    return tf.vocab_parallel_fused_linear_cross_entropy(h, w, y, bias_shard=bias, **kwargs)


def shard_columns(x: jax.Array) -> jax.Array:
    """``[..., V]`` -> ``[SHARDS, ..., V / SHARDS]``, shard ``s`` holding columns ``s·V/S:``."""
    parts = x.reshape(*x.shape[:-1], SHARDS, x.shape[-1] // SHARDS)
    return jnp.moveaxis(parts, -2, 0)


def on_shards(fn, *sharded):
    """Runs ``fn(*shards)`` on every shard with the collectives of axis ``"vocab"``; the
    loss is the same on all shards, so shard 0's is returned."""
    return jax.vmap(fn, axis_name="vocab")(*sharded)[0]


def jax_vocab_parallel_fused(h, w, y, *, bias=None, **kwargs):
    def local(w_shard, b_shard):
        return jf.vocab_parallel_fused_linear_cross_entropy(
            h, w_shard, y, axis_name="vocab", bias_shard=b_shard, **kwargs
        )

    b = jnp.zeros(w.shape[1], w.dtype) if bias is None else bias
    return on_shards(local, shard_columns(w), shard_columns(b))


def jax_vocab_parallel(h, w, b, y):
    """The mean loss, and the smoothed per-row losses, of logits split into 4 shards."""
    logits = shard_columns(h @ w + b[None, None, :])

    def local(z, **kwargs):
        return jf.vocab_parallel_cross_entropy(z, y, axis_name="vocab", **kwargs)

    return [
        on_shards(local, logits),
        on_shards(lambda z: local(z, reduction="none", label_smoothing=0.2), logits),
    ]


def torch_vocab_parallel(module):
    """:func:`jax_vocab_parallel` for a torch loss of the full logits."""

    def fn(h, w, b, y):
        logits = h @ w + b
        return [module(logits, y), module(logits, y, reduction="none", label_smoothing=0.2)]

    return fn


def one_sharded_variant(fn):
    """Bias, label smoothing and the mean in chunks of 5 of each shard's 9 columns."""
    return lambda h, w, b, y: fn(h, w, y, bias=b, label_smoothing=0.2, chunk_size=5)


JAX_FUSED = fused_variants(jf.fused_linear_cross_entropy)


CASES = [
    ParityCase(
        "fused.fused_linear_cross_entropy",
        JAX_FUSED,
        fused_variants(tf.fused_linear_cross_entropy),
        linear_inputs,
        grad_argnums=(0, 1, 2),
    ),
    ParityCase(
        "fused.fused_linear_cross_entropy[F.cross_entropy]",
        JAX_FUSED,
        fused_variants(raw_torch),
        linear_inputs,
        grad_argnums=(0, 1, 2),
        reference="torch",
    ),
    ParityCase(
        "fused.vocab_parallel_fused_linear_cross_entropy[4 shards]",
        one_sharded_variant(jax_vocab_parallel_fused),
        one_sharded_variant(torch_vocab_parallel_fused),
        sharded_inputs,
        grad_argnums=(0, 1, 2),
    ),
    ParityCase(
        "fused.vocab_parallel_cross_entropy[4 shards]",
        jax_vocab_parallel,
        torch_vocab_parallel(tf.vocab_parallel_cross_entropy),
        sharded_inputs,
        grad_argnums=(0, 1, 2),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


@settings(max_examples=2, deadline=None)
@given(
    n=st.integers(1, 9),
    vocab=st.integers(1, 40),
    chunk=st.integers(1, 45),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    ignored=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_generated_inputs_match_f_cross_entropy(n, vocab, chunk, smoothing, ignored, seed):
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < ignored, -100, rng.integers(0, vocab, n))
    labels[0] = 0
    inputs = (3 * rng.standard_normal((n, 4)), rng.standard_normal((4, vocab)), labels)
    kwargs = {"label_smoothing": smoothing, "chunk_size": chunk}
    result = compare(
        lambda h, w, y: jf.fused_linear_cross_entropy(h, w, y, **kwargs),
        lambda h, w, y: raw_torch(h, w, y, **kwargs),
        inputs,
        grad_argnums=(0, 1),
        reference="torch",
    )
    assert_parity(result)


def test_torch_ref_every_label_ignored_is_zero_with_zero_gradient(rng):
    """jaxreg's convention (tests/test_fused.py checks the JAX side); F.cross_entropy: NaN."""
    h, w, b = (torch.from_numpy(x).requires_grad_() for x in linear_inputs(rng)[:3])
    y = torch.full((B, T), -100)
    loss = tf.fused_linear_cross_entropy(h, w, y, bias=b)
    grads = torch.autograd.grad(loss, (h, w, b))
    assert loss.item() == 0.0
    assert all(bool((g == 0).all()) for g in grads)
    assert torch.isnan(raw_torch(h, w, y, bias=b))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((np.ones((3, 4)), np.ones((5, 7)), np.zeros(3, np.int64)), ValueError, "D=4"),
        ((np.ones((3, 4)), np.ones((4, 7)), np.zeros(2, np.int64)), ValueError, "labels"),
        ((np.ones((3, 4), np.int64), np.ones((4, 7)), np.zeros(3, np.int64)), TypeError, "hidden"),
        ((np.ones((3, 4)), np.ones((4, 7)), np.zeros(3)), TypeError, "labels"),
    ],
)
def test_same_errors_as_torch_ref(args, error, match):
    with pytest.raises(error, match=match):
        jf.fused_linear_cross_entropy(*args)
    with pytest.raises(error, match=match):
        tf.fused_linear_cross_entropy(*(torch.from_numpy(a) for a in args))
