"""Parity of jaxreg.optim with torch.optim: 50-step training trajectories, step for step.

Each case trains a small linear regression or a small tanh MLP (mean squared error)
from the same initial parameters on the same data, 50 steps on both sides, and compares
the whole trajectory (every parameter after every step). The JAX run is one
``lax.scan``; the torch run is the usual ``zero_grad / backward / step`` loop with the
``torch_ref.optim`` optimizer (``torch.optim.SGD/Adam/AdamW`` with param groups,
``LambdaLR`` for schedules). No gradients of the trajectory are compared
(``grad_argnums=()``).

Compilation is shared: the hyperparameters, the weight-decay mask and the optimizer
family are *inputs* of one ``jax_fn`` per model (the family picked by ``lax.switch``), so
a module's whole table compiles once per model and dtype; on the torch side they become
the usual Python floats, bools and param groups. The machinery (:class:`Suite`) serves
parity_tests/test_proximal.py too, with the proximal optimizers' table.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_ref.optim as topt
from jaxreg import optim
from parity_tests.harness import ParityCase, assert_parity, check_case, compare

STEPS = 50

# --------------------------------------------------------------------------- the two models


def _linear_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    X = rng.standard_normal((32, 5))
    y = X @ np.array([1.5, -2.0, 0.0, 0.3, 0.0]) + 0.5 + 0.1 * rng.standard_normal(32)
    return 0.1 * rng.standard_normal(5), np.zeros(1), X, y


def _mlp_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    X = rng.standard_normal((32, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]
    W1 = rng.standard_normal((4, 8)) / 2
    W2 = rng.standard_normal((8, 1)) / np.sqrt(8)
    return W1, 0.1 * rng.standard_normal(8), W2, X, y


class Model(NamedTuple):
    names: tuple[str, ...]
    inputs: Callable[[np.random.Generator], tuple[np.ndarray, ...]]
    lr: float


MODELS = {
    "linear": Model(("w", "b"), _linear_inputs, 0.05),
    "mlp": Model(("W1", "b1", "W2"), _mlp_inputs, 0.1),
}


def _predict(p: dict[str, Any], X: Any, tanh: Callable[[Any], Any]) -> Any:
    if "w" in p:
        return X @ p["w"] + p["b"]
    return (tanh(X @ p["W1"] + p["b1"][None, :]) @ p["W2"])[:, 0]


def _jax_loss(p: dict[str, jax.Array], X: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((_predict(p, X, jnp.tanh) - y) ** 2)


def _torch_loss(p: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.mean((_predict(p, X, torch.tanh) - y) ** 2)


def jax_trajectory(opt: optax.GradientTransformation, params: dict, X, y, steps: int = STEPS):
    """The parameters after each of ``steps`` optax steps, stacked: leaves ``[steps, ...]``."""

    def body(carry, _):
        p, s = carry
        updates, s = opt.update(jax.grad(_jax_loss)(p, X, y), s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), p

    return jax.lax.scan(body, (params, opt.init(params)), length=steps)[1]


def single_threaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with one torch thread (restored afterwards).

    The torch side of these tests is thousands of tiny ops: far too small for intra-op
    parallelism, while idle OpenMP workers spinning between them cost ten times the work.
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapped


@single_threaded
def torch_trajectory(opts: Callable[[dict], list], params: dict, X, y, steps: int = STEPS):
    """The same with torch: ``opts(params)`` gives the optimizers, stepped in order."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    optimizers = opts(params)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in params}
    for _ in range(steps):
        for p in params.values():
            p.grad = None
        _torch_loss(params, X, y).backward()
        for o in optimizers:
            o.step()
        for k, p in params.items():
            out[k].append(p.detach().clone())
    return {k: torch.stack(v) for k, v in out.items()}


# --------------------------------------------------------------------------- optimizer families


def schedule(lr: float) -> optax.Schedule:
    return optax.exponential_decay(lr, transition_steps=10, decay_rate=0.5)


class Family(NamedTuple):
    """An optimizer family. ``build(side, params, lr, hp, mask)`` makes it on the JAX side
    (``params=None``; returns a transform) or the torch side (returns an optimizer or a
    list), ``side`` being what the :class:`Suite` was given for that side (here
    ``jaxreg.optim`` or ``torch_ref.optim``); ``hp`` holds the values of the suite's
    ``keys[fn]`` in order."""

    fn: str
    scheduled: bool
    build: Callable[..., Any]


#: At most this many hyperparameters per family (the ``hp`` input is padded to it).
MAX_KEYS = 5


def _lr(family: Family, model: Model, hp: Any) -> Any:
    return schedule(model.lr) if family.scheduled else hp[0]


