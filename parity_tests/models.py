"""Model-level parity: a torch module and an nnx module on the same inputs, layer by layer.

:func:`compare_models` runs both models (on copies cast to the compared dtype; the
caller's models are not changed) on the same inputs and reports

- every output (and the loss, when loss functions are given) and every parameter
  gradient, each named by its torch name and nnx path (:mod:`parity_tests.naming`),
  with its error against the tolerance table;
- every submodule call, in execution order on both sides, paired by path: torch
  through forward hooks, nnx by wrapping, for the duration of the call, the
  ``__call__`` of every Module class in the tree (as ``nnx.capture`` does for its
  method outputs), so any nnx module is covered without changes;
- the **first diverging layer**: the first call whose output leaves tolerance, with
  the errors of its inputs, so that "inputs agree, output differs" names the layer.

Gradients are those of the loss when loss functions are given, else vector-Jacobian
products with the same random cotangent on both sides.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity_tests.errors import (
    TOLERANCES,
    LeafError,
    Tolerance,
    format_table,
    is_floating,
    leaf_error,
    numpy_dtype,
    worst,
)
from parity_tests.harness import (
    cast_input,
    get_device,
    parity_settings,
    to_numpy,
    to_torch,
    torch_dtype,
)
from parity_tests.naming import ParamMap, ParamMapping, module_pairs, nnx_key, untied_state

__all__ = [
    "LayerResult",
    "ModelParity",
    "compare_models",
    "model_settings",
    "nnx_calls",
    "pair_calls",
    "prepare_models",
    "torch_calls",
]

#: One recorded submodule call: (module path, class name, input leaves, output leaves).
Call = tuple[str, str, list[Any], list[Any]]


# --------------------------------------------------------------------------- recording


def _arrays(tree: Any) -> list[Any]:
    """The array leaves of a call's arguments or result (no PRNG keys, no Python values)."""
    return [
        x
        for x in jax.tree_util.tree_leaves(tree)
        if isinstance(x, jax.Array) and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    ]


