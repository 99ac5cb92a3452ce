"""Parity through :mod:`torch_ref.bridge`: torch layers and models copied into flax.nnx.

For every layer pair of :mod:`parity_tests._bridge_models` (settings made to agree),
random torch weights and buffers copied with ``to_nnx`` give the same outputs, input
gradients and parameter gradients (mapped back to torch's names) in float64 and float32,
within :data:`TOLERANCES`; round trips are bitwise; a model mixing every layer with
``nn.Sequential``/``nn.ModuleList`` nesting maps without a rename. Also: the errors for
unmatched and mis-shaped tensors (each with its shape and nearest candidate), renames,
``strict=False``, tied weights, every configuration warning (it fires where it should and
not for the agreeing setting), dtypes, memory never shared with torch.
"""

from __future__ import annotations

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import torch_ref.nn as tnn
from jaxreg import nn as jnn
from parity_tests._bridge_models import (
    LAYER_PAIRS,
    LayerPair,
    NnxMixed,
    TorchMixed,
    mixed_tokens,
)
from parity_tests.harness import TOLERANCES
from parity_tests.test_nn import MLP_SIZES, SeedFeedForward
from torch_ref.bridge import (
    PortingWarning,
    UnmatchedWeightsWarning,
    from_nnx,
    nnx_params_from_state_dict,
    state_dict_from_nnx,
    to_nnx,
    weight_map,
)

#: The sizes of tests/test_nn.py (LLaMA's rule maps DIM to HIDDEN with MULTIPLE).
DIM, HIDDEN, MULTIPLE = 6, 16, 16

DTYPES = {"float32": (jnp.float32, torch.float32), "float64": (jnp.float64, torch.float64)}


def assert_within_table(got: dict, want: dict, dtype: str) -> None:
    """Per entry, norm-wise: ``max|got - want| <= max(rtol·max|want|, atol)`` (the harness rule)."""
    tol = TOLERANCES[dtype]
    assert got.keys() == want.keys()
    for name in want:
        g, w = np.asarray(got[name], np.float64), np.asarray(want[name], np.float64)
        assert g.shape == w.shape, name
        error = float(np.max(np.abs(g - w)))
        assert error <= max(tol.rtol * float(np.max(np.abs(w))), tol.atol), (name, error)


def randomize(module: nn.Module, rng: np.random.Generator) -> nn.Module:
    """Every float parameter and buffer drawn at random (running variances positive)."""
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                value = rng.standard_normal(tuple(tensor.shape))
                if name.endswith("running_var"):
                    value = np.abs(value) + 0.5
                tensor.copy_(torch.from_numpy(value))
    return module


def torch_outputs_and_grads(
    case: LayerPair, module: nn.Module, xs: tuple[np.ndarray, ...], cotangent: np.ndarray
) -> dict:
    inputs = [torch.from_numpy(x).requires_grad_(case.differentiable) for x in xs]
    module.zero_grad()
    out = case.torch_call(module, *inputs)
    (out * torch.from_numpy(cotangent)).sum().backward()
    found = {"out": out.detach().numpy()}
    if case.differentiable:
        found |= {f"x{i}": x.grad.numpy() for i, x in enumerate(inputs)}
    return found | {name: p.grad.numpy() for name, p in module.named_parameters()}


def nnx_outputs_and_grads(case: LayerPair, modules: dict, xs: dict, cotangents: dict) -> dict:
    """``{dtype: (output, parameter gradients (nnx.State), input gradients)}``, float32 and
    float64 in one compiled program."""

    def one(module: nnx.Module, inputs: tuple, cotangent: jax.Array):
        def loss(module, inputs):
            return jnp.sum(module(*inputs) * cotangent)

        if case.differentiable:
            grads, grad_inputs = nnx.grad(loss, argnums=(0, 1))(module, inputs)
        else:
            grads, grad_inputs = nnx.grad(loss)(module, inputs), ()
        return module(*inputs), grads, grad_inputs

    @nnx.jit
    def run(modules, xs, cotangents):
        return {d: one(modules[d], xs[d], cotangents[d]) for d in modules}

    # flax's normalization layers promote their statistics with float32, which strict
    # promotion (conftest) refuses for float64 inputs.
    with jax.numpy_dtype_promotion("standard"):
        return run(modules, xs, cotangents)


