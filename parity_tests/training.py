"""Training-trajectory parity: N optimizer steps of a torch model and of its nnx twin.

:func:`compare_training` trains copies of both models (cast to the compared dtype; the
caller's models are not changed) on the same batches with the same loss, a
``torch.optim`` optimizer on one side and an optax transformation on the other, and
compares after every step the loss and every parameter, named by its torch name and
nnx path (:mod:`parity_tests.naming`), against :data:`TRAJECTORY_TOLERANCES`. It
names the first step and the first parameter that leave tolerance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
import torch
from flax import nnx

from parity_tests.errors import (
    TRAJECTORY_TOLERANCES,
    LeafError,
    Tolerance,
    format_table,
    leaf_error,
    worst,
)
from parity_tests.harness import cast_input, get_device, parity_settings, to_numpy, to_torch
from parity_tests.models import model_settings, prepare_models
from parity_tests.naming import ParamMap, ParamMapping, untied_state

__all__ = ["StepResult", "TrainingParity", "compare_training"]


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One optimizer step on both sides.

    Attributes:
      step: 1 for the first step; 0 for the parameters before training.
      loss: the loss of the step's batch, computed before the update (``None`` at 0).
      jax_loss, torch_loss: both losses.
      params: each parameter after the update, ``torch name <-> nnx/path``.
    """

    step: int
    loss: LeafError | None
    jax_loss: float
    torch_loss: float
    params: tuple[LeafError, ...]

    @property
    def leaves(self) -> tuple[LeafError, ...]:
        return self.params if self.loss is None else (self.loss, *self.params)

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.leaves)

    @property
    def first_failure(self) -> LeafError | None:
        """The loss if it is over tolerance, else the first parameter that is."""
        return next((e for e in self.leaves if not e.passed), None)


@dataclasses.dataclass(frozen=True)
class TrainingParity:
    """The outcome of :func:`compare_training`: one :class:`StepResult` per step."""

    name: str
    dtype: str
    device: str
    tolerance: Tolerance
    steps: tuple[StepResult, ...]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.steps)

    @property
    def first_failure(self) -> tuple[int, LeafError] | None:
        """``(step, leaf)``: the first step that leaves tolerance and its first leaf there."""
        for s in self.steps:
            if not s.passed:
                return s.step, s.first_failure
        return None

    @property
    def max_rel(self) -> float:
        """The largest relative error of any loss or parameter over all steps."""
        return max((e.rel for s in self.steps for e in s.leaves), default=0.0)

    def summary(self) -> str:
        text = (
            f"{self.name} [{self.dtype}, {self.device}, rtol {self.tolerance.rtol:g}]: "
            f"{len(self.steps) - 1} steps, largest relative difference {self.max_rel:.1e}: "
            + ("ok" if self.passed else "FAIL")
        )
        first = self.first_failure
        if first is not None:
            step, leaf = first
            when = "before the first step (copy the weights)" if step == 0 else f"at step {step}"
            text += f"\nfirst leaves tolerance {when}: {leaf.describe()}"
        return text

    def __str__(self) -> str:
        rows = []
        for s in self.steps:
            param = worst(s.params)
            rows.append(
                [
                    str(s.step),
                    "-" if s.loss is None else f"{s.jax_loss:.10g}",
                    "-" if s.loss is None else f"{s.torch_loss:.10g}",
                    "-" if s.loss is None else f"{s.loss.rel:.1e}",
                    "-" if param is None else param.name,
                    "-" if param is None else f"{param.rel:.1e}",
                    "ok" if s.passed else "FAIL",
                ]
            )
        header = ["step", "jax loss", "torch loss", "loss rel", "worst parameter", "rel", ""]
        return self.summary() + "\n\n" + format_table(header, rows)