@contextlib.contextmanager
def nnx_calls(model: nnx.Module) -> Iterator[list[Call]]:
    """Records every call of ``model``'s submodules (and its own) while the block runs.

    Python looks ``__call__`` up on the class, so the ``__call__`` of each class in the
    module tree (the class in the MRO that defines it) is wrapped for the duration of
    the block and restored afterwards; calls of instances outside ``model`` pass through.
    A call is recorded when it returns (so a layer comes before the block that holds it),
    once even where a subclass's ``__call__`` calls ``super().__call__``. Values are
    those the block sees: traced values under ``jax.jit``, to be returned from it.

    Yields:
      The list the calls are appended to: ``(path, class name, inputs, outputs)``.
    """
    paths = {id(m): nnx_key(path) for path, m in nnx.iter_modules(model)}
    instances = [m for _, m in nnx.iter_modules(model)]
    originals: dict[type, Callable[..., Any]] = {}
    for m in instances:
        owner = next((k for k in type(m).__mro__ if "__call__" in vars(k)), None)
        if owner is not None and owner is not object and owner not in originals:
            originals[owner] = vars(owner)["__call__"]
    records: list[Call] = []
    running: set[int] = set()

    def wrap(call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = id(self)
            if key not in paths or key in running:
                return call(self, *args, **kwargs)
            running.add(key)
            try:
                out = call(self, *args, **kwargs)
            finally:
                running.discard(key)
            records.append((paths[key], type(self).__name__, _arrays((args, kwargs)), _arrays(out)))
            return out

        return recorded

    for owner, call in originals.items():
        owner.__call__ = wrap(call)
    try:
        yield records
    finally:
        for owner, call in originals.items():
            owner.__call__ = call


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [
        x.detach().clone() for x in jax.tree_util.tree_leaves(tree) if isinstance(x, torch.Tensor)
    ]


@contextlib.contextmanager
def torch_calls(model: torch.nn.Module) -> Iterator[list[Call]]:
    """Records every call of ``model``'s submodules (and its own) with forward hooks.

    Inputs are copied before the call (so in-place layers do not change them), outputs
    after it; a call is recorded when it returns. The hooks are removed afterwards.

    Yields:
      The list the calls are appended to: ``(name, class name, inputs, outputs)``.
    """
    records: list[Call] = []
    pending: dict[str, list[list[torch.Tensor]]] = {}
    handles = []
    for name, module in model.named_modules():

        def before(m: Any, args: Any, kwargs: Any, name: str = name) -> None:
            pending.setdefault(name, []).append(_tensors((args, kwargs)))

        def after(m: Any, args: Any, kwargs: Any, out: Any, name: str = name) -> None:
            records.append((name, type(m).__name__, pending[name].pop(), _tensors(out)))

        handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------- results


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape


def _same_shape(jax_shape: tuple[int, ...], torch_shape: tuple[int, ...]) -> bool:
    """Equal shapes, or torch's channels-first layout of the JAX channels-last one."""
    return jax_shape == torch_shape or jax_shape == _channels_last(torch_shape)


def _align(jax_value: np.ndarray, torch_value: np.ndarray) -> np.ndarray:
    """The torch array in the JAX layout: as is, or channels moved last (NCHW -> NHWC)."""
    if jax_value.shape != torch_value.shape and jax_value.shape == _channels_last(
        torch_value.shape
    ):
        return np.moveaxis(torch_value, 1, -1)
    return torch_value


def _compare_named(
    names: Sequence[str], got: Sequence[Any], want: Sequence[Any], tol: Tolerance
) -> tuple[LeafError, ...]:
    """Leaf by leaf over the leaves both sides have (the count is checked by the caller)."""
    return tuple(
        leaf_error(n, to_numpy(g), _align(to_numpy(g), to_numpy(w)), tol)
        for n, g, w in zip(names, got, want, strict=False)
    )


def _compare_lists(
    what: str, got: Sequence[Any], want: Sequence[Any], tol: Tolerance
) -> tuple[LeafError, ...]:
    """Leaf by leaf; when the counts differ (a torch call that takes ``q, k, v, mask``
    against a flax call that takes ``x`` and ``mask=``), each JAX leaf is paired with
    the next torch leaf of the same shape, in order, and leaves without a partner are
    not compared (the layer's note says that the counts differ)."""
    if len(got) != len(want):
        pairs, start = [], 0
        for i, g in enumerate(got):
            shape = tuple(np.shape(g))
            for j in range(start, len(want)):
                if _same_shape(shape, tuple(np.shape(want[j]))):
                    pairs.append((i, g, want[j]))
                    start = j + 1
                    break
        return _compare_named(
            [f"{what}[{i}]" for i, _, _ in pairs],
            [g for _, g, _ in pairs],
            [w for _, _, w in pairs],
            tol,
        )
    names = [what] if len(got) == len(want) == 1 else [f"{what}[{i}]" for i in range(len(got))]
    return _compare_named(names, got, want, tol)


@dataclasses.dataclass(frozen=True)
class LayerResult:
    """One submodule call on both sides.

    Attributes:
      torch_name, nnx_path: the module on each side (``""`` is the whole model).
      torch_type, nnx_type: their class names.
      call: 0 for the module's first call in the forward pass, 1 for its second, ...
      inputs, outputs: per-leaf errors of the call's array arguments and results.
      note: a leaf count that differs (only the leaves both sides have are compared).
    """

    torch_name: str
    nnx_path: str
    torch_type: str
    nnx_type: str
    call: int
    inputs: tuple[LeafError, ...]
    outputs: tuple[LeafError, ...]
    note: str = ""

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.outputs)

    @property
    def inputs_passed(self) -> bool:
        return all(e.passed for e in self.inputs)

    @property
    def name(self) -> str:
        where = f"{self.torch_name or '(model)'} <-> {self.nnx_path.replace('.', '/') or '(model)'}"
        return where + (f" (call {self.call + 1})" if self.call else "")

    def verdict(self) -> str:
        """Why this call diverges: its own computation, or inputs that already differ."""
        out = worst(self.outputs)
        text = f"{self.name} [{self.torch_type} <-> {self.nnx_type}]: "
        if out is not None and not out.passed:
            text += out.describe()
        if not self.inputs:
            return text + "; it takes no array inputs"
        inputs = worst(self.inputs)
        if self.inputs_passed:
            return (
                text + f"; inputs agree, output differs: this layer (inputs rel {inputs.rel:.1e})"
            )
        parent = self.torch_name.rpartition(".")[0] or "(model)"
        return (
            text + f"; its inputs already differ ({inputs.describe()}): the divergence is in "
            f"code between the recorded calls, in the forward of its parent {parent} (or of "
            "the module that computes its inputs)"
        )


