"""The parity harness for users: per-leaf errors, bf16/fp16, the assertion's message,
model-level parity with the first diverging layer, training trajectories, and the report
run on a user's cases from outside the repository.

Weights are copied into the nnx models here with the harness's own parameter mapping
(:class:`parity_tests.naming.ParamMapping`), not with the weight bridge.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import jaxreg
import torch_ref
from parity_tests.errors import TOLERANCES, TRAJECTORY_TOLERANCES, leaf_error
from parity_tests.harness import (
    ParityCase,
    assert_close_parity,
    assert_parity,
    check_case,
    compare,
)
from parity_tests.models import compare_models, nnx_calls
from parity_tests.naming import ParamMapping, nnx_key
from parity_tests.training import compare_training

V, D, H, HEADS = 11, 8, 16, 2

# --------------------------------------------------------------------------- low precision

#: bf16 and fp16 rows of the report (each reduces in float32, returns the input dtype).
CASES = [
    ParityCase(
        "information.logsumexp[low precision]",
        jaxreg.logsumexp,
        torch_ref.logsumexp,
        lambda rng: (rng.standard_normal((8, 16)),),
        dtypes=("bfloat16", "float16"),
    ),
    ParityCase(
        "activations.swiglu[low precision]",
        jaxreg.swiglu,
        torch_ref.swiglu,
        lambda rng: (rng.standard_normal((8, 16)),),
        dtypes=("bfloat16", "float16"),
    ),
    ParityCase(
        "losses.softmax_cross_entropy[label_smoothing, low precision]",
        lambda x, y: jaxreg.softmax_cross_entropy(x, y, label_smoothing=0.1),
        lambda x, y: torch_ref.softmax_cross_entropy(x, y, label_smoothing=0.1),
        lambda rng: (rng.standard_normal((8, 16)), rng.integers(0, 16, (8,))),
        dtypes=("bfloat16", "float16"),
    ),
    ParityCase(
        "norms.l2_norm[low precision]",
        jaxreg.l2_norm,
        torch_ref.l2_norm,
        lambda rng: (rng.standard_normal((8, 16)),),
        dtypes=("bfloat16", "float16"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_low_precision_case(case: ParityCase) -> None:
    check_case(case)


def test_low_precision_rows_are_two_ulps_and_catch_a_few_ulps() -> None:
    """bf16: 2^-6 (torch.testing: 1.6e-2), fp16: 2^-9; swiglu differs by one ulp of its
    largest output (torch rounds the silu), which passes; four ulps fail."""
    assert TOLERANCES["bfloat16"].rtol == 2.0**-6
    assert TOLERANCES["float16"].rtol == 2.0**-9
    x = np.random.default_rng(0).standard_normal((8, 16))
    for dtype, ulp in (("bfloat16", 2.0**-7), ("float16", 2.0**-10)):
        result = compare(jaxreg.swiglu, torch_ref.swiglu, [x], dtype=dtype)
        assert result.passed, result
        assert 0.0 < result.value_rel <= ulp
        off = compare(
            jaxreg.swiglu, lambda t, u=ulp: torch_ref.swiglu(t) * (1 + 4 * u), [x], dtype=dtype
        )
        assert not off.passed
        assert {leaf.name for leaf in off.leaves if not leaf.passed} == {"value", "grad[0]"}


# --------------------------------------------------------------------------- per-leaf errors


def test_errors_are_per_leaf_and_named_by_path() -> None:
    """A small output with a relative error of 1e-8 fails on its own scale, though the
    largest error over all leaves is far below rtol times the largest output."""

    def jax_fn(x):
        return {"big": x * 1e3, "small": x * 1e-3}

    def torch_fn(x):
        return {"big": x * 1e3, "small": x * 1e-3 * (1 + 1e-8)}

    x = np.linspace(0.5, 2.0, 6).reshape(2, 3)
    result = compare(jax_fn, torch_fn, [x])
    assert [leaf.name for leaf in result.leaves] == ["value['big']", "value['small']", "grad[0]"]
    assert not result.passed
    assert result.value_abs < TOLERANCES["float64"].rtol * 2e3  # the old global criterion
    assert result.worst.name == "value['small']"
    # the gradient sums both outputs' VJPs: dominated by the big one, it agrees
    assert [leaf.name for leaf in result.leaves if not leaf.passed] == ["value['small']"]


def test_assertion_message_names_the_worst_leaf_its_index_and_both_values() -> None:
    def torch_fn(x, y):
        out = torch_ref.logsumexp(x) + y.sum()
        return out + torch.tensor([0.0, 1e-3, 0.0], dtype=out.dtype)

    x = np.random.default_rng(1).standard_normal((3, 4))
    y = np.ones((2,))
    with pytest.raises(AssertionError) as error:
        assert_close_parity(lambda a, b: jaxreg.logsumexp(a) + b.sum(), torch_fn, [x, y])
    message = str(error.value)
    first_line, worst_line = message.splitlines()[:2]
    assert "FAIL" in first_line
    assert worst_line.strip().startswith("value: 1 / 3 entries over tolerance")
    assert "at index (1,)" in worst_line
    values = re.search(r"jax (\S+), torch (\S+)$", worst_line)
    jax_value, torch_value = float(values[1]), float(values[2])
    expected = float(jaxreg.logsumexp(jnp.asarray(x))[1]) + 2.0
    np.testing.assert_allclose([jax_value, torch_value], [expected, expected + 1e-3], rtol=1e-14)
    # a passing comparison returns its result; assert_parity is silent on it
    result = assert_close_parity(jaxreg.logsumexp, torch_ref.logsumexp, [x], dtype="float32")
    assert_parity(result)
    assert leaf_error("x", np.ones(2), np.ones(3), TOLERANCES["float64"]).problems


# --------------------------------------------------------------------------- models


class TorchLM(torch.nn.Module):
    """Embedding -> LayerNorm -> Linear -> SwiGLU FFN (residual) -> Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(V, D)
        self.norm = torch.nn.LayerNorm(D)
        self.proj = torch.nn.Linear(D, D)
        self.ff = torch_ref.SwiGLUFeedForward(D, H)
        self.head = torch.nn.Linear(D, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.norm(self.emb(ids)))
        return self.head(h + self.ff(h))


