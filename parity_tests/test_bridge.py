"""Parity through :mod:`torch_ref.bridge`: modules built in torch, copied into nnx with
``to_nnx`` (and back with ``from_nnx``), give the same outputs and the same gradients for
every parameter and the input, in float32 and float64, within :data:`TOLERANCES`.

Also: exact round trips, dtype preservation, composite modules, flax's own
``nnx.Linear``/``nnx.Conv`` against ``nn.Linear``/``nn.Conv2d``, and the errors for
mismatched structures and shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import torch_ref.nn as tnn
from jaxreg import nn as jnn
from parity_tests.harness import TOLERANCES
from parity_tests.test_nn import MLP_SIZES, SeedFeedForward
from tests.test_nn import DIM, HIDDEN, MULTIPLE
from torch_ref.bridge import from_nnx, nnx_params_from_state_dict, state_dict_from_nnx, to_nnx

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


def jax_outputs_and_grads(module: nnx.Module, x: np.ndarray, cotangent: np.ndarray) -> dict:
    """``{"out", "x", <torch name>: grad}`` with the gradients in torch's layout."""

    @nnx.jit
    def run(m: nnx.Module, x: jax.Array):
        def loss(m: nnx.Module, x: jax.Array) -> jax.Array:
            return jnp.sum(m(x) * cotangent)

        return m(x), *nnx.grad(loss, argnums=(0, 1))(m, x)

    out, grads, grad_x = run(module, jnp.asarray(x))
    holder = nnx.clone(module)
    nnx.update(holder, grads)
    return {"out": out, "x": grad_x, **state_dict_from_nnx(holder)}


def torch_outputs_and_grads(module: nn.Module, x: np.ndarray, cotangent: np.ndarray) -> dict:
    tx = torch.from_numpy(x).requires_grad_(True)
    module.zero_grad()
    out = module(tx)
    (out * torch.from_numpy(cotangent)).sum().backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return {"out": out.detach().numpy(), "x": tx.grad.numpy(), **grads}


def check_copied_module(torch_module: nn.Module, nnx_module: nnx.Module, dtype: str) -> None:
    torch_module.eval()
    nnx_module.eval()
    to_nnx(torch_module, nnx_module)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, DIM)).astype(dtype)
    cotangent = rng.standard_normal((5, DIM)).astype(dtype)
    want = torch_outputs_and_grads(torch_module, x, cotangent)
    got = jax_outputs_and_grads(nnx_module, x, cotangent)
    assert set(want) == {"out", "x", *dict(torch_module.named_parameters())}
    assert_within_table(got, want, dtype)


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
            DIM, multiple_of=MULTIPLE, param_dtype=jd, rngs=nnx.Rngs(0)
        ),
    ),
    "MLP": (
        lambda td: tnn.MLP(MLP_SIZES, dropout=0.3, param_dtype=td),
        lambda jd: jnn.MLP(MLP_SIZES, dropout=0.3, param_dtype=jd, rngs=nnx.Rngs(0)),
    ),
}


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_module_built_in_torch_copied_to_nnx(name: str, dtype: str) -> None:
    build_torch, build_nnx = BUILDERS[name]
    jax_dtype, torch_dtype = DTYPES[dtype]
    torch.manual_seed(0)
    check_copied_module(build_torch(torch_dtype), build_nnx(jax_dtype), dtype)


class TorchBlock(nn.Module):
    """A module built from the layers: the same attribute names as :class:`NnxBlock`."""

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


def test_composite_module() -> None:
    torch.manual_seed(1)
    check_copied_module(TorchBlock(), NnxBlock(nnx.Rngs(0)), "float64")