def _rel(errors: Sequence[LeafError]) -> str:
    leaf = worst(errors)
    return "-" if leaf is None else f"{leaf.rel:.1e}"


@dataclasses.dataclass(frozen=True)
class ModelParity:
    """The outcome of :func:`compare_models`.

    Attributes:
      outputs: each output leaf (``output``, ``output[0]``, ...) and ``loss``.
      grads: each parameter gradient, named ``torch name <-> nnx/path``.
      input_grads: the gradients with respect to the floating inputs (``input[i]``).
      layers: each paired submodule call, in torch's execution order.
      unpaired: the module calls that have no partner on the other side.
      passed: every output and every gradient within tolerance.
    """

    name: str
    dtype: str
    device: str
    tolerance: Tolerance
    outputs: tuple[LeafError, ...]
    grads: tuple[LeafError, ...]
    input_grads: tuple[LeafError, ...]
    layers: tuple[LayerResult, ...] = ()
    unpaired: tuple[str, ...] = ()

    @property
    def leaves(self) -> tuple[LeafError, ...]:
        return (*self.outputs, *self.grads, *self.input_grads)

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.leaves)

    @property
    def worst(self) -> LeafError | None:
        return worst(self.leaves)

    @property
    def first_divergence(self) -> LayerResult | None:
        """The first submodule call (execution order) whose output leaves tolerance."""
        return next((layer for layer in self.layers if not layer.passed), None)

    def summary(self) -> str:
        status = "ok" if self.passed else "FAIL"
        text = (
            f"{self.name} [{self.dtype}, {self.device}, rtol {self.tolerance.rtol:g}]: "
            f"{len(self.outputs)} outputs, {len(self.grads)} parameter gradients, "
            f"{len(self.layers)} layer calls: {status}"
        )
        first = self.first_divergence
        if first is not None:
            text += "\nfirst diverging layer: " + first.verdict()
        elif not self.passed and self.layers:
            text += "\nevery layer call agrees: the difference is outside the recorded calls"
        return text

    def __str__(self) -> str:
        rows = [
            [kind, e.name, f"{e.abs:.1e}", f"{e.rel:.1e}", "ok" if e.passed else "FAIL"]
            for kind, errors in (
                ("output", self.outputs),
                ("grad", self.grads),
                ("input grad", self.input_grads),
            )
            for e in errors
        ]
        parts = [
            self.summary(),
            "",
            format_table(["", "name", "abs err", "rel err", ""], rows),
        ]
        if self.layers:
            layer_rows = [
                [
                    str(i),
                    layer.name,
                    layer.torch_type,
                    _rel(layer.inputs),
                    _rel(layer.outputs),
                    ("ok" if layer.passed else "FAIL") + (f" ({layer.note})" if layer.note else ""),
                ]
                for i, layer in enumerate(self.layers)
            ]
            header = ["#", "layer (torch <-> nnx)", "type", "inputs rel", "output rel", ""]
            parts += ["", "layers in execution order:", format_table(header, layer_rows)]
        if self.unpaired:
            parts += ["", "not paired (not compared): " + ", ".join(self.unpaired)]
        return "\n".join(parts)


# --------------------------------------------------------------------------- comparison


