"""Parity of :mod:`jaxreg.nn` with :mod:`torch_ref.nn`, the seeds' torch modules and ``torch``.

Each module is a function of ``(x, *parameters)``, the parameters in torch's
layout under torch's names: the torch side is ``torch.func.functional_call`` on
the torch module, the JAX side merges them into the nnx module through
:func:`torch_ref.bridge.nnx_params_from_state_dict` (the mapping ``to_nnx``
uses). So the harness compares outputs and the gradients with respect to the
input *and every parameter*, float32 and float64. Dropout is compared in eval
mode for the modules, and with the JAX mask injected into torch for
:func:`jaxreg.nn.dropout`; torch's own dropout is checked by its statistics.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import torch_ref.nn as tnn
from jaxreg import nn as jnn
from jaxreg.activations import tanh
from parity_tests._shared import BATCH, DIM, HIDDEN, MULTIPLE, assert_inverted_dropout
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref.bridge import nnx_params_from_state_dict, state_dict_from_nnx


def functional(nnx_module: nnx.Module) -> tuple[list[str], Callable[..., jax.Array]]:
    """``(torch names, fn(x, *params))``: the module in eval mode as a function of its
    parameters, given in torch's layout in the order of the names."""
    nnx_module.eval()
    graphdef, _, rest = nnx.split(nnx_module, nnx.Param, ...)
    names = list(state_dict_from_nnx(nnx_module))

    def fn(x: jax.Array, *params: jax.Array) -> jax.Array:
        state = nnx_params_from_state_dict(dict(zip(names, params, strict=True)), nnx_module)
        return nnx.merge(graphdef, state, rest)(x)

    return names, fn


def torch_functional(module: nn.Module, names: list[str], rename=lambda n: n):
    """``fn(x, *params)`` for a torch module (eval mode), parameters under ``rename(name)``."""
    module.eval()

    def fn(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        values = {rename(n): p for n, p in zip(names, params, strict=True)}
        return torch.func.functional_call(module, values, (x,))

    return fn


def parameter_inputs(module: nn.Module, names: list[str], batch: tuple[int, ...]):
    """``inputs`` for a case: ``x`` and parameters of the torch shapes, ``1/√fan_in`` scaled."""
    shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}

    def inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        x = rng.standard_normal((*batch, DIM))
        params = [rng.standard_normal(shapes[n]) / np.sqrt(shapes[n][-1]) for n in names]
        return (x, *params)

    return inputs


def module_case(
    name: str,
    jax_module: nnx.Module,
    torch_module: nn.Module,
    *,
    reference: str = "torch_ref",
    rename=lambda n: n,
    batch: tuple[int, ...] = (4,),
) -> ParityCase:
    names, jax_fn = functional(jax_module)
    return ParityCase(
        f"nn.{name}",
        jax_fn,
        torch_functional(torch_module, names, rename),
        parameter_inputs(torch_module, [rename(n) for n in names], batch),
        grad_argnums=tuple(range(len(names) + 1)),
        reference=reference,
    )


class SeedFeedForward(nn.Module):
    """Seed 002's LLaMA ``FeedForward``, verbatim (the torch code jaxreg's block mirrors)."""

    def __init__(self, dim: int, hidden_dim: int, multiple_of: int, dropout: float):
        super().__init__()
        if hidden_dim is None:
            hidden_dim = 4 * dim
            hidden_dim = int(2 * hidden_dim / 3)
            hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


def seed_mlp(p: float) -> nn.Sequential:
    """Seed 001's dropout MLP: ``Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear``."""
    return nn.Sequential(
        nn.Linear(DIM, HIDDEN), nn.ReLU(), nn.Dropout(p),
        nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(p),
        nn.Linear(HIDDEN, DIM),
    )  # fmt: skip


def seed_mlp_name(name: str) -> str:
    """``layers.<i>.weight`` -> the Sequential's ``<3i>.weight``."""
    _, i, leaf = name.split(".")
    return f"{3 * int(i)}.{leaf}"


def rngs() -> nnx.Rngs:
    return nnx.Rngs(0)


MLP_SIZES = [DIM, HIDDEN, HIDDEN, DIM]
#: Any key will do; "rbg" keys compile faster than threefry ones.
KEY = jax.random.key(42, impl="rbg")


def dropout_jax(x: jax.Array) -> jax.Array:
    return jnn.dropout(x, 0.3, key=KEY)


def dropout_torch(x: torch.Tensor) -> torch.Tensor:
    """torch_ref's dropout replaying the mask jaxreg draws with ``KEY`` (the same compiled
    program as the JAX side, applied to ones)."""
    ones = jnp.ones(tuple(x.shape), jnp.dtype(str(x.dtype).removeprefix("torch.")))
    keep = np.array(jax.jit(dropout_jax)(ones)) != 0
    return tnn.dropout(x, 0.3, mask=torch.from_numpy(keep).to(x.device))


