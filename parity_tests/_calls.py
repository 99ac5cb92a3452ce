"""Submodule calls on both sides of :func:`parity_tests.models.compare_models` (private):
recording them, and pairing the leaves of two calls.

:func:`nnx_calls` wraps, for the duration of a block, the ``__call__`` of every Module
class in an nnx module tree (Python looks ``__call__`` up on the class; calls of
instances outside the tree pass through); :func:`torch_calls` uses forward hooks. Each
records ``(path, class name, input leaves, output leaves)`` when the call returns. The
leaves of two calls are compared by :func:`compare_leaves`, which reads torch's
channels-first layout as the channels-last one of JAX, and pairs leaves by shape when
the two calls take different numbers of arguments. :mod:`parity_tests.models`
re-exports the two recorders.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity_tests._sides import to_numpy
from parity_tests.errors import LeafError, Tolerance, leaf_error
from parity_tests.naming import nnx_key

__all__ = ["Call", "compare_leaves", "compare_named", "nnx_calls", "same_shape", "torch_calls"]

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


# --------------------------------------------------------------------------- leaves


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape


def same_shape(jax_shape: tuple[int, ...], torch_shape: tuple[int, ...]) -> bool:
    """Equal shapes, or torch's channels-first layout of the JAX channels-last one."""
    return jax_shape == torch_shape or jax_shape == _channels_last(torch_shape)


def _align(jax_value: np.ndarray, torch_value: np.ndarray) -> np.ndarray:
    """The torch array in the JAX layout: as is, or channels moved last (NCHW -> NHWC)."""
    if jax_value.shape != torch_value.shape and jax_value.shape == _channels_last(
        torch_value.shape
    ):
        return np.moveaxis(torch_value, 1, -1)
    return torch_value


def compare_named(
    names: Sequence[str], got: Sequence[Any], want: Sequence[Any], tol: Tolerance
) -> tuple[LeafError, ...]:
    """Leaf by leaf over the leaves both sides have (the count is checked by the caller)."""
    return tuple(
        leaf_error(n, to_numpy(g), _align(to_numpy(g), to_numpy(w)), tol)
        for n, g, w in zip(names, got, want, strict=False)
    )


def compare_leaves(
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
                if same_shape(shape, tuple(np.shape(want[j]))):
                    pairs.append((i, g, want[j]))
                    start = j + 1
                    break
        return compare_named(
            [f"{what}[{i}]" for i, _, _ in pairs],
            [g for _, g, _ in pairs],
            [w for _, _, w in pairs],
            tol,
        )
    names = [what] if len(got) == len(want) == 1 else [f"{what}[{i}]" for i in range(len(got))]
    return compare_named(names, got, want, tol)