@contextlib.contextmanager
def model_settings() -> Iterator[None]:
    """JAX's default promotion rules while models run, whatever the caller set.

    Models are third-party code, not written for ``jax_numpy_dtype_promotion="strict"``
    or ``jax_numpy_rank_promotion="raise"`` (flax's LayerNorm promotes float64 with
    float32; a user's ``x @ w + b`` broadcasts the bias).
    """
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def prepare_models(
    torch_model: torch.nn.Module, nnx_model: nnx.Module, dtype: str, device: str, train: bool
) -> tuple[torch.nn.Module, nnx.Module]:
    """Copies of both models in ``dtype`` on ``device``, in train or eval mode.

    Cast as torch's ``.to(dtype)`` casts: floating parameters and buffers (nnx: every
    floating state leaf), and the nnx modules' ``dtype``/``param_dtype`` attributes, so
    that no layer computes in a dtype of its own.
    """
    dev = get_device(device)
    torch_copy = copy.deepcopy(torch_model).to(device=dev.torch_device, dtype=torch_dtype(dtype))
    torch_copy.train(train)
    nnx_copy = nnx.clone(nnx_model)
    target = numpy_dtype(dtype)
    # Like torch's `.to(dtype)`: computation dtypes too (flax's Embed computes in its
    # `dtype`, float32 by default, even on float64 parameters).
    nnx_copy.set_attributes(dtype=target, param_dtype=target, raise_if_not_found=False)
    if train:
        nnx_copy.train()
    else:
        nnx_copy.eval()
    graphdef, state = nnx.split(nnx_copy)
    state = jax.tree.map(  # cast in NumPy: no compilation per leaf shape
        lambda x: jax.device_put(
            np.asarray(x).astype(target) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            dev.jax_device,
        ),
        state,
    )
    return torch_copy, nnx.merge(graphdef, state)


def pair_calls(
    torch_records: list[Call], nnx_records: list[Call], modules: dict[str, str], tol: Tolerance
) -> tuple[list[LayerResult], list[str]]:
    """Pairs the k-th call of a torch module with the k-th call of its nnx module."""
    nnx_by_key: dict[tuple[str, int], Call] = {}
    counts: dict[str, int] = {}
    for record in nnx_records:
        k = counts[record[0]] = counts.get(record[0], -1) + 1
        nnx_by_key[(record[0], k)] = record
    layers, unpaired, used = [], [], set()
    counts = {}
    for name, ttype, tin, tout in torch_records:
        k = counts[name] = counts.get(name, -1) + 1
        key = (modules.get(name), k)
        if key not in nnx_by_key:
            unpaired.append(f"torch {name or '(model)'} [{ttype}]")
            continue
        path, ntype, nin, nout = nnx_by_key[key]
        if nout and tout and not _same_shape(tuple(np.shape(nout[0])), tuple(tout[0].shape)):
            # paired through their parameters but computing different things (a torch
            # layer whose packed weights an nnx block splits): not comparable
            unpaired.append(f"torch {name or '(model)'} [{ttype}] (output shape differs)")
            continue
        used.add(key)
        note = ""
        if (len(nin), len(nout)) != (len(tin), len(tout)):
            note = f"{len(nin)}/{len(nout)} nnx vs {len(tin)}/{len(tout)} torch inputs/outputs"
        layers.append(
            LayerResult(
                name,
                path,
                ttype,
                ntype,
                k,
                _compare_lists("input", nin, tin, tol),
                _compare_lists("output", nout, tout, tol),
                note,
            )
        )
    for key, (path, ntype, _, _) in nnx_by_key.items():
        if key not in used and key[1] == 0:
            unpaired.append(f"nnx {path.replace('.', '/') or '(model)'} [{ntype}]")
    return layers, list(dict.fromkeys(unpaired))


