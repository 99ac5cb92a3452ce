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
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import torch
from flax import nnx

from parity_tests._calls import (
    Call,
    compare_leaves,
    compare_named,
    nnx_calls,
    same_shape,
    torch_calls,
)
from parity_tests._model_runs import prepare_models, run_nnx, run_torch
from parity_tests.errors import (
    TOLERANCES,
    LeafError,
    Tolerance,
    format_table,
    is_floating,
    leaf_error,
    worst,
)
from parity_tests.harness import cast_input, get_device, parity_settings, to_numpy
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


# --------------------------------------------------------------------------- results


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
        if nout and tout and not same_shape(tuple(np.shape(nout[0])), tuple(tout[0].shape)):
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
                compare_leaves("input", nin, tin, tol),
                compare_leaves("output", nout, tout, tol),
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
    jax_run = run_nnx(nnx_model, args, targets, jax_loss, floats, dev.jax_device, layers, seed)
    torch_run = run_torch(
        torch_model, args, targets, torch_loss, jax_run.cotangent, floats, dev.torch_device, layers
    )
    named, torch_grads = torch_run.named, torch_run.grads

    # --- outputs, gradients, layers
    out_paths = jax.tree_util.tree_flatten_with_path(jax_run.out)[0]
    out_names = ["output" + jax.tree_util.keystr(p) for p, _ in out_paths]
    torch_out_leaves = [
        t for t in jax.tree_util.tree_leaves(torch_run.out) if isinstance(t, torch.Tensor)
    ]
    outputs = list(compare_named(out_names, [v for _, v in out_paths], torch_out_leaves, tol))
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
        outputs.append(leaf_error("loss", jax_run.result, torch_run.result, tol))

    state = {k: to_numpy(v) for k, v in untied_state(torch_model).items()}
    state.update({n: to_numpy(g) for n, g in zip(named, torch_grads, strict=False)})
    grad_errors = mapping.errors(jax_run.grads, state, tol)
    input_grads = tuple(
        leaf_error(f"input[{i}]", g, t, tol)
        for i, g, t in zip(floats, jax_run.input_grads, torch_grads[len(named) :], strict=True)
    )

    layer_results, unpaired = [], []
    if layers and jax_run.calls:
        modules = module_pairs(
            mapping.pairs,
            [n for n, _ in torch_model.named_modules()],
            [nnx_key(p) for p, _ in nnx.iter_modules(nnx_model)],
        )
        layer_results, unpaired = pair_calls(torch_run.records, jax_run.calls, modules, tol)
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