def model_fns(name: str, families: list[Family], jax_side: Any, torch_side: Any) -> tuple:
    """The shared ``jax_fn`` and ``torch_fn`` of a model: inputs are the initial leaves, X, y,
    then ``hp`` (floats), ``mask`` (one bool per leaf) and the family index."""
    model = MODELS[name]

    def jax_fn(*args):
        *leaves, X, y, hp, mask, index = args
        params = dict(zip(model.names, leaves, strict=True))
        m = dict(zip(model.names, mask, strict=True))
        opts = [f.build(jax_side, None, _lr(f, model, hp), hp, m) for f in families]
        return jax_trajectory(_switch(opts, index), params, X, y)

    def torch_fn(*args):
        *leaves, X, y, hp, mask, index = args
        params = dict(zip(model.names, leaves, strict=True))
        family = families[int(index)]
        h = [float(v) for v in hp]
        flags = {k: bool(v) for k, v in zip(model.names, mask, strict=True)}
        m = None if all(flags.values()) else flags  # one param group, or two

        def opts(p):
            out = family.build(torch_side, p, _lr(family, model, h), h, m)
            return out if isinstance(out, list) else [out]

        return torch_trajectory(opts, params, X, y)

    return jax_fn, torch_fn


def _switch(
    opts: list[optax.GradientTransformation], index: jax.Array
) -> optax.GradientTransformation:
    """The optimizer ``opts[index]``, chosen at run time: its state holds every optimizer's
    state and each ``lax.switch`` branch updates only its own."""

    def init_fn(params):
        return tuple(o.init(params) for o in opts)

    def branch(k: int):
        def update(updates, states, params):
            u, s_k = opts[k].update(updates, states[k], params)
            return u, (*states[:k], s_k, *states[k + 1 :])

        return update

    def update_fn(updates, states, params=None):
        branches = [branch(k) for k in range(len(opts))]
        return jax.lax.switch(index, branches, updates, states, params)

    return optax.GradientTransformation(init_fn, update_fn)


WEIGHTS_ONLY = {"linear": [True, False], "mlp": [True, False, True]}
#: Adam's betas and eps: not part of a case's name.
ADAM = dict(b1=0.9, b2=0.999, eps=1e-8)


class Suite:
    """The parity table of one module: its families (``(fn, scheduled)`` -> Family), the
    hyperparameter names of each ``fn``, the families each model runs, and one shared
    ``jax_fn``/``torch_fn`` per model (built on first use)."""

    def __init__(
        self,
        module: str,
        families: dict[tuple[str, bool], Family],
        keys: dict[str, tuple[str, ...]],
        model_families: dict[str, list[tuple[str, bool]]],
        sides: tuple[Any, Any],
    ) -> None:
        assert all(len(k) <= MAX_KEYS for k in keys.values())
        self.module, self.families, self.keys = module, families, keys
        self.model_families = model_families
        self.fns = {
            name: model_fns(name, [families[k] for k in model_families[name]], *sides)
            for name in MODELS
        }

    def index(self, model: str, fn: str, scheduled: bool = False) -> np.int32:
        return np.int32(self.model_families[model].index((fn, scheduled)))

    def case(
        self, model: str, fn: str, hp: dict[str, Any], *, mask=False, scheduled=False
    ) -> ParityCase | None:
        """A case of ``fn`` on ``model`` (None when the model does not run that family)."""
        if (fn, scheduled) not in self.model_families[model]:
            return None
        flags = [k for k, v in hp.items() if k not in ("lr", *ADAM) and v not in (0.0, False)]
        flags += ["mask"] * mask + ["schedule"] * scheduled
        name = f"{self.module}.{fn}[{','.join([model, *flags])}]"
        spec = MODELS[model]
        keys = self.keys[fn]
        unknown = set(hp) - set(keys)
        assert not unknown, f"{fn} has no hyperparameters {unknown}"
        values = np.array([float(hp.get(k, 0.0)) for k in keys] + [0.0] * (MAX_KEYS - len(keys)))
        flags_in = np.array(WEIGHTS_ONLY[model] if mask else [True] * len(spec.names))
        index = self.index(model, fn, scheduled)
        jax_fn, torch_fn = self.fns[model]
        return ParityCase(
            name,
            jax_fn,
            torch_fn,
            lambda rng: (*spec.inputs(rng), values, flags_in, index),
            grad_argnums=(),
        )


