"""Parity of :mod:`jaxreg.fused` with :mod:`torch_ref.fused` and a straightforward torch loss.

Values and gradients with respect to ``hidden``, ``linear_weight``, ``bias``, the
probability targets and the token weights, in float32 and float64 (and bfloat16 with
its tolerance for the defaults and for every option together): the chunked loss against
torch_ref (torch 2.13's own ``F.linear_cross_entropy`` where torch has the options,
chunked for integer targets without smoothing; jaxreg's arithmetic in torch otherwise)
and against the straightforward torch loss (``F.cross_entropy`` of the full logits,
then token weights and the z-loss written out). The options are tested each alone, all
together, and in a covering array that meets every pair of them in all four on/off
combinations; leading batch dimensions, the reductions and chunk sizes that do not
divide the vocabulary cycle through the variants. The vocab-parallel functions run on
shards simulated with ``jax.vmap(..., axis_name=...)`` (the collectives are the same as
under ``shard_map``) against torch_ref in a single process; ``tests/test_sharded.py``
runs them on 8 devices. Each variant is a compiled loop, so the variants of a row are
compiled together, as one program per row and dtype.
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
from parity_tests._shared import FUSED_FACTORS, fused_covering_array
from parity_tests.harness import DTYPES, ParityCase, assert_parity, check_case, compare
from torch_ref import fused as tf

B, T, D, V = 2, 5, 6, 37  # hidden [B, T, D], vocabulary of 37 (prime: no chunk divides it)
C = 31  # classes with num_valid_classes (columns 31..36 are padding)
SHARDS = 4
#: The options as factors; ``COVERING`` switches them so that every pair meets in all
#: four on/off combinations (row r has a factor on when r is in its set of 3 of {1..5}).
FACTORS = FUSED_FACTORS
COVERING = fused_covering_array(range(1, 6))
ALONE = [frozenset({f}) for f in FACTORS]
EVERY = [frozenset(FACTORS), frozenset(FACTORS) - {"soft"}]


def linear_inputs(rng: np.random.Generator, vocab: int = V) -> tuple[np.ndarray, ...]:
    """``hidden``, ``linear_weight``, ``bias``, probabilities (zeros included), token
    weights (one 0), class weights, and labels (ignored entries, all below ``C``)."""
    labels = rng.integers(0, C, size=(B, T))
    labels = np.where(rng.random((B, T)) < 0.3, -100, labels)
    labels.flat[0] = 1
    target = rng.uniform(0, 1, (B, T, vocab)) * (rng.random((B, T, vocab)) < 0.7)
    token_weight = rng.uniform(0.2, 2.0, (B, T))
    token_weight.flat[3] = 0.0
    return (
        rng.standard_normal((B, T, D)),
        rng.standard_normal((D, vocab)),
        rng.standard_normal(vocab),
        target / target.sum(-1, keepdims=True),
        token_weight,
        rng.uniform(0.2, 2.0, vocab),
        labels,
    )


def sharded_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """As :func:`linear_inputs` with a vocabulary the shard count divides (36)."""
    return linear_inputs(rng, 36)


def options(variant, k: int, h, b, t, tw, cw, y) -> tuple[object, dict]:
    """``(labels, keyword arguments)`` of a variant (the same for JAX and torch inputs);
    reductions and chunk sizes (overlapping last chunks, one chunk) cycle with ``k``."""
    kw = {"reduction": ("mean", "none", "sum")[k % 3], "chunk_size": (5, 37, 8)[k % 3]}
    classes = C if "num_valid_classes" in variant else cw.shape[0]
    for name, value in (
        ("bias", b),
        ("token_weight", tw),
        ("weight", cw[:classes]),
        ("label_smoothing", 0.1),
        ("z_loss", 0.05),
        ("softcap", 2.5),
        ("num_valid_classes", C),
        ("return_aux", True),
    ):
        if name in variant:
            kw[name] = value
    return (t if "soft" in variant else y), kw


def flat_outputs(out, dtype):
    """The loss, or the loss and the aux outputs (the count as a float, for the harness)."""
    if isinstance(out, (jf.CrossEntropyAux, tf.CrossEntropyAux)) or not isinstance(out, tuple):
        return [out]
    loss, aux = out
    return [loss, aux.logsumexp, aux.z_loss, _as(aux.num_correct, dtype)]


def _as(x, dtype):
    return x.to(dtype) if isinstance(x, torch.Tensor) else x.astype(dtype)


def variants(fn, rows):
    """One function of the inputs running ``fn(h, w, labels, **options)`` for every row."""

    def run(h, w, b, t, tw, cw, y):
        outs = []
        for k, variant in enumerate(rows):
            labels, kw = options(variant, k, h, b, t, tw, cw, y)
            outs += flat_outputs(fn(h, w, labels, **kw), h.dtype)
        return outs

    return run


def torch_straightforward(
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
    chunk_size=None,
):
    """The loss written out in torch: the full logits, the cap, the class columns,
    ``F.cross_entropy`` per row, then the token weights, the z-loss and the reduction."""
    z = h @ w if bias is None else h @ w + bias
    z = z if softcap is None else softcap * torch.tanh(z / softcap)
    z = z[..., : num_valid_classes or w.shape[1]]
    soft = labels.is_floating_point()
    target = labels[..., : z.shape[-1]].reshape(-1, z.shape[-1]) if soft else labels.reshape(-1)
    rows = F.cross_entropy(
        z.reshape(-1, z.shape[-1]),
        target,
        weight=weight,
        label_smoothing=label_smoothing,
        reduction="none",
        **({} if soft else {"ignore_index": ignore_index}),
    ).reshape(z.shape[:-1])
    lse = torch.logsumexp(z, dim=-1)
    valid = torch.ones_like(lse, dtype=torch.bool) if soft else labels != ignore_index
    row_weight = torch.ones_like(lse)
    if weight is not None and not soft:
        row_weight = weight[torch.where(valid, labels, 0)]
    tau = torch.ones_like(lse) if token_weight is None else token_weight
    valid = valid & (tau != 0)
    ce = torch.where(valid, tau * rows, 0.0)
    zt = torch.where(valid, z_loss * tau * lse**2, 0.0)
    if reduction == "mean":
        ce = ce.sum() / torch.where(valid, tau * row_weight, 0.0).sum()
        zt = zt.sum() / torch.where(valid, tau, 0.0).sum()
    elif reduction == "sum":
        ce, zt = ce.sum(), zt.sum()
    if not return_aux:
        return ce + zt
    answer = labels[..., : z.shape[-1]].argmax(-1) if soft else labels
    correct = (valid & (z.argmax(-1) == answer)).sum()
    return ce + zt, tf.CrossEntropyAux(lse, zt, correct)


def shard_columns(x: jax.Array) -> jax.Array:
    """``[..., V]`` -> ``[SHARDS, ..., V / SHARDS]``, shard ``s`` holding columns ``s·V/S:``."""
    parts = x.reshape(*x.shape[:-1], SHARDS, x.shape[-1] // SHARDS)
    return jnp.moveaxis(parts, -2, 0)


def on_shards(fn, *sharded):
    """Runs ``fn(*shards)`` on every shard with the collectives of axis ``"vocab"``; the
    loss is the same on all shards, so shard 0's is returned."""
    return jax.tree.map(lambda x: x[0], jax.vmap(fn, axis_name="vocab")(*sharded))