class TransposedLinear(nnx.Linear):
    """A porting bug: the square kernel used the wrong way round."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return x @ self.kernel[...].T + self.bias[...]


class SwappedGate(jaxreg.SwiGLUFeedForward):
    """A porting bug in the block's own code: silu on the wrong projection."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.w2(jaxreg.silu(self.w3(x)) * self.w1(x))


class JaxLM(nnx.Module):
    def __init__(
        self, *, rngs: nnx.Rngs, eps: float = 1e-5, proj=nnx.Linear, ff=jaxreg.SwiGLUFeedForward
    ):
        self.emb = nnx.Embed(V, D, rngs=rngs)
        self.norm = nnx.LayerNorm(D, epsilon=eps, rngs=rngs)
        self.proj = proj(D, D, rngs=rngs)
        self.ff = ff(D, H, rngs=rngs)
        self.head = nnx.Linear(D, V, rngs=rngs)

    def __call__(self, ids: jnp.ndarray) -> jnp.ndarray:
        h = self.proj(self.norm(self.emb(ids)))
        return self.head(h + self.ff(h))


def copy_into(torch_model: torch.nn.Module, nnx_model: nnx.Module, param_map=None) -> nnx.Module:
    """The torch weights into the nnx model (in place), through the harness's mapping."""
    arrays = {k: v.detach().double().numpy() for k, v in torch_model.state_dict().items()}
    converted = ParamMapping(torch_model, nnx_model, param_map).to_nnx(arrays)
    for path, variable in nnx.to_flat_state(nnx.state(nnx_model, nnx.Param)):
        variable.set_value(jnp.asarray(converted[nnx_key(path)], dtype=variable.dtype))
    return nnx_model


def lm_pair(**jax_kwargs) -> tuple[TorchLM, JaxLM]:
    torch.manual_seed(0)
    torch_model = TorchLM()
    return torch_model, copy_into(torch_model, JaxLM(rngs=nnx.Rngs(0), **jax_kwargs))


def token_ids(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (3, 5))


def ce_torch(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, V), y.reshape(-1), label_smoothing=0.1)