@pytest.mark.parametrize("case", LAYER_PAIRS, ids=lambda c: c.name)
def test_layer_copied_from_torch_computes_the_same(case: LayerPair) -> None:
    """Outputs, input gradients and every parameter gradient (mapped back to torch names),
    float64 within 1e-12 and float32 within 1e-5; no setting warning (they agree)."""
    rng = np.random.default_rng(0)
    torch_modules, nnx_modules, xs, cotangents, want = {}, {}, {}, {}, {}
    for dtype, (jax_dtype, torch_dtype) in DTYPES.items():
        torch_modules[dtype] = randomize(case.build_torch(torch_dtype), rng).eval()
        nnx_modules[dtype] = case.build_nnx(jax_dtype, nnx.Rngs(0))
        nnx_modules[dtype].eval()  # before the copy: the modes are compared
        to_nnx(torch_modules[dtype], nnx_modules[dtype])
        inputs = case.inputs(rng, np.dtype(dtype))
        out = case.torch_call(torch_modules[dtype], *map(torch.from_numpy, inputs))
        cotangent = rng.standard_normal(tuple(out.shape)).astype(dtype)
        want[dtype] = torch_outputs_and_grads(case, torch_modules[dtype], inputs, cotangent)
        xs[dtype] = tuple(jnp.asarray(case.to_jax(x)) for x in inputs)
        cotangents[dtype] = jnp.asarray(case.to_jax(cotangent))
    results = nnx_outputs_and_grads(case, nnx_modules, xs, cotangents)
    for dtype, (out, grads, grad_inputs) in results.items():
        got = {"out": case.from_jax(out)}
        got |= {f"x{i}": case.from_jax(g) for i, g in enumerate(grad_inputs)}
        got |= state_dict_from_nnx(
            nnx_modules[dtype], state=grads, torch_module=torch_modules[dtype]
        )
        assert_within_table(got, want[dtype], dtype)


@pytest.mark.parametrize("case", LAYER_PAIRS, ids=lambda c: c.name)
def test_round_trips_are_bitwise(case: LayerPair) -> None:
    """torch -> nnx -> torch and nnx -> torch -> nnx, parameters and buffers; torch's
    ``num_batches_tracked`` is left as it is."""
    rng = np.random.default_rng(1)
    source = randomize(case.build_torch(torch.float64), rng).eval()
    middle = case.build_nnx(jnp.float64, nnx.Rngs(0))
    middle.eval()
    to_nnx(source, middle)
    target = case.build_torch(torch.float64).eval()
    tracked = {k: v.clone() for k, v in target.state_dict().items() if "num_batches" in k}
    from_nnx(middle, target)
    for name, value in source.state_dict().items():
        expected = tracked.get(name, value)
        assert torch.equal(target.state_dict()[name], expected), name
    back = case.build_nnx(jnp.float64, nnx.Rngs(1))
    back.eval()
    to_nnx(target, back)
    for a, b in zip(
        jax.tree.leaves(nnx.state(middle, (nnx.Param, nnx.BatchStat))),
        jax.tree.leaves(nnx.state(back, (nnx.Param, nnx.BatchStat))),
        strict=True,
    ):
        assert a.dtype == b.dtype == jnp.float64
        np.testing.assert_array_equal(a, b)


def test_mixed_model_maps_without_renames() -> None:
    """Embedding, LayerNorm, attention, ModuleList of Sequentials (GELU, Dropout), RMSNorm,
    jaxreg's SwiGLU and MLP, Conv1d, BatchNorm1d, ConvTranspose1d, GroupNorm: every tensor
    maps by structure, the settings agree, outputs and all gradients within 1e-12."""
    torch_model = randomize(TorchMixed(), np.random.default_rng(2)).eval()
    nnx_model = NnxMixed(rngs=nnx.Rngs(0))
    nnx_model.eval()
    mapping = weight_map(torch_model, nnx_model)
    assert mapping.complete and not mapping.notes, str(mapping)
    assert mapping.matched["blocks.1.3.weight"] == "blocks.1.layers.3.weight"
    assert mapping.matched["conv.1.running_var"] == "conv.layers.1.running_var"
    assert len(mapping.matched) == len(torch_model.state_dict()) - 1  # num_batches_tracked
    to_nnx(torch_model, nnx_model)
    tokens = mixed_tokens(np.random.default_rng(3))
    out = torch_model(torch.from_numpy(tokens))
    cotangent = np.random.default_rng(4).standard_normal(tuple(out.shape))
    (out * torch.from_numpy(cotangent)).sum().backward()
    want = {"out": out.detach().numpy()}
    want |= {name: p.grad.numpy() for name, p in torch_model.named_parameters()}

    @nnx.jit
    def run(model, tokens):
        return nnx.value_and_grad(lambda m: jnp.sum(m(tokens) * cotangent), has_aux=False)(
            model
        ), model(tokens)

    with jax.numpy_dtype_promotion("standard"):
        (_, grads), got_out = run(nnx_model, jnp.asarray(tokens))
    got = {"out": got_out}
    got |= state_dict_from_nnx(nnx_model, state=grads, torch_module=torch_model)
    assert_within_table(got, want, "float64")