CASES = [
    module_case("Linear", jnn.Linear(DIM, HIDDEN, rngs=rngs()), tnn.Linear(DIM, HIDDEN)),
    module_case(
        "Linear[no bias, batch (2, 3)]",
        jnn.Linear(DIM, HIDDEN, use_bias=False, rngs=rngs()),
        tnn.Linear(DIM, HIDDEN, use_bias=False),
        batch=(2, 3),
    ),
    module_case(
        "SwiGLUFeedForward",
        jnn.SwiGLUFeedForward(DIM, HIDDEN, dropout=0.1, rngs=rngs()),
        tnn.SwiGLUFeedForward(DIM, HIDDEN, dropout=0.1),
    ),
    module_case(
        "SwiGLUFeedForward[hidden_dim=None]",
        jnn.SwiGLUFeedForward(DIM, multiple_of=MULTIPLE, rngs=rngs()),
        tnn.SwiGLUFeedForward(DIM, multiple_of=MULTIPLE),
    ),
    module_case(
        "MLP",
        jnn.MLP(MLP_SIZES, dropout=0.3, rngs=rngs()),
        tnn.MLP(MLP_SIZES, dropout=0.3),
    ),
    module_case(
        "MLP[tanh]",
        jnn.MLP(MLP_SIZES, activation=tanh, rngs=rngs()),
        tnn.MLP(MLP_SIZES, activation=torch.tanh),
    ),
    # raw torch: torch's Linear, the seeds' modules
    module_case(
        "Linear", jnn.Linear(DIM, HIDDEN, rngs=rngs()), nn.Linear(DIM, HIDDEN), reference="torch"
    ),
    module_case(
        "SwiGLUFeedForward",
        jnn.SwiGLUFeedForward(DIM, None, multiple_of=MULTIPLE, dropout=0.1, rngs=rngs()),
        SeedFeedForward(DIM, None, multiple_of=MULTIPLE, dropout=0.1),
        reference="torch",
    ),
    module_case(
        "MLP",
        jnn.MLP(MLP_SIZES, dropout=0.3, rngs=rngs()),
        seed_mlp(0.3),
        reference="torch",
        rename=seed_mlp_name,
    ),
    ParityCase(
        "nn.dropout[mask injected]",
        dropout_jax,
        dropout_torch,
        lambda rng: (rng.standard_normal((BATCH, DIM)),),
    ),
]


def mixed_precision_case(name: str, build_jax, build_torch) -> ParityCase:
    """flax's dtypes: parameters stored in bfloat16 (``param_dtype``), the computation in
    the case's dtype (``dtype=``), the input promoted to it, on both sides. Gradients
    with respect to the input only: those of the bfloat16 parameters are rounded to
    bfloat16 (tests/test_nn.py checks them)."""
    low = {"jax": jnp.bfloat16, "torch": torch.bfloat16}
    jax_fns = {
        dtype: functional(build_jax(dtype=dtype, param_dtype=low["jax"], rngs=rngs()))
        for dtype in (jnp.float32, jnp.float64)
    }
    names = jax_fns[jnp.float32][0]
    torch_fns = {
        dtype: torch_functional(build_torch(dtype=dtype, param_dtype=low["torch"]), names)
        for dtype in (torch.float32, torch.float64)
    }

    def jax_fn(x, *params):
        return jax_fns[x.dtype.type][1](x, *[p.astype(low["jax"]) for p in params])

    def torch_fn(x, *params):
        return torch_fns[x.dtype](x, *[p.to(low["torch"]) for p in params])

    module = build_torch(dtype=torch.float64, param_dtype=torch.float64)
    return ParityCase(f"nn.{name}", jax_fn, torch_fn, parameter_inputs(module, names, (4,)))


MIXED_PRECISION = [
    mixed_precision_case(
        "Linear[dtype, bf16 params]",
        lambda **kw: jnn.Linear(DIM, HIDDEN, **kw),
        lambda **kw: tnn.Linear(DIM, HIDDEN, **kw),
    ),
    mixed_precision_case(
        "SwiGLUFeedForward[dtype, bf16 params]",
        lambda **kw: jnn.SwiGLUFeedForward(DIM, HIDDEN, **kw),
        lambda **kw: tnn.SwiGLUFeedForward(DIM, HIDDEN, **kw),
    ),
    mixed_precision_case(
        "MLP[dtype, bf16 params]",
        lambda **kw: jnn.MLP(MLP_SIZES, **kw),
        lambda **kw: tnn.MLP(MLP_SIZES, **kw),
    ),
]
CASES += MIXED_PRECISION


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.name}-{c.reference}")
def test_case(case: ParityCase) -> None:
    check_case(case)