def ce_jax(out: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    return jaxreg.softmax_cross_entropy(out, y, label_smoothing=0.1)


def test_model_parity_names_every_parameter_output_and_layer() -> None:
    torch_model, jax_model = lm_pair()
    result = compare_models(torch_model, jax_model, token_ids())
    assert result.passed, result
    names = {e.name for e in result.grads}
    assert names == {
        "emb.weight <-> emb/embedding",
        "norm.weight <-> norm/scale",
        "norm.bias <-> norm/bias",
        "proj.weight <-> proj/kernel",
        "proj.bias <-> proj/bias",
        "ff.w1.weight <-> ff/w1/kernel",
        "ff.w2.weight <-> ff/w2/kernel",
        "ff.w3.weight <-> ff/w3/kernel",
        "head.weight <-> head/kernel",
        "head.bias <-> head/bias",
    }
    assert max(e.rel for e in result.leaves) <= 1e-12
    assert [(layer.torch_name, layer.nnx_path) for layer in result.layers] == [
        ("emb", "emb"),
        ("norm", "norm"),
        ("proj", "proj"),
        ("ff.w1", "ff.w1"),
        ("ff.w3", "ff.w3"),
        ("ff.w2", "ff.w2"),
        ("ff.dropout", "ff.dropout"),
        ("ff", "ff"),
        ("head", "head"),
        ("", ""),
    ]
    assert result.first_divergence is None and not result.unpaired
    text = str(result)
    for name in names:
        assert name in text
    # with a loss (ignored targets, label smoothing), in float32: the loss's gradients
    labels = token_ids(1)
    labels[0, 0] = -100
    result = compare_models(
        torch_model, jax_model, token_ids(), targets=labels, torch_loss=ce_torch,
        jax_loss=ce_jax, dtype="float32",
    )  # fmt: skip
    assert result.passed, result
    assert [e.name for e in result.outputs] == ["output", "loss"]
    # the caller's models are untouched: float32, and the torch model is not in eval mode
    assert jax_model.norm.scale.dtype == jnp.float32 and torch_model.training


@pytest.mark.parametrize(
    "bug, culprit, inputs_agree",
    [
        ({"eps": 1e-3}, "norm", True),  # LayerNorm eps changed on one side
        ({"proj": TransposedLinear}, "proj", True),  # a transposed projection
        ({"ff": SwappedGate}, "ff.w2", False),  # the block's own code: w2 gets other inputs
    ],
    ids=["layernorm-eps", "transposed-projection", "swapped-gate"],
)
def test_an_injected_bug_is_reported_at_its_layer(bug, culprit, inputs_agree) -> None:
    torch_model, jax_model = lm_pair(**bug)
    result = compare_models(torch_model, jax_model, token_ids())
    assert not result.passed
    first = result.first_divergence
    assert first.torch_name == culprit
    assert first.inputs_passed is inputs_agree
    before = result.layers[: result.layers.index(first)]
    assert before and all(layer.passed for layer in before)
    verdict = first.verdict()
    if inputs_agree:
        assert "inputs agree, output differs: this layer" in verdict
    else:
        assert "inputs already differ" in verdict and "parent ff" in verdict
    assert "first diverging layer: " + verdict in str(result)


def test_nnx_calls_wraps_only_for_the_block_and_records_each_call_once() -> None:
    class Scaled(nnx.Linear):
        def __call__(self, x):
            return super().__call__(x) * 2.0

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(2, 2, rngs=rngs)
            self.b = Scaled(2, 2, rngs=rngs)

        def __call__(self, x):
            return self.a(self.b(self.a(x)))

    net = Net(nnx.Rngs(0))
    originals = (vars(nnx.Linear)["__call__"], vars(Scaled)["__call__"], vars(Net)["__call__"])
    outside = nnx.Linear(2, 2, rngs=nnx.Rngs(1))
    with nnx_calls(net) as calls:
        net(jnp.ones((1, 2), jnp.float32))
        outside(jnp.ones((1, 2), jnp.float32))  # not part of the model: not recorded
    assert [(path, kind) for path, kind, _, _ in calls] == [
        ("a", "Linear"),
        ("b", "Scaled"),
        ("a", "Linear"),
        ("", "Net"),
    ]
    assert (
        vars(nnx.Linear)["__call__"],
        vars(Scaled)["__call__"],
        vars(Net)["__call__"],
    ) == originals


class TorchAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(V, D)
        self.attn = torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.head = torch.nn.Linear(D, V)

    def forward(self, ids):
        x = self.embed(ids)
        return self.head(x + self.attn(x, x, x, need_weights=False)[0])


class JaxAttention(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embedding = nnx.Embed(V, D, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(HEADS, D, decode=False, rngs=rngs)
        self.head = nnx.Linear(D, V, rngs=rngs)

    def __call__(self, ids):
        x = self.embedding(ids)
        return self.head(x + self.attn(x))


def attention_converter(state_dict, nnx_model) -> dict[tuple, np.ndarray]:
    """torch's packed ``in_proj_weight`` split into q/k/v kernels ``(in, heads, head_dim)``."""
    heads, dim = HEADS, D // HEADS
    w, b = state_dict["attn.in_proj_weight"], state_dict["attn.in_proj_bias"]
    out = {
        ("embedding", "embedding"): state_dict["embed.weight"],
        ("attn", "out", "kernel"): state_dict["attn.out_proj.weight"].T.reshape(heads, dim, D),
        ("attn", "out", "bias"): state_dict["attn.out_proj.bias"],
        ("head", "kernel"): state_dict["head.weight"].T,
        ("head", "bias"): state_dict["head.bias"],
    }
    for i, name in enumerate(("query", "key", "value")):
        out[("attn", name, "kernel")] = w[i * D : (i + 1) * D].T.reshape(D, heads, dim)
        out[("attn", name, "bias")] = b[i * D : (i + 1) * D].reshape(heads, dim)
    return out


def test_param_map_renames_and_converters() -> None:
    """Renamed parameters: a strict error naming both sides with shapes and the nearest
    name; ``{torch name: nnx path}`` fixes it; a converter (torch's packed attention
    projection split in three) labels each nnx leaf with its torch source."""
    torch.manual_seed(1)
    torch_model, jax_model = TorchAttention(), JaxAttention(nnx.Rngs(0))
    with pytest.raises(ValueError) as error:
        ParamMapping(torch_model, jax_model, None)
    message = str(error.value)
    assert "torch parameter 'embed.weight' (11, 8) has no nnx parameter" in message
    assert "nnx parameter embedding/embedding (11, 8) has no torch parameter" in message
    assert "attn.in_proj_weight" in message and "(nearest: " in message
    copy_into(torch_model, jax_model, attention_converter)
    result = compare_models(
        torch_model, jax_model, token_ids(), param_map=attention_converter, dtype="float32"
    )
    assert result.passed, result
    labels = {e.name for e in result.grads}
    assert "attn.in_proj_weight <-> attn/query/kernel" in labels
    assert "attn.in_proj_bias <-> attn/value/bias" in labels
    assert "attn.out_proj.weight <-> attn/out/kernel" in labels
    assert ("attn", "attn") in [(layer.torch_name, layer.nnx_path) for layer in result.layers]
    assert ("embed", "embedding") in [(layer.torch_name, layer.nnx_path) for layer in result.layers]
    # float64: jax.nn.dot_product_attention (flax's fast path) takes its softmax in float32
    # (about 1e-7 off); the harness puts that difference at the attention layer
    result = compare_models(torch_model, jax_model, token_ids(), param_map=attention_converter)
    if not result.passed:
        assert result.first_divergence.torch_name == "attn"
        assert result.first_divergence.inputs_passed

    # the mapping form, on a model whose only difference is a renamed embedding
    class Renamed(JaxLM):
        def __init__(self, rngs):
            super().__init__(rngs=rngs)
            self.tokens = nnx.Embed(V, D, rngs=rngs)
            self.emb = None

        def __call__(self, ids):
            h = self.proj(self.norm(self.tokens(ids)))
            return self.head(h + self.ff(h))

    torch_lm, _ = lm_pair()
    renames = {"emb.weight": "tokens/embedding"}
    renamed = copy_into(torch_lm, Renamed(nnx.Rngs(0)), renames)
    result = compare_models(torch_lm, renamed, token_ids(), param_map=renames)
    assert result.passed, result
    assert "emb.weight <-> tokens/embedding" in {e.name for e in result.grads}


def test_channels_first_layer_outputs_are_compared_channels_last() -> None:
    class TorchConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):  # NHWC in and out, NCHW inside
            return torch.relu(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)

    class JaxConv(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 4, (3, 3), padding=1, rngs=rngs)

        def __call__(self, x):
            return nnx.relu(self.conv(x))

    torch.manual_seed(2)
    torch_model = TorchConv()
    jax_model = copy_into(torch_model, JaxConv(nnx.Rngs(0)))
    x = np.random.default_rng(2).standard_normal((2, 5, 5, 3))
    result = compare_models(torch_model, jax_model, x)
    assert result.passed, result
    assert [layer.torch_name for layer in result.layers] == ["conv", ""]
    assert all(layer.passed for layer in result.layers)


def test_training_mode_with_batch_statistics_and_tuple_outputs() -> None:
    """BatchNorm in training mode updates its statistics inside the compiled comparison
    (models and trajectories); a tuple output is compared leaf by leaf."""

    class TorchBN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 6)
            self.bn = torch.nn.BatchNorm1d(6)
            self.out = torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.out(torch.relu(self.bn(self.fc(x)))), x.sum()

    class JaxBN(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(4, 6, rngs=rngs)
            self.bn = nnx.BatchNorm(6, momentum=0.9, epsilon=1e-5, rngs=rngs)  # torch's 0.1
            self.out = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.bn(self.fc(x)))), x.sum()

    torch.manual_seed(3)
    torch_model = TorchBN()
    jax_model = copy_into(torch_model, JaxBN(nnx.Rngs(0)))
    rng = np.random.default_rng(4)
    result = compare_models(torch_model, jax_model, rng.standard_normal((8, 4)), train=True)
    assert result.passed, result
    assert [e.name for e in result.outputs] == ["output[0]", "output[1]"]
    batches = [(rng.standard_normal((8, 4)), rng.integers(0, 3, (8,))) for _ in range(3)]
    result = compare_training(
        torch_model, jax_model, batches,
        torch_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
        optimizer=jaxreg.sgd(0.1), train=True,
        torch_loss=lambda out, y: F.cross_entropy(out[0], y),
        jax_loss=lambda out, y: jaxreg.softmax_cross_entropy(out[0], y),
    )  # fmt: skip
    assert result.passed, result