def test_sequential_indices_pair_in_order() -> None:
    """A torch Sequential with activations between its layers (indices 0, 3, 6) against an
    nnx list numbered 0, 1, 2: paired in order, no rename."""
    torch.manual_seed(5)
    seed_mlp = nn.Sequential(
        nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(HIDDEN, DIM),
    ).double()  # fmt: skip
    mlp = to_nnx(seed_mlp, jnn.MLP(MLP_SIZES, param_dtype=jnp.float64, rngs=nnx.Rngs(0)))
    for i, j in enumerate((0, 3, 6)):
        np.testing.assert_array_equal(mlp.layers[i].kernel[...], seed_mlp[j].weight.detach().T)
        np.testing.assert_array_equal(mlp.layers[i].bias[...], seed_mlp[j].bias.detach())
    assert list(state_dict_from_nnx(mlp, torch_module=seed_mlp)) == [
        f"{j}.{leaf}" for j in (0, 3, 6) for leaf in ("weight", "bias")
    ]


# --------------------------------------------------------------------------- jaxreg modules


BUILDERS = {
    "SwiGLUFeedForward": (
        lambda td: tnn.SwiGLUFeedForward(DIM, HIDDEN, dropout=0.2, param_dtype=td),
        lambda jd: jnn.SwiGLUFeedForward(
            DIM, HIDDEN, dropout=0.2, param_dtype=jd, rngs=nnx.Rngs(0)
        ),
    ),
    "SwiGLUFeedForward[seed]": (
        lambda td: SeedFeedForward(DIM, None, multiple_of=MULTIPLE, dropout=0.2).to(td),
        lambda jd: jnn.SwiGLUFeedForward(
            DIM, multiple_of=MULTIPLE, dropout=0.2, param_dtype=jd, rngs=nnx.Rngs(0)
        ),
    ),
    "MLP": (
        lambda td: tnn.MLP(MLP_SIZES, dropout=0.3, param_dtype=td),
        lambda jd: jnn.MLP(MLP_SIZES, dropout=0.3, param_dtype=jd, rngs=nnx.Rngs(0)),
    ),
}


class TorchBlock(nn.Module):
    """jaxreg's torch twins in a ModuleList: the same attribute names as :class:`NnxBlock`."""

    def __init__(self) -> None:
        super().__init__()
        self.ff = tnn.SwiGLUFeedForward(DIM, HIDDEN, param_dtype=torch.float64)
        self.heads = nn.ModuleList([tnn.Linear(DIM, HIDDEN, param_dtype=torch.float64)])
        self.mlp = tnn.MLP([HIDDEN, HIDDEN, DIM], param_dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.heads[0](x + self.ff(x)))


