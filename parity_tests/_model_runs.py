"""The forward and backward passes of :func:`parity_tests.models.compare_models` (private).

:func:`prepare_models` makes the copies that run: both models cast as torch's
``.to(dtype)`` casts, on the device, in train or eval mode (also used by
:mod:`parity_tests.training`; :mod:`parity_tests.models` re-exports it).

:func:`run_nnx` runs the nnx model under one ``jax.jit``: the output (or the loss), the
VJP with respect to the parameters and the floating inputs, and, with ``layers``, every
submodule call recorded by :func:`parity_tests._calls.nnx_calls` and returned from the
trace. The cotangent is drawn from the output shapes that tracing alone gives (ones for a
loss). Layers may update their state inside the trace (BatchNorm statistics, RNG
counts): each trace merges fresh Variables. :func:`run_torch` runs the torch model on
the same inputs with the same cotangent, with forward hooks on every submodule.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity_tests._calls import Call, nnx_calls, torch_calls
from parity_tests._sides import to_torch
from parity_tests.errors import numpy_dtype
from parity_tests.harness import get_device, torch_dtype

__all__ = ["NnxRun", "TorchRun", "prepare_models", "run_nnx", "run_torch"]


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


class NnxRun(NamedTuple):
    """The nnx side: the output, the result (the output or the loss), the parameter
    gradients (an ``nnx.State``), the gradients of the floating inputs, the recorded calls
    and the cotangent both sides use."""

    out: Any
    result: Any
    grads: Any
    input_grads: Any
    calls: list[Call]
    cotangent: Any


def run_nnx(
    nnx_model: nnx.Module,
    args: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    jax_loss: Callable[..., jax.Array] | None,
    floats: list[int],
    device: Any,
    layers: bool,
    seed: int,
) -> NnxRun:
    """Output, VJP and (with ``layers``) the submodule calls of ``nnx_model(*args)``."""
    graphdef, params, rest = nnx.split(nnx_model, nnx.Param, ...)
    jargs = [jax.device_put(a, device) for a in args]
    jtargets = [jax.device_put(t, device) for t in targets]

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
    return NnxRun(out, result, grads, diff_grads, calls, cotangent)


class TorchRun(NamedTuple):
    """The torch side: the output, the result (the output or the loss), the trainable
    parameters by name, the gradients of those parameters then of the floating inputs,
    and the recorded calls."""

    out: Any
    result: Any
    named: dict[str, torch.nn.Parameter]
    grads: list[torch.Tensor]
    records: list[Call]


def run_torch(
    torch_model: torch.nn.Module,
    args: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    torch_loss: Callable[..., torch.Tensor] | None,
    cotangent: Any,
    floats: list[int],
    device: torch.device,
    layers: bool,
) -> TorchRun:
    """Output, VJP (with the nnx side's ``cotangent``) and, with ``layers``, the submodule
    calls of ``torch_model(*args)``."""
    targs = []
    for i, a in enumerate(args):
        t = to_torch(a, device)
        targs.append(t.requires_grad_(True) if i in floats else t)
    with torch_calls(torch_model) if layers else contextlib.nullcontext([]) as torch_records:
        torch_out = torch_model(*targs)
    torch_result = (
        torch_out
        if torch_loss is None
        else torch_loss(torch_out, *(to_torch(t, device) for t in targets))
    )
    named = {n: p for n, p in torch_model.named_parameters() if p.requires_grad}
    result_leaves = [
        t for t in jax.tree_util.tree_leaves(torch_result) if isinstance(t, torch.Tensor)
    ]
    cot_leaves = [to_torch(np.asarray(c), device) for c in jax.tree.leaves(cotangent)]
    wrt = [*named.values(), *(targs[i] for i in floats)]
    raw_grads = torch.autograd.grad(
        result_leaves, wrt, grad_outputs=cot_leaves[: len(result_leaves)], allow_unused=True
    )
    torch_grads = [
        torch.zeros_like(w) if g is None else g for g, w in zip(raw_grads, wrt, strict=True)
    ]
    return TorchRun(torch_out, torch_result, named, torch_grads, torch_records)