# --------------------------------------------------------------------------- training


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """torch's weights-only decay: matrices decayed, vectors (biases, norms) not."""
    return [
        {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0},
    ]


def lm_batches(steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(rng.integers(0, V, (4, 5)), rng.integers(0, V, (4, 5))) for _ in range(steps)]


@pytest.mark.parametrize(
    "torch_optimizer, optimizer",
    [
        (
            lambda m: torch.optim.SGD(param_groups(m, 0.1), lr=0.1, momentum=0.9),
            jaxreg.sgd(0.1, momentum=0.9, weight_decay=0.1, mask=jaxreg.weights_only),
        ),
        (
            lambda m: torch.optim.AdamW(param_groups(m, 0.1), lr=1e-2),
            jaxreg.adamw(1e-2, weight_decay=0.1, mask=jaxreg.weights_only),
        ),
    ],
    ids=["sgd-momentum", "adamw"],
)
def test_twenty_steps_agree_in_float64(torch_optimizer, optimizer) -> None:
    torch_model, jax_model = lm_pair()
    result = compare_training(
        torch_model, jax_model, lm_batches(20), torch_optimizer=torch_optimizer,
        optimizer=optimizer, torch_loss=ce_torch, jax_loss=ce_jax,
    )  # fmt: skip
    assert result.passed, result
    assert len(result.steps) == 21 and result.max_rel <= 1e-10
    assert {e.name for e in result.steps[-1].params} == {
        e.name for e in compare_models(torch_model, jax_model, token_ids(), layers=False).grads
    }