def check_generated(case: ParityCase, seed: int, scale: float) -> None:
    """``case`` on fresh data and initial parameters (``scale`` times the usual ones)."""
    inputs = list(case.inputs(np.random.default_rng(seed)))
    n_leaves = len(inputs) - 5
    inputs[:n_leaves] = [scale * a for a in inputs[:n_leaves]]
    assert_parity(compare(case.jax_fn, case.torch_fn, inputs, grad_argnums=(), name=case.name))


# --------------------------------------------------------------------------- the table


def _sgd(m, p, lr, h, mask):
    args = (p, lr) if p is not None else (lr,)
    return m.sgd(
        *args, momentum=h[1], dampening=h[2], weight_decay=h[3], nesterov=h[4] > 0.5, mask=mask
    )


def _adam(name: str):
    def build(m, p, lr, h, mask):
        args = (p, lr) if p is not None else (lr,)
        return getattr(m, name)(*args, b1=h[1], b2=h[2], eps=h[3], weight_decay=h[4], mask=mask)

    return build


FAMILIES = {
    ("sgd", False): Family("sgd", False, _sgd),
    ("sgd", True): Family("sgd", True, _sgd),
    ("adam", False): Family("adam", False, _adam("adam")),
    ("adam", True): Family("adam", True, _adam("adam")),
    ("adamw", False): Family("adamw", False, _adam("adamw")),
    ("adamw", True): Family("adamw", True, _adam("adamw")),
}
MODEL_FAMILIES = {
    "linear": list(FAMILIES),
    "mlp": [("sgd", False), ("sgd", True), ("adam", False), ("adamw", False), ("adamw", True)],
}
SUITE = Suite(
    "optim",
    FAMILIES,
    {
        "sgd": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
        "adam": ("lr", "b1", "b2", "eps", "weight_decay"),
        "adamw": ("lr", "b1", "b2", "eps", "weight_decay"),
    },
    MODEL_FAMILIES,
    (optim, topt),
)
FNS = SUITE.fns

# --------------------------------------------------------------------------- cases

SGD_OPTIONS = [
    dict(momentum=m, dampening=d, nesterov=n, weight_decay=wd)
    for m, d, n, wd in itertools.product((0.0, 0.9), (0.0, 0.1), (False, True), (0.0, 0.1))
    if not (n and (m == 0 or d != 0))  # torch rejects nesterov without momentum or with dampening
]


def _model_cases(model: str) -> list[ParityCase]:
    lr, case = MODELS[model].lr, SUITE.case
    return [
        *[case(model, "sgd", {"lr": lr, **o}) for o in SGD_OPTIONS],
        case(model, "sgd", {"lr": lr, "momentum": 0.9, "weight_decay": 0.1}, mask=True),
        case(
            model,
            "sgd",
            {"lr": lr, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
            scheduled=True,
        ),
        case(model, "adam", {"lr": 0.02, **ADAM}),
        case(model, "adam", {"lr": 0.02, **ADAM, "weight_decay": 0.1}),
        case(model, "adam", {"lr": 0.02, **ADAM, "weight_decay": 0.1}, mask=True),
        case(model, "adam", {"lr": 0.02, **ADAM, "weight_decay": 0.1}, scheduled=True),
        case(model, "adamw", {"lr": 0.02, **ADAM, "weight_decay": 1e-2}),
        case(model, "adamw", {"lr": 0.02, **ADAM, "weight_decay": 0.1}, mask=True),
        case(model, "adamw", {"lr": 0.02, **ADAM, "weight_decay": 0.1}, scheduled=True),
    ]


CASES = [c for model in MODELS for c in _model_cases(model) if c is not None]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case):
    check_case(case)


# --------------------------------------------------------------------------- generated inputs


@settings(max_examples=10, deadline=None)
@given(index=st.integers(0, len(CASES) - 1), seed=st.integers(0, 2**16), scale=st.floats(0.1, 2.0))
def test_trajectories_on_generated_data(index, seed, scale):
    """Any registered case, on fresh data and initial parameters."""
    check_generated(CASES[index], seed, scale)


@settings(max_examples=10, deadline=None)
@given(
    model=st.sampled_from(list(MODELS)),
    lr=st.floats(1e-3, 0.1),
    momentum=st.sampled_from([0.0, 0.5, 0.99]),
    dampening=st.floats(0.0, 1.0),
    weight_decay=st.floats(0.0, 1.0),
    nesterov=st.booleans(),
)
def test_sgd_generated_hyperparameters(model, lr, momentum, dampening, weight_decay, nesterov):
    if nesterov:
        momentum, dampening = max(momentum, 0.5), 0.0
    hp = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    case = SUITE.case(model, "sgd", {**hp, "nesterov": nesterov})
    for dtype in ("float32", "float64"):
        inputs = case.inputs(np.random.default_rng(0))
        assert_parity(compare(case.jax_fn, case.torch_fn, inputs, dtype=dtype, grad_argnums=()))


