"""The two sides of :func:`parity_tests.harness.compare` (private): each framework's value
and vector-Jacobian product on the same inputs and the same cotangent.

The JAX side runs once under ``jax.jit`` (value and VJP in one compiled call, cached per
function); the cotangent is drawn from the output shapes that tracing alone gives
(``jax.eval_shape``), so nothing is compiled twice, and where the value is infinite the
cotangent is zeroed (its derivative is not compared) and the VJP recomputed. The torch
side takes the same inputs and cotangent, on the same device, through autograd.
:func:`to_torch` and :func:`to_numpy` carry arrays across (bfloat16 exactly, through
float32); the harness re-exports them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import torch

from parity_tests.errors import is_floating, numpy_dtype

__all__ = ["JaxSide", "jax_value_and_vjp", "run_jax", "run_torch", "to_numpy", "to_torch"]


def to_torch(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A NumPy array as a torch tensor of the same dtype (bfloat16 through float32, exact)."""
    if x.dtype == numpy_dtype("bfloat16"):
        return torch.from_numpy(x.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(np.array(x)).to(device)


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (a copy, any dtype: bfloat16 through ``ml_dtypes``) or array as NumPy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            return x.float().numpy().astype(numpy_dtype("bfloat16"))
        return x.numpy().copy()
    return np.asarray(x)


@functools.lru_cache(maxsize=512)
def jax_value_and_vjp(jax_fn: Callable[..., Any], grad_argnums: tuple[int, ...]):
    """``jit((args, cotangents) -> (value, VJP w.r.t. grad_argnums))``, cached per function."""

    @jax.jit
    def run(args, cotangents):
        if not grad_argnums:
            return jax_fn(*args), []

        def partial_fn(*diff):
            full = list(args)
            for i, d in zip(grad_argnums, diff, strict=True):
                full[i] = d
            return jax_fn(*full)

        out, pullback = jax.vjp(partial_fn, *[args[i] for i in grad_argnums])
        treedef = jax.tree_util.tree_structure(out)
        return out, list(pullback(jax.tree_util.tree_unflatten(treedef, cotangents)))

    return run


class JaxSide(NamedTuple):
    """The JAX side of a comparison: output leaf paths and values, the VJP of each input
    in ``grad_argnums``, and the cotangent both sides use."""

    paths: list[Any]
    values: list[np.ndarray]
    grads: list[np.ndarray]
    cotangents: list[np.ndarray]


def run_jax(
    jax_fn: Callable[..., Any],
    args: Sequence[np.ndarray],
    grad_argnums: tuple[int, ...],
    device: Any,
    seed: int,
) -> JaxSide:
    """The value and the VJP of ``jax_fn`` at ``args`` on ``device``, with a random
    cotangent seeded by ``seed``; zero where the value is infinite."""
    jargs = [jax.device_put(a, device) for a in args]
    flat_shapes = jax.tree_util.tree_flatten_with_path(jax.eval_shape(jax_fn, *jargs))[0]
    out_paths = [path for path, _ in flat_shapes]
    out_shapes = [leaf for _, leaf in flat_shapes]
    rng = np.random.default_rng(seed)
    cotangents = [
        rng.standard_normal(leaf.shape).astype(leaf.dtype)
        if is_floating(leaf.dtype) or np.issubdtype(leaf.dtype, np.complexfloating)
        else np.zeros(leaf.shape, leaf.dtype)
        for leaf in out_shapes
    ]
    jax_out, jax_grads_raw = jax_value_and_vjp(jax_fn, grad_argnums)(
        jargs, [jax.device_put(c, device) for c in cotangents]
    )
    jax_leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax_out)]
    jax_grads = [np.asarray(g) for g in jax_grads_raw]
    # Where the value is infinite its derivative is not compared: zero the cotangent
    # there and recompute (rare: only the edge cases with infinite values).
    finite = [np.isfinite(to_numpy(leaf)) | ~is_floating(leaf.dtype) for leaf in jax_leaves]
    if grad_argnums and not all(f.all() for f in finite):
        cotangents = [
            np.where(f, c, 0).astype(c.dtype) for f, c in zip(finite, cotangents, strict=True)
        ]
        _, jax_grads_raw = jax_value_and_vjp(jax_fn, grad_argnums)(
            jargs, [jax.device_put(c, device) for c in cotangents]
        )
        jax_grads = [np.asarray(g) for g in jax_grads_raw]
    return JaxSide(out_paths, jax_leaves, jax_grads, cotangents)


def run_torch(
    torch_fn: Callable[..., Any],
    args: Sequence[np.ndarray],
    grad_argnums: tuple[int, ...],
    cotangents: Sequence[np.ndarray],
    device: torch.device,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(output leaves, VJP of each input in grad_argnums)`` of ``torch_fn`` at ``args``
    on ``device`` with the JAX side's ``cotangents`` (an input it does not use: zeros)."""
    targs = []
    for i, a in enumerate(args):
        t = to_torch(a, device)
        if i in grad_argnums:
            t.requires_grad_(True)
        targs.append(t)
    torch_out = torch_fn(*targs)
    torch_leaves = jax.tree_util.tree_leaves(torch_out)
    torch_values = [to_numpy(t) for t in torch_leaves]
    torch_grads: list[np.ndarray] = []
    if grad_argnums:
        pairs = [
            (t, to_torch(c, device))
            for t, c in zip(torch_leaves, cotangents, strict=False)
            if isinstance(t, torch.Tensor) and t.requires_grad
        ]
        wrt = [targs[i] for i in grad_argnums]
        if pairs:
            grads = torch.autograd.grad(
                [p[0] for p in pairs], wrt, grad_outputs=[p[1] for p in pairs], allow_unused=True
            )
        else:
            grads = [None] * len(wrt)
        torch_grads = [
            np.zeros(w.shape) if g is None else to_numpy(g) for g, w in zip(grads, wrt, strict=True)
        ]
    return torch_values, torch_grads