def test_float32_trajectory_has_its_own_row() -> None:
    torch_model, jax_model = lm_pair()
    result = compare_training(
        torch_model, jax_model, lm_batches(20),
        torch_optimizer=lambda m: torch.optim.AdamW(param_groups(m, 0.1), lr=1e-2),
        optimizer=jaxreg.adamw(1e-2, weight_decay=0.1, mask=jaxreg.weights_only),
        torch_loss=ce_torch, jax_loss=ce_jax, dtype="float32",
    )  # fmt: skip
    assert result.tolerance == TRAJECTORY_TOLERANCES["float32"]
    assert result.passed, result
    assert 1e-9 < result.max_rel < 1e-5  # float32 rounding, far inside 1e-4


def test_trajectory_names_the_first_step_and_parameter_that_leave_tolerance() -> None:
    torch_model, jax_model = lm_pair()
    batches = lm_batches(8)
    # the learning rate halves from the 5th update on, on the JAX side only
    schedule = optax.piecewise_constant_schedule(0.1, {4: 0.5})
    result = compare_training(
        torch_model, jax_model, batches,
        torch_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
        optimizer=jaxreg.sgd(schedule, momentum=0.9), torch_loss=ce_torch, jax_loss=ce_jax,
    )  # fmt: skip
    step, leaf = result.first_failure
    assert step == 5 and leaf.name == result.steps[5].params[0].name
    assert all(s.passed for s in result.steps[:5]) and result.steps[5].loss.passed
    assert "first leaves tolerance at step 5: " in str(result)
    # decay on every parameter in torch, on weights only in JAX: step 1, exactly the vectors
    result = compare_training(
        torch_model, jax_model, batches[:2],
        torch_optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1),
        optimizer=jaxreg.adamw(1e-2, weight_decay=0.1, mask=jaxreg.weights_only),
        torch_loss=ce_torch, jax_loss=ce_jax,
    )  # fmt: skip
    step, leaf = result.first_failure
    assert step == 1 and leaf.name == "head.bias <-> head/bias"
    assert {e.name for e in result.steps[1].params if not e.passed} == {
        "head.bias <-> head/bias",
        "norm.weight <-> norm/scale",
        "proj.bias <-> proj/bias",
    }  # and norm.bias, which is still zero: decay leaves it alone