# With b1 near 0 and a small b2, Adam's step g/sqrt(v) is chaotic near stationary points:
# rounding differences of 1e-16 grow to 1e-10 within 50 steps on any two implementations,
# so the generated betas stay in the range people train with.
@settings(max_examples=8, deadline=None)
@given(
    b1=st.floats(0.5, 0.99),
    b2=st.floats(0.9, 0.9999),
    eps=st.sampled_from([1e-8, 1e-3]),
    weight_decay=st.floats(0.0, 0.5),
)
def test_adamw_generated_hyperparameters(b1, b2, eps, weight_decay):
    hp = dict(lr=0.01, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    case = SUITE.case("mlp", "adamw", hp)
    inputs = case.inputs(np.random.default_rng(1))
    assert_parity(compare(case.jax_fn, case.torch_fn, inputs, grad_argnums=()))


# --------------------------------------------------------------------------- edge cases


def test_static_and_traced_hyperparameters_agree():
    """Python-float hyperparameters (the usual call) take the same arithmetic as the traced
    ones the table above runs with: the same numbers, bit for bit."""
    w0, b0, X, y = _linear_inputs(np.random.default_rng(0))
    p0 = {"w": jnp.asarray(w0), "b": jnp.asarray(b0)}
    hp = dict(momentum=0.9, dampening=0.1, weight_decay=0.1)
    # Both programs with XLA's own emitters: the faster-compiling ones conftest.py may
    # select round the two programs' fused arithmetic differently, by an ulp.
    added = os.environ.get("JAXREG_TEST_XLA_FLAGS", "").split()
    options = (
        {"xla_cpu_use_fusion_emitters": True}
        if "--xla_cpu_use_fusion_emitters=false" in added
        else None
    )
    traced = jax.jit(
        lambda h: jax_trajectory(optim.sgd(h[0], **dict(zip(hp, h[1:], strict=True))), p0, X, y),
        compiler_options=options,
    )
    static = jax.jit(
        lambda: jax_trajectory(optim.sgd(0.05, **hp), p0, X, y), compiler_options=options
    )()
    got = traced(jnp.array([0.05, *hp.values()]))
    for k in p0:
        np.testing.assert_array_equal(got[k], static[k])


def test_mask_false_leaves_are_stepped_without_decay():
    """A False mask leaf is a torch param group with weight_decay=0: stepped, not decayed."""
    w0, _, X, y = _linear_inputs(np.random.default_rng(0))
    b0 = np.array([0.3])
    jax_fn, torch_fn = FNS["linear"]
    index = SUITE.index("linear", "sgd")

    def inputs(weight_decay: float, mask: list[bool]) -> tuple:
        return w0, b0, X, y, np.array([0.05, 0, 0, weight_decay, 0]), np.array(mask), index

    masked = inputs(0.5, [True, False])
    assert_parity(compare(jax_fn, torch_fn, masked, grad_argnums=()))
    # jaxreg equals torch (above), so the first step can be read on the torch side.
    first = [
        {k: v[0] for k, v in torch_fn(*(torch.tensor(a) for a in i)).items()}
        for i in (masked, inputs(0.0, [True, True]), inputs(0.5, [True, True]))
    ]
    masked, plain, decayed = first
    assert torch.equal(masked["b"], plain["b"]) and not torch.equal(masked["b"], decayed["b"])
    assert torch.equal(masked["w"], decayed["w"]) and not torch.equal(masked["w"], plain["w"])
    t = {"w": torch.tensor(w0), "b": torch.tensor(b0)}
    groups = topt.sgd(t, 0.05, weight_decay=0.5, mask={"w": True, "b": False}).param_groups
    assert [g["weight_decay"] for g in groups] == [0.5, 0.0]


def test_torch_mask_structure_mismatch_names_mask():
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="`mask`"):
        topt.sgd({"w": w}, 0.1, weight_decay=0.1, mask={"v": True})
    with pytest.raises(ValueError, match="`mask`"):
        topt.adamw([w], 0.1, mask=[True, False])


@pytest.mark.parametrize(
    "make",
    [
        lambda p: topt.sgd(p, -0.1),
        lambda p: topt.sgd(p, 0.1, weight_decay=-1.0),
        lambda p: topt.sgd(p, 0.1, dampening=1.5),
        lambda p: topt.sgd(p, 0.1, nesterov=True),
        lambda p: topt.adam(p, -1e-3),
    ],
)
def test_torch_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError):
        make([torch.zeros(2, requires_grad=True)])