def test_kernel_init_is_selectable_on_both_sides() -> None:
    """``kernel_init``: jaxreg's Kaiming uniform and torch's ``kaiming_uniform_`` (its
    twin) draw the same distribution, ``U(-√(6/fan_in), √(6/fan_in))``, not Xavier's."""
    from jaxreg.init import kaiming_uniform

    bound = np.sqrt(6 / 300)
    kernels = [
        np.asarray(jnn.Linear(300, 400, kernel_init=kaiming_uniform(), rngs=rngs()).kernel[...]),
        tnn.Linear(300, 400, kernel_init=nn.init.kaiming_uniform_).weight.detach().numpy(),
    ]
    for w in kernels:
        assert bound * 0.99 < np.max(np.abs(w)) <= bound  # Xavier's bound is √(6/700)
        assert abs(np.var(w) / (bound**2 / 3) - 1) < 0.03
        assert abs(np.mean(w)) < 3 * bound / np.sqrt(3 * w.size)


@settings(max_examples=3, deadline=None)
@given(batch=st.sampled_from([(1,), (3,), (2, 2)]), dtype=st.sampled_from(["float32", "float64"]))
def test_generated_batches_swiglu(batch: tuple[int, ...], dtype: str) -> None:
    case = CASES[2]
    inputs = case.inputs(np.random.default_rng(sum(batch)))
    x = np.random.default_rng(len(batch)).standard_normal((*batch, DIM))
    result = compare(
        case.jax_fn,
        case.torch_fn,
        (x, *inputs[1:]),
        dtype=dtype,
        grad_argnums=case.grad_argnums,
        name=case.name,
    )
    assert_parity(result)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_torch_dropout_has_the_same_statistics(rate: float) -> None:
    """torch's ``F.dropout`` (via torch_ref, no mask) and jaxreg: keep rate and ``1/(1-p)``."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, size=(200, 250)).astype(np.float32)
    torch.manual_seed(0)
    assert_inverted_dropout(x, tnn.dropout(torch.from_numpy(x), rate).numpy(), rate)
    generator = torch.Generator().manual_seed(1)
    assert_inverted_dropout(x, tnn.dropout(torch.from_numpy(x), rate, key=generator), rate)
    assert_inverted_dropout(x, jnn.dropout(jnp.asarray(x), rate, key=jax.random.key(0)), rate)


def test_dropout_edges_on_both_sides() -> None:
    x = np.linspace(0.5, 1.5, 12).reshape(3, 4)
    for deterministic, rate in [(True, 0.5), (False, 0.0)]:
        np.testing.assert_array_equal(
            jnn.dropout(jnp.asarray(x), rate, key=KEY, deterministic=deterministic), x
        )
        out = tnn.dropout(torch.from_numpy(x), rate, deterministic=deterministic)
        np.testing.assert_array_equal(out.numpy(), x)
    np.testing.assert_array_equal(jnn.dropout(jnp.asarray(x), 1.0, key=KEY), np.zeros_like(x))
    np.testing.assert_array_equal(tnn.dropout(torch.from_numpy(x), 1.0).numpy(), np.zeros_like(x))
    for rate in (-0.1, 1.1):
        with pytest.raises(ValueError, match="dropout probability"):
            tnn.dropout(torch.from_numpy(x), rate)


def test_module_arguments_match() -> None:
    """Same hidden size rule and the same errors on both sides."""
    with torch.device("meta"):  # sizes only, nothing allocated
        assert tnn.SwiGLUFeedForward(4096, multiple_of=256).hidden_dim == 11008
        assert SeedFeedForward(4096, None, 256, 0.0).w1.out_features == 11008
    for build in (
        lambda: tnn.SwiGLUFeedForward(DIM, dropout=1.0),
        lambda: tnn.MLP(MLP_SIZES, dropout=-0.1),
        lambda: tnn.MLP([DIM]),
        lambda: tnn.SwiGLUFeedForward(DIM, multiple_of=0),
    ):
        with pytest.raises(ValueError):
            build()
    w = tnn.Linear(300, 400).weight.detach()  # Xavier uniform, like jaxreg.nn.Linear
    assert float(w.abs().max()) <= np.sqrt(6 / 700)
    assert float(w.abs().max()) > 0.99 * np.sqrt(6 / 700)
    np.testing.assert_array_equal(tnn.Linear(3, 2).bias.detach().numpy(), np.zeros(2))