# --------------------------------------------------------------------------- installed report


def test_no_module_of_the_package_imports_the_repositorys_tests() -> None:
    """`tests/` and `examples/` are not installed: nothing under parity_tests imports them."""
    offenders = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("tests", "examples")
            ]
    assert not offenders, offenders


#: A user's case module: a CASES list, a module-level case and a registered one.
USER_CASES = """
import numpy as np
import jaxreg, torch_ref
import parity_tests
from parity_tests.harness import ParityCase, register

# the installed copy, not the repository's
assert parity_tests.__file__.startswith({site!r}), parity_tests.__file__

CASES = [ParityCase("mine.softmax", jaxreg.softmax, torch_ref.softmax,
                    lambda rng: (rng.standard_normal((3, 4)),))]
loose = ParityCase("mine.relu", jaxreg.relu, torch_ref.relu,
                   lambda rng: (rng.standard_normal((5,)),), dtypes=("float32", "bfloat16"))
register(ParityCase("mine.wrong", jaxreg.softmax, lambda x: torch_ref.softmax(x) * 1.01,
                    lambda rng: (rng.standard_normal((3, 4)),), dtypes=("float64",)))
"""


@pytest.mark.slow
def test_installed_report_runs_a_users_cases_from_another_directory(tmp_path: Path) -> None:
    """`pip install` of a wheel built from the sources (about 4 s), then `python -m
    parity_tests --cases` and `jaxreg-parity` from an unrelated directory, with only the
    installed copy on the path: no `tests/`, no conftest, no repository."""
    pytest.importorskip("setuptools")  # the wheel is built without network access
    root = Path(__file__).parent.parent
    source, site, work = tmp_path / "source", tmp_path / "site", tmp_path / "work"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("jaxreg", "torch_ref", "parity_tests"):
        shutil.copytree(root / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("jaxreg-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    work.mkdir()
    (work / "my_cases.py").write_text(USER_CASES.format(site=str(site)))
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-m", "parity_tests", "--cases", "my_cases", "--filter", "mine."],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr  # mine.wrong fails
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("mine.")]
    assert [(r[0], r[2], r[-1]) for r in rows] == [
        ("mine.wrong", "float64", "FAIL"),
        ("mine.softmax", "float32", "pass"),
        ("mine.softmax", "float64", "pass"),
        ("mine.relu", "float32", "pass"),
        ("mine.relu", "bfloat16", "pass"),
    ]
    assert "worst leaf value: 12 / 12 entries over tolerance" in run.stdout
    # the console script, with the user's module given as a file
    script = site / "bin" / "jaxreg-parity"
    run = subprocess.run(
        [str(script), "--cases", str(work / "my_cases.py"), "--filter", "mine.softmax"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 0 failed (1 cases" in run.stdout
