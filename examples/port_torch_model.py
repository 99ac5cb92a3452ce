"""Port a small LLaMA-style PyTorch model to flax.nnx and prove the port, layer by layer.

The torch model is a researcher's own: an embedding, pre-norm transformer blocks (RMSNorm,
causal multi-head self-attention, a SwiGLU feed-forward), a final RMSNorm and a head that
is tied to the embedding (or not). Its flax.nnx twin is written with flax's own layers
and jaxreg's SwiGLU. The steps, each one call:

1. copy the weights with ``torch_ref.bridge.to_nnx`` — no renames: the bridge reads the
   nnx model's own state (the packed attention projection is split into query, key and
   value; the tied head counts once) and warns about every setting the weights cannot
   carry;
2. compare the two forward passes and every parameter gradient of the loss
   (cross-entropy with ignored tokens and label smoothing) with
   ``parity_tests.models.compare_models``, in float64 and float32;
3. train both for 20 AdamW steps (decay on the weight matrices only: a torch param
   group, a jaxreg mask) with ``parity_tests.training.compare_training`` and compare the
   losses and parameters step by step;
4. inject one bug into one layer of the torch model (an RMSNorm epsilon, or an attention
   projection copied transposed) and let ``compare_models`` name the first diverging layer, with
   every earlier layer shown as agreeing.

The figure shows the relative error of every layer call in execution order, for the
faithful port and for each injected bug, and the two training curves.

    python -m examples.port_torch_model [--quick] [--tied | --untied]
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

import jaxreg
import torch_ref
from examples import _common
from parity_tests.models import compare_models
from parity_tests.training import compare_training
from torch_ref.bridge import (
    PortingWarning,
    attention_in_input_dtype,
    nnx_params_from_state_dict,
    to_nnx,
)

VOCAB, DIM, HEADS, HIDDEN, LAYERS, SEQ, BATCH = 64, 32, 4, 64, 2, 12, 4
EPS = 1e-6  # the RMSNorm epsilon of both models
SMOOTHING = 0.1


# --------------------------------------------------------------------------- torch


class TorchBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn_norm = torch.nn.RMSNorm(DIM, eps=EPS)
        self.attn = torch.nn.MultiheadAttention(DIM, HEADS, bias=False, batch_first=True)
        self.ffn_norm = torch.nn.RMSNorm(DIM, eps=EPS)
        self.ffn = torch_ref.SwiGLUFeedForward(DIM, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        blocked = torch.triu(torch.ones(n, n, dtype=torch.bool, device=x.device), 1)
        h = self.attn_norm(x)
        x = x + self.attn(h, h, h, attn_mask=blocked, need_weights=False)[0]
        return x + self.ffn(self.ffn_norm(x))


class TorchLM(torch.nn.Module):
    def __init__(self, tied: bool) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, DIM)
        self.blocks = torch.nn.ModuleList(TorchBlock() for _ in range(LAYERS))
        self.norm = torch.nn.RMSNorm(DIM, eps=EPS)
        self.head = torch.nn.Linear(DIM, VOCAB, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# --------------------------------------------------------------------------- flax.nnx


class NnxBlock(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.attn_norm = nnx.RMSNorm(DIM, epsilon=EPS, rngs=rngs)
        # flax's attention takes its softmax in float32 even for float64 inputs (the
        # bridge warns): keep the input dtype, as torch does.
        self.attn = nnx.MultiHeadAttention(
            HEADS,
            DIM,
            use_bias=False,
            decode=False,
            attention_fn=attention_in_input_dtype,
            rngs=rngs,
        )
        self.ffn_norm = nnx.RMSNorm(DIM, epsilon=EPS, rngs=rngs)
        self.ffn = jaxreg.SwiGLUFeedForward(DIM, HIDDEN, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        # flax's mask is True where a query may attend (torch's is True where blocked).
        causal = nnx.make_causal_mask(jnp.ones(x.shape[:2]))
        h = self.attn_norm(x)
        x = x + self.attn(h, mask=causal)
        return x + self.ffn(self.ffn_norm(x))


class NnxLM(nnx.Module):
    def __init__(self, tied: bool, *, rngs: nnx.Rngs) -> None:
        self.tied = tied
        self.embed = nnx.Embed(VOCAB, DIM, rngs=rngs)
        self.blocks = nnx.List([NnxBlock(rngs=rngs) for _ in range(LAYERS)])
        self.norm = nnx.RMSNorm(DIM, epsilon=EPS, rngs=rngs)
        if not tied:
            self.head = nnx.Linear(DIM, VOCAB, use_bias=False, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.embed.attend(x) if self.tied else self.head(x)


# --------------------------------------------------------------------------- the losses


def torch_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits.reshape(-1, VOCAB), labels.reshape(-1), label_smoothing=SMOOTHING
    )  # ignore_index=-100 by default


def jax_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jaxreg.softmax_cross_entropy(logits, labels, label_smoothing=SMOOTHING)


def batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of a learnable rule (each token determines the next) and their next-token
    labels; the last position and about a tenth of the others are ignored (-100)."""
    tokens = np.empty((BATCH, SEQ + 1), np.int64)
    tokens[:, 0] = rng.integers(0, VOCAB, BATCH)
    for i in range(SEQ):
        tokens[:, i + 1] = (5 * tokens[:, i] + 3) % VOCAB
    labels = tokens[:, 1:].copy()
    labels[:, -1] = -100
    labels[rng.random(labels.shape) < 0.1] = -100
    return tokens[:, :-1], labels


def weight_groups(model: torch.nn.Module, decay: float) -> list[dict[str, Any]]:
    """torch param groups: decay on the weight matrices only (jaxreg.weights_only)."""
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


# --------------------------------------------------------------------------- the steps