def _sharded_labels(labels):
    if jnp.issubdtype(labels.dtype, jnp.floating):
        return shard_columns(labels)
    return jnp.broadcast_to(labels, (SHARDS, *labels.shape))


def jax_vocab_parallel_fused(h, w, labels, *, bias=None, **kwargs):
    def local(w_shard, b_shard, y):
        return jf.vocab_parallel_fused_linear_cross_entropy(
            h, w_shard, y, axis_name="vocab", bias_shard=b_shard, **kwargs
        )

    b = jnp.zeros(w.shape[1], w.dtype) if bias is None else bias
    return on_shards(local, shard_columns(w), shard_columns(b), _sharded_labels(labels))


def jax_vocab_parallel(h, w, labels, *, bias=None, chunk_size=None, **kwargs):
    logits = h @ w if bias is None else h @ w + bias[None, None, :]

    def local(z, y):
        return jf.vocab_parallel_cross_entropy(z, y, axis_name="vocab", **kwargs)

    return on_shards(local, shard_columns(logits), _sharded_labels(labels))


def torch_vocab_parallel_fused(h, w, labels, *, bias=None, **kwargs):
    """torch_ref's vocab-parallel loss in one process: one shard holding the whole weight."""
    return tf.vocab_parallel_fused_linear_cross_entropy(h, w, labels, bias_shard=bias, **kwargs)


def torch_vocab_parallel(h, w, labels, *, bias=None, chunk_size=None, **kwargs):
    logits = h @ w if bias is None else h @ w + bias
    return tf.vocab_parallel_cross_entropy(logits, labels, **kwargs)


GRADS = (0, 1, 2, 3, 4)  # hidden, weight, bias, probabilities, token weights
BF16 = (*DTYPES, "bfloat16")