class NnxBlock(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.ff = jnn.SwiGLUFeedForward(DIM, HIDDEN, param_dtype=jnp.float64, rngs=rngs)
        self.heads = nnx.List([jnn.Linear(DIM, HIDDEN, param_dtype=jnp.float64, rngs=rngs)])
        self.mlp = jnn.MLP([HIDDEN, HIDDEN, DIM], param_dtype=jnp.float64, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.mlp(self.heads[0](x + self.ff(x)))


JAXREG_CASES = {
    **{f"{name}-{dtype}": (*build, dtype) for name, build in BUILDERS.items() for dtype in DTYPES},
    "composite-float64": (lambda td: TorchBlock(), lambda jd: NnxBlock(nnx.Rngs(0)), "float64"),
}


@pytest.mark.parametrize("name", sorted(JAXREG_CASES))
def test_jaxreg_module_copied_from_torch(name: str) -> None:
    build_torch, build_nnx, dtype = JAXREG_CASES[name]
    jax_dtype, torch_dtype = DTYPES[dtype]
    torch.manual_seed(0)
    case = LayerPair(
        name, build_torch, build_nnx, lambda rng, d: (rng.standard_normal((5, DIM)).astype(d),)
    )
    torch_module = build_torch(torch_dtype).eval()
    nnx_module = build_nnx(jax_dtype)
    nnx_module.eval()
    to_nnx(torch_module, nnx_module)
    rng = np.random.default_rng(0)
    (x,) = case.inputs(rng, np.dtype(dtype))
    cotangent = rng.standard_normal((5, DIM)).astype(dtype)
    want = torch_outputs_and_grads(case, torch_module, (x,), cotangent)
    out, grads, (grad_x,) = nnx_outputs_and_grads(
        case, {dtype: nnx_module}, {dtype: (jnp.asarray(x),)}, {dtype: jnp.asarray(cotangent)}
    )[dtype]
    got = {"out": out, "x0": grad_x}
    got |= state_dict_from_nnx(nnx_module, state=grads, torch_module=torch_module)
    assert_within_table(got, want, dtype)


def test_dtypes_are_the_destinations() -> None:
    torch.manual_seed(3)
    source = tnn.SwiGLUFeedForward(DIM, HIDDEN, param_dtype=torch.float64)
    target = to_nnx(source, jnn.SwiGLUFeedForward(DIM, HIDDEN, rngs=nnx.Rngs(0)))
    assert target.w1.kernel.dtype == jnp.float32
    np.testing.assert_array_equal(
        target.w1.kernel[...], source.w1.weight.detach().T.to(torch.float32).numpy()
    )
    # an abstract destination: its parameters are created by the copy, none is drawn
    half = nnx.eval_shape(
        lambda: jnn.SwiGLUFeedForward(DIM, HIDDEN, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    )
    to_nnx(source, half)
    assert half.w2.kernel.dtype == jnp.bfloat16
    back = from_nnx(half, tnn.SwiGLUFeedForward(DIM, HIDDEN))  # bfloat16 -> float32
    assert back.w2.weight.dtype == torch.float32
    np.testing.assert_array_equal(
        back.w2.weight.detach().numpy(), np.asarray(half.w2.kernel[...], np.float32).T
    )
    # flax makes BatchNorm statistics float32 whatever param_dtype: they take param_dtype
    norm = nnx.BatchNorm(
        3, momentum=0.9, use_fast_variance=False, use_running_average=True,
        param_dtype=jnp.float64, rngs=nnx.Rngs(0),
    )  # fmt: skip
    to_nnx(nn.BatchNorm1d(3).double().eval(), norm)
    assert norm.mean.dtype == norm.var.dtype == jnp.float64
    # a bfloat16 torch tensor arrives exactly
    weights = torch.randn(4, 3).to(torch.bfloat16)
    layer = nnx.Linear(3, 4, use_bias=False, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    to_nnx({"weight": weights}, layer)
    np.testing.assert_array_equal(
        np.asarray(layer.kernel[...], np.float32), weights.float().numpy().T
    )


def test_state_dict_functions_are_pure_and_traceable() -> None:
    module = jnn.Linear(DIM, HIDDEN, use_bias=False, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    before = np.asarray(module.kernel[...])
    weight = np.random.default_rng(0).standard_normal((HIDDEN, DIM))
    graphdef, _ = nnx.split(module, nnx.Param)

    @jax.jit
    def apply(w: jax.Array, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, nnx_params_from_state_dict({"weight": w}, module))(x)

    x = np.ones((2, DIM))
    np.testing.assert_allclose(apply(jnp.asarray(weight), jnp.asarray(x)), x @ weight.T, rtol=1e-14)
    np.testing.assert_array_equal(module.kernel[...], before)  # unchanged
    np.testing.assert_array_equal(state_dict_from_nnx(module)["weight"], before.T)


def test_params_from_a_state_dict_with_buffers() -> None:
    """The running statistics may come along (a full state dict) and are left out; they are
    not required (a dict of gradients has none)."""
    torch_norm = randomize(nn.BatchNorm1d(3).double(), np.random.default_rng(6))
    flax_norm = nnx.BatchNorm(3, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    full = nnx_params_from_state_dict(torch_norm.state_dict(), flax_norm)
    grads_only = nnx_params_from_state_dict(dict(torch_norm.named_parameters()), flax_norm)
    for state in (full, grads_only):
        assert set(state) == {"scale", "bias"}
        np.testing.assert_array_equal(state["scale"][...], torch_norm.weight.detach().numpy())


def test_weights_are_copied_never_shared_with_torch() -> None:
    """A torch optimizer step (in-place update) after the copy must not change the nnx
    model, through `to_nnx` or through a state dict of NumPy views of the tensors."""
    torch_layer = tnn.Linear(3, 2).double()
    nnx_layer = jnn.Linear(3, 2, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    to_nnx(torch_layer, nnx_layer)
    views = {k: v.detach().numpy() for k, v in torch_layer.state_dict().items()}
    state = nnx_params_from_state_dict(views, nnx_layer)
    before = np.array(nnx_layer.kernel[...])
    with torch.no_grad():
        for p in torch_layer.parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(nnx_layer.kernel[...], before)
    np.testing.assert_array_equal(state["kernel"][...], before)


def test_tied_weights_count_once() -> None:
    """A torch head tied to the embedding has no nnx variable of its own (``Embed.attend``)."""

    class TorchTied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(7, 4)
            self.head = nn.Linear(4, 7, bias=False)
            self.head.weight = self.embed.weight

    class NnxTied(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.embed = nnx.Embed(7, 4, rngs=rngs)

    source = TorchTied()
    mapping = weight_map(source, NnxTied(nnx.Rngs(0)))
    assert mapping.complete and mapping.tied == {"head.weight": "embed.weight"}
    model = to_nnx(source, NnxTied(nnx.Rngs(0)))
    np.testing.assert_array_equal(model.embed.embedding[...], source.head.weight.detach().numpy())


# --------------------------------------------------------------------------- errors


def test_mismatched_shapes_list_both_shapes() -> None:
    nnx_module = jnn.MLP([DIM, HIDDEN, DIM], rngs=nnx.Rngs(0))
    before = np.array(nnx_module.layers[0].kernel[...])
    line = (
        rf"\n    layers.0.weight: torch \(12, {DIM}\), nnx \(16, {DIM}\) "
        rf"\[layers/0/kernel \({DIM}, 16\)\]\n"
    )
    with pytest.raises(ValueError, match=r"^to_nnx: .*nothing was copied(.|\n)*" + line):
        to_nnx(tnn.MLP([DIM, 12, DIM]), nnx_module)
    np.testing.assert_array_equal(nnx_module.layers[0].kernel[...], before)
    with pytest.raises(ValueError, match=r"^from_nnx: (.|\n)*shapes differ \(3\)(.|\n)*" + line):
        from_nnx(nnx_module, tnn.MLP([DIM, 12, DIM]))
    # paired by structure: the nnx name is given too
    sequential = nn.Sequential(nn.Linear(DIM, 12), nn.ReLU(), nn.Linear(12, DIM))
    line = rf"\n    0.weight: torch \(12, {DIM}\), nnx layers.0.weight \(16, {DIM}\) \[layers/0/ker"
    with pytest.raises(ValueError, match=line):
        to_nnx(sequential, nnx_module)


class TorchNamed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.norm = nn.LayerNorm(8, bias=False)


class NnxNamed(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(11, 8, rngs=rngs)
        self.norm = nnx.LayerNorm(
            8, epsilon=1e-5, use_fast_variance=False, use_bias=False, rngs=rngs
        )
        self.extra = nnx.Linear(8, 2, rngs=rngs)


def test_unmatched_tensors_list_shape_and_nearest_candidate() -> None:
    with pytest.raises(ValueError) as error:
        to_nnx(TorchNamed(), NnxNamed(nnx.Rngs(0)))
    message = str(error.value)
    assert (
        "only in torch (1):\n    emb.weight (11, 8); nearest in nnx: embed.weight (11, 8) "
        "[nnx embed/embedding (11, 8)]" in message
    )
    assert "only in nnx (3), named as torch would name them:\n" in message
    assert (
        "    embed.weight (11, 8) [nnx embed/embedding (11, 8)]; nearest in torch: "
        "emb.weight (11, 8)" in message
    )
    assert "    extra.weight (2, 8) [nnx extra/kernel (8, 2)]; nearest in torch: " in message
    assert "rename=[(pattern, replacement), ...]" in message


def test_renames_regex_and_callable() -> None:
    torch_model = TorchNamed()
    keep = {"rename": [(r"^emb\.", "embed.")], "strict": False}
    with pytest.warns(UnmatchedWeightsWarning, match=r"extra\.weight \(2, 8\)"):
        model = to_nnx(torch_model, NnxNamed(nnx.Rngs(0)), **keep)
    np.testing.assert_array_equal(model.embed.embedding[...], torch_model.emb.weight.detach())
    # a callable; None leaves a torch tensor out on purpose
    extra = {**torch_model.state_dict(), "rope.freqs": torch.ones(3)}
    mapping = weight_map(
        extra,
        NnxNamed(nnx.Rngs(0)),
        rename=lambda n: None if n.startswith("rope.") else n.replace("emb.", "embed."),
    )
    assert mapping.skipped == ["rope.freqs"]
    assert mapping.matched == {"emb.weight": "embed.weight", "norm.weight": "norm.weight"}
    assert set(mapping.only_nnx) == {"extra.weight", "extra.bias"}
    with pytest.raises(
        ValueError,
        match=r"emb\.weight \(renamed embd\.weight\) \(11, 8\); "
        r"nearest in nnx: embed\.weight",
    ):
        to_nnx(TorchNamed(), NnxNamed(nnx.Rngs(0)), rename=[(r"^emb\.", "embd.")])
    with pytest.raises(ValueError, match=r"maps both 'emb.weight' and 'norm.weight' to 'x'"):
        weight_map(TorchNamed(), NnxNamed(nnx.Rngs(0)), rename=lambda n: "x")
    with pytest.raises(TypeError, match=r"`rename` must be a list of \(pattern, replacement\)"):
        weight_map(TorchNamed(), NnxNamed(nnx.Rngs(0)), rename=["emb"])


def test_non_strict_copies_what_matches() -> None:
    torch.manual_seed(7)
    source = tnn.MLP([DIM, HIDDEN, HIDDEN, DIM])
    target = jnn.MLP([DIM, HIDDEN, DIM], rngs=nnx.Rngs(0))
    with pytest.warns(UnmatchedWeightsWarning, match=r"shapes differ \(2\)"):
        to_nnx(source, target, strict=False)
    np.testing.assert_array_equal(target.layers[0].kernel[...], source.layers[0].weight.detach().T)


# --------------------------------------------------------------------------- settings


def _rngs() -> nnx.Rngs:
    return nnx.Rngs(0)


_F32_EPS = float(jnp.finfo(jnp.float32).eps)
_EXACT = {"epsilon": 1e-5, "use_fast_variance": False}
_BN = {"momentum": 0.9, "use_fast_variance": False, "use_running_average": True}

#: (id, torch layer, nnx layer that differs, nnx layer that agrees, the setting named)
SETTINGS = [
    ("LayerNorm eps", lambda: nn.LayerNorm(4),
     lambda: nnx.LayerNorm(4, use_fast_variance=False, rngs=_rngs()),
     lambda: nnx.LayerNorm(4, **_EXACT, rngs=_rngs()), "LayerNorm epsilon"),
    ("LayerNorm fast variance", lambda: nn.LayerNorm(4),
     lambda: nnx.LayerNorm(4, epsilon=1e-5, rngs=_rngs()),
     lambda: nnx.LayerNorm(4, **_EXACT, rngs=_rngs()), "LayerNorm variance formula"),
    ("RMSNorm eps=None float32", lambda: nn.RMSNorm(4),
     lambda: nnx.RMSNorm(4, rngs=_rngs()),
     lambda: nnx.RMSNorm(4, epsilon=_F32_EPS, rngs=_rngs()), "RMSNorm epsilon"),
    ("RMSNorm eps=None float64", lambda: nn.RMSNorm(4, dtype=torch.float64),
     lambda: nnx.RMSNorm(4, epsilon=_F32_EPS, param_dtype=jnp.float64, rngs=_rngs()),
     lambda: nnx.RMSNorm(4, epsilon=float(jnp.finfo(jnp.float64).eps), param_dtype=jnp.float64,
                         rngs=_rngs()), "RMSNorm epsilon"),
    ("GroupNorm default groups", lambda: nn.GroupNorm(4, 64),
     lambda: nnx.GroupNorm(64, **_EXACT, rngs=_rngs()),
     lambda: nnx.GroupNorm(64, num_groups=4, **_EXACT, rngs=_rngs()), "GroupNorm num_groups"),
    ("GroupNorm eps", lambda: nn.GroupNorm(2, 4),
     lambda: nnx.GroupNorm(4, num_groups=2, use_fast_variance=False, rngs=_rngs()),
     lambda: nnx.GroupNorm(4, num_groups=2, **_EXACT, rngs=_rngs()), "GroupNorm epsilon"),
    ("BatchNorm momentum", lambda: nn.BatchNorm1d(3).eval(),
     lambda: nnx.BatchNorm(3, **{**_BN, "momentum": 0.99}, rngs=_rngs()),
     lambda: nnx.BatchNorm(3, **_BN, rngs=_rngs()), "BatchNorm momentum"),
    ("BatchNorm eps", lambda: nn.BatchNorm1d(3).eval(),
     lambda: nnx.BatchNorm(3, epsilon=1e-3, **_BN, rngs=_rngs()),
     lambda: nnx.BatchNorm(3, **_BN, rngs=_rngs()), "BatchNorm epsilon"),
    ("BatchNorm mode", lambda: nn.BatchNorm1d(3).eval(),
     lambda: nnx.BatchNorm(3, **{**_BN, "use_running_average": False}, rngs=_rngs()),
     lambda: nnx.BatchNorm(3, **_BN, rngs=_rngs()), "BatchNorm mode"),
    ("BatchNorm unbiased running variance", lambda: nn.BatchNorm1d(3).train(),
     lambda: nnx.BatchNorm(3, **{**_BN, "use_running_average": False}, rngs=_rngs()),
     None, "BatchNorm running variance"),
    ("Conv strided SAME", lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1),
     lambda: nnx.Conv(2, 3, (3, 3), strides=2, rngs=_rngs()),
     lambda: nnx.Conv(2, 3, (3, 3), strides=2, padding=[(1, 1), (1, 1)], rngs=_rngs()),
     "Conv padding"),
    ("Conv padding", lambda: nn.Conv1d(2, 3, 3),
     lambda: nnx.Conv(2, 3, (3,), rngs=_rngs()),
     lambda: nnx.Conv(2, 3, (3,), padding="VALID", rngs=_rngs()), "Conv padding"),
    ("Conv circular", lambda: nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular"),
     lambda: nnx.Conv(2, 3, (3,), rngs=_rngs()),
     lambda: nnx.Conv(2, 3, (3,), padding="CIRCULAR", rngs=_rngs()), "Conv padding"),
    ("Conv stride", lambda: nn.Conv1d(2, 3, 3, stride=2),
     lambda: nnx.Conv(2, 3, (3,), padding="VALID", rngs=_rngs()),
     lambda: nnx.Conv(2, 3, (3,), strides=(2,), padding="VALID", rngs=_rngs()), "Conv stride"),
    ("ConvTranspose padding", lambda: nn.ConvTranspose1d(2, 3, 3, stride=2, padding=1,
                                                         output_padding=1),
     lambda: nnx.ConvTranspose(2, 3, (3,), strides=2, rngs=_rngs()),
     lambda: nnx.ConvTranspose(2, 3, (3,), strides=2, padding=[(1, 2)], rngs=_rngs()),
     "ConvTranspose padding"),
    ("attention heads", lambda: nn.MultiheadAttention(8, 2, batch_first=True),
     lambda: nnx.MultiHeadAttention(4, 8, decode=False, rngs=_rngs()),
     lambda: nnx.MultiHeadAttention(2, 8, decode=False, rngs=_rngs()),
     "MultiheadAttention num_heads"),
    ("attention batch_first", lambda: nn.MultiheadAttention(8, 2),
     lambda: nnx.MultiHeadAttention(2, 8, decode=False, rngs=_rngs()), None,
     "MultiheadAttention batch_first"),
    ("attention dropout", lambda: nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True),
     lambda: nnx.MultiHeadAttention(2, 8, decode=False, rngs=_rngs()),
     lambda: nnx.MultiHeadAttention(2, 8, dropout_rate=0.1, broadcast_dropout=False,
                                    decode=False, rngs=_rngs()), "MultiheadAttention dropout"),
    ("attention float64 softmax",
     lambda: nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64),
     lambda: nnx.MultiHeadAttention(2, 8, decode=False, param_dtype=jnp.float64, rngs=_rngs()),
     None, "MultiHeadAttention softmax dtype"),
    ("Embedding padding_idx", lambda: nn.Embedding(5, 3, padding_idx=0),
     lambda: nnx.Embed(5, 3, rngs=_rngs()), None, "Embedding padding_idx"),
    ("Linear bias", lambda: nn.Linear(3, 2, bias=False),
     lambda: nnx.Linear(3, 2, rngs=_rngs()),
     lambda: nnx.Linear(3, 2, use_bias=False, rngs=_rngs()), "bias"),
    ("Dropout rate", lambda: nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2)).eval(),
     lambda: nnx.Sequential(nnx.Linear(2, 2, rngs=_rngs()),
                            nnx.Dropout(0.1, deterministic=True)),
     lambda: nnx.Sequential(nnx.Linear(2, 2, rngs=_rngs()),
                            nnx.Dropout(0.2, deterministic=True)), "Dropout rate"),
    ("Dropout mode", lambda: nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.2)).train(),
     lambda: nnx.Sequential(nnx.Linear(2, 2, rngs=_rngs()),
                            nnx.Dropout(0.2, deterministic=True)),
     lambda: nnx.Sequential(nnx.Linear(2, 2, rngs=_rngs()),
                            nnx.Dropout(0.2, rngs=_rngs())), "Dropout mode"),
    ("GELU", lambda: nn.Sequential(nn.Linear(2, 2), nn.GELU()),
     lambda: nnx.Sequential(nnx.Linear(2, 2, rngs=_rngs()), nnx.gelu),
     lambda: nnx.Sequential(nnx.Linear(2, 2, rngs=_rngs()),
                            functools.partial(nnx.gelu, approximate=False)), "GELU approximation"),
    ("layer type", lambda: nn.LayerNorm(4, bias=False),
     lambda: nnx.RMSNorm(4, rngs=_rngs()), None, "layer type"),
]  # fmt: skip


@pytest.mark.parametrize("case", SETTINGS, ids=lambda c: c[0])
def test_setting_that_weights_cannot_fix_is_reported(case) -> None:
    """A :class:`PortingWarning` naming the setting and the layer's path for the
    configuration that needs it; none for the agreeing one (``weight_map`` lists the same)."""
    _, build_torch, build_differing, build_agreeing, setting = case
    torch_layer = build_torch()

    def settings_warned(nnx_layer: nnx.Module) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            to_nnx(torch_layer, nnx_layer, strict=False)  # (a bias on one side only)
        assert all(issubclass(w.category, PortingWarning) for w in caught)
        notes = [str(w.message) for w in caught if w.category is PortingWarning]
        assert notes == [f"to_nnx: {n}" for n in weight_map(torch_layer, nnx_layer).notes]
        return notes

    found = settings_warned(build_differing())
    assert [n for n in found if n.startswith(f"to_nnx: {setting} at `")], found
    if build_agreeing is not None:
        assert settings_warned(build_agreeing()) == []


def test_settings_warn_in_both_directions() -> None:
    """``to_nnx``/``from_nnx`` warn with :class:`PortingWarning`, naming the layer path (a
    nested one), the setting and the change; the copy still happens."""

    class TorchNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))])

    class NnxNet(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.blocks = nnx.List(
                [nnx.Sequential(nnx.Linear(4, 4, rngs=rngs),
                                nnx.LayerNorm(4, use_fast_variance=False, rngs=rngs))]
            )  # fmt: skip

    expected = re.escape(
        "LayerNorm epsilon at `blocks.0.1` (torch) / `blocks.0.layers.1` (nnx): torch "
        "eps=1e-05, nnx epsilon=1e-06; build nnx.LayerNorm with epsilon=1e-05."
    )
    source = TorchNet()
    with pytest.warns(PortingWarning, match=r"^to_nnx: " + expected) as record:
        model = to_nnx(source, NnxNet(nnx.Rngs(0)))
    assert len(record) == 1
    np.testing.assert_array_equal(
        model.blocks[0].layers[0].bias[...], source.blocks[0][0].bias.detach()
    )
    with pytest.warns(PortingWarning, match=r"^from_nnx: " + expected):
        from_nnx(model, TorchNet())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state_dict_from_nnx(model, torch_module=source)  # pure: no warning