def compare_models(
    torch_model: torch.nn.Module,
    nnx_model: nnx.Module,
    inputs: Any,
    *,
    targets: Any = (),
    torch_loss: Callable[..., torch.Tensor] | None = None,
    jax_loss: Callable[..., jax.Array] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    param_map: ParamMap = None,
    train: bool = False,
    layers: bool = True,
    tolerance: Tolerance | None = None,
    seed: int = 0,
    name: str = "",
) -> ModelParity:
    """Compares a torch model and an nnx model: outputs, parameter gradients, layers.

    Both models must already hold the same weights (copy them with the bridge). They
    are copied and cast to ``dtype`` (parameters and buffers), so the caller's models
    are not changed; the torch model is called as ``torch_model(*inputs)``, the nnx
    model as ``nnx_model(*inputs)`` under ``jax.jit``.

    Args:
      torch_model: the torch module.
      nnx_model: its nnx twin.
      inputs: a NumPy array or a tuple of them; floating ones are cast to ``dtype``.
      targets: extra arrays for the loss functions (labels), passed unchanged.
      torch_loss, jax_loss: ``loss(output, *targets) -> scalar`` on each side (both or
        neither); the gradients are then the loss's.
      dtype: a row of :data:`parity_tests.errors.TOLERANCES`.
      device: ``"cpu"`` or ``"gpu"``.
      param_map: how parameters correspond (:mod:`parity_tests.naming`): ``None`` for
        the naming rule, ``{torch name: nnx path}``, or the bridge's converter.
      train: compare in training mode (``.train()`` on both copies); by default both
        are in evaluation mode (no dropout).
      layers: record and compare every submodule call (the first diverging layer).
      tolerance: overrides the dtype's row.
      seed: seeds the random cotangent (when there is no loss).
      name: a label for the report.

    Returns:
      A :class:`ModelParity`; ``print`` it for the tables, ``.first_divergence`` names
      the first layer whose output leaves tolerance.

    Example:
      >>> import torch, jaxreg
      >>> from flax import nnx
      >>> from torch_ref.bridge import to_nnx
      >>> torch_mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
      ...                                 torch.nn.Linear(4, 2))
      >>> jax_mlp = nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.tanh,
      ...                          nnx.Linear(4, 2, rngs=nnx.Rngs(0)))
      >>> _ = to_nnx(torch_mlp, jax_mlp)
      >>> result = compare_models(torch_mlp, jax_mlp, np.ones((5, 3)))
      >>> result.passed
      True
      >>> for e in result.grads:
      ...     print(e.name)
      0.bias <-> layers/0/bias
      0.weight <-> layers/0/kernel
      2.bias <-> layers/2/bias
      2.weight <-> layers/2/kernel
    """
    if (torch_loss is None) != (jax_loss is None):
        raise ValueError("give both torch_loss and jax_loss, or neither")
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {list(TOLERANCES)}, got {dtype!r}")
    with parity_settings(), model_settings():
        return _compare_models(
            torch_model,
            nnx_model,
            [cast_input(x, dtype) for x in _as_tuple(inputs)],
            [np.asarray(t) for t in _as_tuple(targets)],
            torch_loss,
            jax_loss,
            dtype=dtype,
            device=device,
            param_map=param_map,
            train=train,
            layers=layers,
            tol=tolerance or TOLERANCES[dtype],
            seed=seed,
            name=name or type(nnx_model).__name__,
        )