def _cases(tag, rows, dtypes=DTYPES):
    """The rows against torch_ref and against the straightforward torch loss (one JAX
    function: the harness compiles it once per dtype)."""
    jax_fn = variants(jf.fused_linear_cross_entropy, rows)
    return [
        ParityCase(
            f"fused.fused_linear_cross_entropy[{tag}]",
            jax_fn,
            variants(tf.fused_linear_cross_entropy, rows),
            linear_inputs,
            grad_argnums=GRADS,
            dtypes=dtypes,
        ),
        ParityCase(
            f"fused.fused_linear_cross_entropy[{tag}, torch]",
            jax_fn,
            variants(torch_straightforward, rows),
            linear_inputs,
            grad_argnums=GRADS,
            reference="torch",
        ),
    ]


#: torch's own options (F.linear_cross_entropy, its chunked path where it has one).
TORCH_OPTIONS = [
    frozenset(),
    frozenset({"bias", "weight"}),
    frozenset({"label_smoothing"}),
    frozenset({"soft", "weight", "label_smoothing"}),
]

CASES = [
    *_cases("torch options", TORCH_OPTIONS, BF16),
    *_cases("alone", ALONE),
    *_cases("pairs", COVERING),
    *_cases("all", EVERY, BF16),
    ParityCase(
        "fused.vocab_parallel_fused_linear_cross_entropy[4 shards, all]",
        variants(jax_vocab_parallel_fused, [*EVERY, frozenset({"bias", "label_smoothing"})]),
        variants(torch_vocab_parallel_fused, [*EVERY, frozenset({"bias", "label_smoothing"})]),
        sharded_inputs,
        grad_argnums=GRADS,
    ),
    ParityCase(
        "fused.vocab_parallel_cross_entropy[4 shards, all]",
        variants(jax_vocab_parallel, [*EVERY, frozenset({"bias", "label_smoothing"})]),
        variants(torch_vocab_parallel, [*EVERY, frozenset({"bias", "label_smoothing"})]),
        sharded_inputs,
        grad_argnums=GRADS,
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
        lambda h, w, y: torch_straightforward(h, w, y, **kwargs),
        inputs,
        grad_argnums=(0, 1),
        reference="torch",
    )
    assert_parity(result)


def test_torch_ref_every_label_ignored_is_zero_with_zero_gradient(rng):
    """jaxreg's convention (tests/test_fused.py checks the JAX side); F.cross_entropy: NaN."""
    h, w, b = (torch.from_numpy(x).requires_grad_() for x in linear_inputs(rng)[:3])
    y = torch.full((B, T), -100)
    for kw in ({}, {"z_loss": 0.1}):  # F.linear_cross_entropy, and the statistics
        loss = tf.fused_linear_cross_entropy(h, w, y, bias=b, **kw)
        grads = torch.autograd.grad(loss, (h, w, b))
        assert loss.item() == 0.0
        assert all(bool((g == 0).all()) for g in grads)
    assert torch.isnan(torch_straightforward(h, w, y, bias=b))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((np.ones((3, 4)), np.ones((5, 7)), np.zeros(3, np.int64)), {}, ValueError, "D=4"),
        ((np.ones((3, 4)), np.ones((4, 7)), np.zeros(2, np.int64)), {}, ValueError, "labels"),
        (
            (np.ones((3, 4), np.int64), np.ones((4, 7)), np.zeros(3, np.int64)),
            {},
            TypeError,
            "hidden",
        ),
        ((np.ones((3, 4)), np.ones((4, 7)), np.zeros(3)), {}, ValueError, "probabilities"),
        (
            (np.ones((3, 4)), np.ones((4, 7)), np.zeros(3, np.int64)),
            {"z_loss": -1.0},
            ValueError,
            "z_loss",
        ),
        (
            (np.ones((3, 4)), np.ones((4, 7)), np.zeros(3, np.int64)),
            {"softcap": 0.0},
            ValueError,
            "softcap",
        ),
        (
            (np.ones((3, 4)), np.ones((4, 7)), np.zeros(3, np.int64)),
            {"weight": np.ones(6)},
            ValueError,
            "weight",
        ),
        (
            (np.ones((3, 4)), np.ones((4, 7)), np.zeros(3, np.int64)),
            {"token_weight": np.ones(2)},
            ValueError,
            "token_weight",
        ),
        (
            (np.ones((3, 4)), np.ones((4, 7)), np.array([0, 5, 1])),
            {"num_valid_classes": 5},
            ValueError,
            "holds 5",
        ),
    ],
)
def test_same_errors_as_torch_ref(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        jf.fused_linear_cross_entropy(*args, **kwargs)
    to_torch = {k: torch.from_numpy(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    with pytest.raises(error, match=match):
        tf.fused_linear_cross_entropy(
            *(torch.from_numpy(a) for a in args), **{**kwargs, **to_torch}
        )