def _split_batch(batch: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(
            "each batch must be a pair (inputs, targets), each an array or a tuple of arrays; "
            f"got {type(batch).__name__}"
        )
    inputs, targets = (
        tuple(part) if isinstance(part, (tuple, list)) else (part,) for part in batch
    )
    return inputs, targets


def compare_training(
    torch_model: torch.nn.Module,
    nnx_model: nnx.Module,
    batches: Sequence[Any],
    *,
    torch_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer],
    optimizer: optax.GradientTransformation,
    torch_loss: Callable[..., torch.Tensor],
    jax_loss: Callable[..., jax.Array],
    dtype: str = "float64",
    device: str = "cpu",
    param_map: ParamMap = None,
    train: bool = False,
    tolerance: Tolerance | None = None,
    name: str = "",
) -> TrainingParity:
    """Trains both models on the same batches; compares losses and parameters per step.

    Args:
      torch_model: the torch module, holding the same weights as ``nnx_model``.
      nnx_model: its nnx twin.
      batches: one ``(inputs, targets)`` pair per step, each an array or a tuple of
        arrays (NumPy); floating ones are cast to ``dtype``. The models are called as
        ``model(*inputs)`` and the losses as ``loss(output, *targets)``.
      torch_optimizer: builds the torch optimizer from the (copied, cast) torch model,
        e.g. ``lambda m: torch.optim.AdamW(param_groups(m), lr=1e-2)``.
      optimizer: the optax transformation for the nnx model's ``nnx.Param`` state, e.g.
        ``jaxreg.adamw(1e-2, mask=jaxreg.weights_only)``.
      torch_loss, jax_loss: ``loss(output, *targets) -> scalar`` on each side.
      dtype: ``"float64"`` or ``"float32"`` (rows of :data:`TRAJECTORY_TOLERANCES`).
      device: ``"cpu"`` or ``"gpu"``.
      param_map: how parameters correspond (:mod:`parity_tests.naming`).
      train: train in training mode (``.train()``: batch statistics, dropout); by
        default both models are in evaluation mode, so that dropout is off.
      tolerance: overrides the dtype's row.
      name: a label for the report.

    Returns:
      A :class:`TrainingParity`: step 0 compares the copied parameters, step ``k`` the
      loss of batch ``k`` and the parameters after ``k`` updates; ``first_failure``
      is the first step and leaf out of tolerance.
    """
    if tolerance is None and dtype not in TRAJECTORY_TOLERANCES:
        raise ValueError(
            f"dtype must be one of {list(TRAJECTORY_TOLERANCES)} (or pass a tolerance), "
            f"got {dtype!r}"
        )
    tol = tolerance or TRAJECTORY_TOLERANCES[dtype]
    with parity_settings(), model_settings():
        return _compare_training(
            torch_model,
            nnx_model,
            [_split_batch(b) for b in batches],
            torch_optimizer,
            optimizer,
            torch_loss,
            jax_loss,
            dtype=dtype,
            device=device,
            param_map=param_map,
            train=train,
            tol=tol,
            name=name or type(nnx_model).__name__,
        )


def _compare_training(
    torch_model: torch.nn.Module,
    nnx_model: nnx.Module,
    batches: list[tuple[tuple[Any, ...], tuple[Any, ...]]],
    torch_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer],
    optimizer: optax.GradientTransformation,
    torch_loss: Callable[..., torch.Tensor],
    jax_loss: Callable[..., jax.Array],
    *,
    dtype: str,
    device: str,
    param_map: ParamMap,
    train: bool,
    tol: Tolerance,
    name: str,
) -> TrainingParity:
    dev = get_device(device)
    torch_model, nnx_model = prepare_models(torch_model, nnx_model, dtype, device, train)
    mapping = ParamMapping(torch_model, nnx_model, param_map)
    torch_opt = torch_optimizer(torch_model)
    graphdef, params, rest = nnx.split(nnx_model, nnx.Param, ...)
    # committed to the device like the step's outputs, so that the step compiles once
    opt_state = jax.device_put(optimizer.init(params), dev.jax_device)

    @jax.jit
    def step(params: Any, rest: Any, opt_state: Any, inputs: Any, targets: Any) -> Any:
        def loss_fn(params: Any) -> tuple[jax.Array, Any]:
            # fresh Variables at this trace level, so that layers may update their state
            # (BatchNorm statistics, RNG counts) inside the trace
            model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, rest))
            loss = jax_loss(model(*inputs), *targets)
            return loss, nnx.split(model, nnx.Param, ...)[2]

        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return loss, optax.apply_updates(params, updates), rest, opt_state

    def compare_params(
        number: int, loss: LeafError | None, losses: tuple[float, float]
    ) -> StepResult:
        torch_params = {k: to_numpy(v) for k, v in untied_state(torch_model).items()}
        errors = mapping.errors(params, torch_params, tol)
        return StepResult(number, loss, *losses, errors)

    results = [compare_params(0, None, (np.nan, np.nan))]
    for number, (inputs, targets) in enumerate(batches, start=1):
        inputs = [cast_input(x, dtype) for x in inputs]
        targets = [np.asarray(t) for t in targets]
        jax_inputs = [jax.device_put(x, dev.jax_device) for x in inputs]
        jax_targets = [jax.device_put(t, dev.jax_device) for t in targets]
        loss, params, rest, opt_state = step(params, rest, opt_state, jax_inputs, jax_targets)

        torch_opt.zero_grad()
        torch_value = torch_loss(
            torch_model(*(to_torch(x, dev.torch_device) for x in inputs)),
            *(to_torch(t, dev.torch_device) for t in targets),
        )
        torch_value.backward()
        torch_opt.step()
        loss_error = leaf_error("loss", np.asarray(loss), to_numpy(torch_value), tol)
        results.append(
            compare_params(number, loss_error, (float(loss), float(torch_value.detach())))
        )
    return TrainingParity(name, dtype, device, tol, tuple(results))