def _compare_models(
    torch_model: torch.nn.Module,
    nnx_model: nnx.Module,
    args: list[np.ndarray],
    targets: list[np.ndarray],
    torch_loss: Callable[..., torch.Tensor] | None,
    jax_loss: Callable[..., jax.Array] | None,
    *,
    dtype: str,
    device: str,
    param_map: ParamMap,
    train: bool,
    layers: bool,
    tol: Tolerance,
    seed: int,
    name: str,
) -> ModelParity:
    dev = get_device(device)
    torch_model, nnx_model = prepare_models(torch_model, nnx_model, dtype, device, train)
    mapping = ParamMapping(torch_model, nnx_model, param_map)
    floats = [i for i, a in enumerate(args) if is_floating(a.dtype)]
    graphdef, params, rest = nnx.split(nnx_model, nnx.Param, ...)
    jargs = [jax.device_put(a, dev.jax_device) for a in args]
    jtargets = [jax.device_put(t, dev.jax_device) for t in targets]

    labels: list[tuple[str, str]] = []  # (path, class) of each recorded call, set by tracing

    def forward(params: Any, diff: list[jax.Array], record: bool) -> tuple[Any, Any]:
        full = list(jargs)
        for i, d in zip(floats, diff, strict=True):
            full[i] = d
        # fresh Variables at this trace level, so that layers may update their state
        # (BatchNorm statistics, RNG counts) inside the trace
        model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
        with nnx_calls(model) if record else contextlib.nullcontext([]) as calls:
            out = model(*full)
        result = out if jax_loss is None else jax_loss(out, *jtargets)
        labels[:] = [(path, kind) for path, kind, _, _ in calls]
        return result, (out, [(ins, outs) for _, _, ins, outs in calls])

    def run(params: Any, diff: list[jax.Array], cotangent: Any, record: bool) -> Any:
        result, pullback, (out, calls) = jax.vjp(
            lambda p, d: forward(p, d, record), params, diff, has_aux=True
        )
        return out, result, pullback(cotangent), calls

    diff = [jargs[i] for i in floats]
    shapes = jax.eval_shape(lambda p, d: forward(p, d, False)[0], params, diff)
    rng = np.random.default_rng(seed)
    if jax_loss is None:
        cotangent = jax.tree.map(
            lambda s: (
                rng.standard_normal(s.shape).astype(s.dtype)
                if jnp.issubdtype(s.dtype, jnp.floating)
                else np.zeros(s.shape, s.dtype)
            ),
            shapes,
        )
    else:
        cotangent = np.ones(shapes.shape, shapes.dtype)
    compiled = jax.jit(run, static_argnums=3)
    try:
        out, result, (grads, diff_grads), values = compiled(params, diff, cotangent, layers)
    except jax.errors.UnexpectedTracerError:  # a call recorded inside a JAX transform
        out, result, (grads, diff_grads), values = compiled(params, diff, cotangent, False)
    calls = [(*label, *value) for label, value in zip(labels, values, strict=True)]

    # --- torch: the same inputs, cotangent, and hooks on every submodule.
    targs = []
    for i, a in enumerate(args):
        t = to_torch(a, dev.torch_device)
        targs.append(t.requires_grad_(True) if i in floats else t)
    with torch_calls(torch_model) if layers else contextlib.nullcontext([]) as torch_records:
        torch_out = torch_model(*targs)
    torch_result = (
        torch_out
        if torch_loss is None
        else torch_loss(torch_out, *(to_torch(t, dev.torch_device) for t in targets))
    )
    named = {n: p for n, p in torch_model.named_parameters() if p.requires_grad}
    result_leaves = [
        t for t in jax.tree_util.tree_leaves(torch_result) if isinstance(t, torch.Tensor)
    ]
    cot_leaves = [to_torch(np.asarray(c), dev.torch_device) for c in jax.tree.leaves(cotangent)]
    wrt = [*named.values(), *(targs[i] for i in floats)]
    torch_grads = torch.autograd.grad(
        result_leaves, wrt, grad_outputs=cot_leaves[: len(result_leaves)], allow_unused=True
    )
    torch_grads = [
        torch.zeros_like(w) if g is None else g for g, w in zip(torch_grads, wrt, strict=True)
    ]

    # --- outputs, gradients, layers
    out_paths = jax.tree_util.tree_flatten_with_path(out)[0]
    out_names = ["output" + jax.tree_util.keystr(p) for p, _ in out_paths]
    torch_out_leaves = [
        t for t in jax.tree_util.tree_leaves(torch_out) if isinstance(t, torch.Tensor)
    ]
    outputs = list(_compare_named(out_names, [v for _, v in out_paths], torch_out_leaves, tol))
    if len(out_paths) != len(torch_out_leaves):
        outputs.append(
            LeafError(
                "output",
                np.inf,
                np.inf,
                np.nan,
                np.nan,
                problems=(
                    f"output: {len(out_paths)} jax leaves vs {len(torch_out_leaves)} torch leaves",
                ),
            )
        )
    if jax_loss is not None:
        outputs.append(leaf_error("loss", result, torch_result, tol))

    state = {k: to_numpy(v) for k, v in untied_state(torch_model).items()}
    state.update({n: to_numpy(g) for n, g in zip(named, torch_grads, strict=False)})
    torch_by_path = mapping.to_nnx(state)
    jax_by_path = {nnx_key(p): v for p, v in nnx.to_flat_state(grads)}
    grad_errors = tuple(
        leaf_error(
            pair.label,
            np.asarray(jax_by_path[nnx_key(pair.nnx_path)]),
            torch_by_path[nnx_key(pair.nnx_path)],
            tol,
        )
        for pair in mapping.pairs
    )
    input_grads = tuple(
        leaf_error(f"input[{i}]", g, t, tol)
        for i, g, t in zip(floats, diff_grads, torch_grads[len(named) :], strict=True)
    )

    layer_results, unpaired = [], []
    if layers and calls:
        modules = module_pairs(
            mapping.pairs,
            [n for n, _ in torch_model.named_modules()],
            [nnx_key(p) for p, _ in nnx.iter_modules(nnx_model)],
        )
        layer_results, unpaired = pair_calls(torch_records, calls, modules, tol)
    return ModelParity(
        name=name,
        dtype=dtype,
        device=device,
        tolerance=tol,
        outputs=tuple(outputs),
        grads=grad_errors,
        input_grads=input_grads,
        layers=tuple(layer_results),
        unpaired=tuple(unpaired),
    )