def port(tied: bool, seed: int = 0) -> tuple[TorchLM, NnxLM]:
    """A torch model with random weights and its nnx twin holding the same weights."""
    torch.manual_seed(seed)
    torch_lm = TorchLM(tied).double().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PortingWarning)
        nnx_lm = to_nnx(torch_lm, NnxLM(tied, rngs=nnx.Rngs(seed)))
    for w in caught:  # none expected: every setting was made to agree
        print(f"  bridge: {w.message}")
    return torch_lm, nnx_lm


def inject(torch_lm: TorchLM, bug: str) -> tuple[TorchLM, str]:
    """A copy of ``torch_lm`` with one bug in one layer, and that layer's name."""
    import copy

    buggy = copy.deepcopy(torch_lm)
    block = buggy.blocks[LAYERS - 1]
    if bug == "rmsnorm_eps":
        block.ffn_norm.eps = 1e-2  # a typo'd epsilon: the weights are identical
        return buggy, f"blocks.{LAYERS - 1}.ffn_norm"
    if bug == "transposed_projection":
        # the classic hand-port mistake: a square projection copied without (or with one
        # too many) transposes; the shapes cannot tell
        out_proj = block.attn.out_proj
        with torch.no_grad():
            out_proj.weight.copy_(out_proj.weight.T.clone())
        return buggy, f"blocks.{LAYERS - 1}.attn"
    raise ValueError(bug)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = _common.parser(__doc__.splitlines()[0], trains=False)
    tie = p.add_mutually_exclusive_group()
    tie.add_argument("--tied", dest="tied", action="store_true", default=True)
    tie.add_argument("--untied", dest="tied", action="store_false")
    args = p.parse_args(argv)
    steps = 3 if args.quick else 20
    dtypes = ("float64",) if args.quick else ("float64", "float32")
    injected = ("rmsnorm_eps",) if args.quick else ("rmsnorm_eps", "transposed_projection")
    rng = np.random.default_rng(0)
    tokens, labels = batch(rng)
    losses = {"targets": (labels,), "torch_loss": torch_loss, "jax_loss": jax_loss}

    print(f"1. port ({'tied' if args.tied else 'untied'} head): torch_ref.bridge.to_nnx")
    torch_lm, nnx_lm = port(args.tied)
    n_params = sum(p.numel() for p in torch_lm.parameters())
    print(f"   {n_params} parameters copied, no renames")

    print("2. forward and every parameter gradient: compare_models")
    results: dict[str, Any] = {}
    for dtype in dtypes:
        result = compare_models(
            torch_lm,
            nnx_lm,
            tokens,
            dtype=dtype,
            param_map=nnx_params_from_state_dict,
            name=f"LM [{dtype}]",
            **losses,
        )
        print("   " + result.summary().replace("\n", "\n   "))
        results[dtype] = result
    print(results["float64"])

    print(f"3. {steps} AdamW steps, decay on weight matrices only: compare_training")
    batches = [batch(rng) for _ in range(steps)]
    trajectory = compare_training(
        torch_lm,
        nnx_lm,
        batches,
        torch_optimizer=lambda m: torch.optim.AdamW(weight_groups(m, 0.1), lr=1e-2),
        optimizer=jaxreg.adamw(1e-2, weight_decay=0.1, mask=jaxreg.weights_only),
        torch_loss=torch_loss,
        jax_loss=jax_loss,
        dtype="float64",
        param_map=nnx_params_from_state_dict,
        name="AdamW",
    )
    print("   " + trajectory.summary().replace("\n", "\n   "))

    print("4. one injected bug, localized: compare_models(...).first_divergence")
    bugs = {}
    for bug in injected:
        buggy, where = inject(torch_lm, bug)
        found = compare_models(
            buggy,
            nnx_lm,
            tokens,
            dtype="float64",
            param_map=nnx_params_from_state_dict,
            name=bug,
            **losses,
        )
        first = found.first_divergence
        assert first is not None and first.torch_name == where, (bug, first)
        agreeing = [layer.name for layer in found.layers[: found.layers.index(first)]]
        assert all(layer.passed for layer in found.layers[: found.layers.index(first)])
        print(f"   {bug}: {first.verdict()}")
        print(f"   ({len(agreeing)} earlier layer calls agree)")
        bugs[bug] = found

    _plot(results["float64"], bugs, trajectory, args.out)
    return {
        "forward": results,
        "trajectory": trajectory,
        "bugs": bugs,
    }


def _plot(faithful, bugs, trajectory, out) -> None:
    plt = _common.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    floor = 1e-18
    for label, result, style in [
        ("faithful port", faithful, "o-"),
        *((f"bug: {name}", result, "s--") for name, result in bugs.items()),
    ]:
        errors = [max((e.rel for e in layer.outputs), default=0.0) for layer in result.layers]
        left.semilogy(np.maximum(errors, floor), style, ms=3, lw=1, label=label)
    left.axhline(faithful.tolerance.rtol, color="gray", lw=1, ls=":", label="float64 tolerance")
    left.set_xlabel("layer call (execution order)")
    left.set_ylabel("relative error of the output")
    left.set_title("Where two models part: every layer call, torch vs nnx")
    left.legend(fontsize=8)
    steps = [s for s in trajectory.steps if s.loss is not None]
    right.plot([s.step for s in steps], [s.torch_loss for s in steps], "o-", label="torch")
    right.plot([s.step for s in steps], [s.jax_loss for s in steps], "x--", label="jax (nnx)")
    right.set_xlabel("AdamW step")
    right.set_ylabel("loss")
    right.set_title(f"Training, float64: largest difference {trajectory.max_rel:.1e}")
    right.legend()
    _common.save(fig, out, "port_torch_model")


if __name__ == "__main__":
    main()