def test_round_trips_are_exact() -> None:
    torch.manual_seed(2)
    source = tnn.MLP(MLP_SIZES, param_dtype=torch.float64)
    middle = to_nnx(source, jnn.MLP(MLP_SIZES, param_dtype=jnp.float64, rngs=nnx.Rngs(0)))
    target = from_nnx(middle, tnn.MLP(MLP_SIZES, param_dtype=torch.float64))
    for (name, p), (_, q) in zip(source.named_parameters(), target.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    np.testing.assert_array_equal(middle.layers[0].kernel[...], source.layers[0].weight.detach().T)
    back = to_nnx(target, jnn.MLP(MLP_SIZES, param_dtype=jnp.float64, rngs=nnx.Rngs(1)))
    for a, b in zip(
        jax.tree.leaves(nnx.state(middle, nnx.Param)),
        jax.tree.leaves(nnx.state(back, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


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


def test_flax_linear_and_conv_with_torch() -> None:
    """flax's own ``nnx.Linear`` and ``nnx.Conv`` (kernel ``(kh, kw, in, out)``) copy too."""
    torch.manual_seed(4)
    torch_linear = nn.Linear(DIM, HIDDEN).double()
    zeros = nnx.initializers.zeros  # overwritten by the copy: nothing to draw
    flax_linear = nnx.Linear(
        DIM, HIDDEN, kernel_init=zeros, param_dtype=jnp.float64, rngs=nnx.Rngs(0)
    )
    to_nnx(torch_linear, flax_linear)
    x = np.random.default_rng(0).standard_normal((3, DIM))
    want = torch_linear(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(flax_linear(jnp.asarray(x)), want, rtol=1e-14, atol=1e-15)
    torch_conv = nn.Conv2d(3, 4, kernel_size=(2, 3)).double()
    flax_conv = nnx.Conv(
        3, 4, (2, 3), padding="VALID", kernel_init=zeros, param_dtype=jnp.float64, rngs=nnx.Rngs(0)
    )
    to_nnx(torch_conv, flax_conv)
    assert flax_conv.kernel.shape == (2, 3, 3, 4)
    images = np.random.default_rng(1).standard_normal((2, 3, 5, 6))  # NCHW
    want = torch_conv(torch.from_numpy(images)).detach().numpy()
    got = np.asarray(flax_conv(jnp.asarray(images.transpose(0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    back = from_nnx(flax_conv, nn.Conv2d(3, 4, kernel_size=(2, 3)).double())
    assert torch.equal(back.weight, torch_conv.weight) and torch.equal(back.bias, torch_conv.bias)


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


# --------------------------------------------------------------------------- errors


def test_shape_mismatch_names_the_parameter_and_both_shapes() -> None:
    nnx_module = jnn.MLP([DIM, HIDDEN, DIM], rngs=nnx.Rngs(0))
    weight = (
        rf"parameter 'layers.0.weight' has torch shape \(12, {DIM}\) but the nnx parameter "
        rf"layers/0/kernel has shape \({DIM}, 16\) \(torch layout \(16, {DIM}\)\)"
    )
    with pytest.raises(ValueError, match=r"^to_nnx: .*" + weight):
        to_nnx(tnn.MLP([DIM, 12, DIM]), nnx_module)
    with pytest.raises(ValueError, match=r"^from_nnx: .*" + weight):
        from_nnx(nnx_module, tnn.MLP([DIM, 12, DIM]))


def test_structure_mismatch_lists_the_missing_parameters() -> None:
    nnx_module = jnn.MLP([DIM, HIDDEN, DIM], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"Only in torch: \['layers.2.bias', 'layers.2.weight'\]"):
        to_nnx(tnn.MLP([DIM, HIDDEN, HIDDEN, DIM]), nnx_module)
    with pytest.raises(ValueError, match=r"only in nnx \(named as in torch\): \['w1.weight'"):
        from_nnx(jnn.SwiGLUFeedForward(DIM, HIDDEN, rngs=nnx.Rngs(0)), tnn.MLP([DIM, DIM]))
    with pytest.raises(ValueError, match=r"Only in torch: \['bias'\]"):
        to_nnx(tnn.Linear(DIM, HIDDEN), jnn.Linear(DIM, HIDDEN, use_bias=False, rngs=nnx.Rngs(0)))


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
