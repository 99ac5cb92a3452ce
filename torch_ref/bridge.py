"""Copy parameters between torch modules and flax.nnx modules, by name.

A torch parameter ``a.b.0.weight`` corresponds to the nnx parameter at path
``('a', 'b', 0, 'kernel')``; every other name (``bias``, ...) is the same on both
sides. Kernels change layout on the way: a linear kernel is ``(in, out)`` in nnx
and ``(out, in)`` in torch; a convolution kernel ``(*window, in, out)`` in nnx and
``(out, in, *window)`` in torch. So :class:`jaxreg.nn.Linear`,
:class:`jaxreg.nn.SwiGLUFeedForward`, :class:`jaxreg.nn.MLP` (and flax's own
``nnx.Linear``/``nnx.Conv``), and any module built from them, copy to and from
their torch twins whenever the attribute names match.

Only parameters (``nnx.Param``, torch ``named_parameters()``) are copied; a
parameter on one side only, or a shape that does not match, raises a
``ValueError`` naming the parameter and both shapes. Values are cast to the
destination's dtype, so the destination's dtypes never change.

The two pure functions :func:`nnx_params_from_state_dict` and
:func:`state_dict_from_nnx` do the same without mutating anything;
:func:`nnx_params_from_state_dict` works on traced JAX arrays, so a torch-layout
parameter list can drive an nnx module inside ``jax.jit`` or ``jax.grad``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

__all__ = ["from_nnx", "nnx_params_from_state_dict", "state_dict_from_nnx", "to_nnx"]

Path = tuple[Any, ...]


def _torch_name(path: Path) -> str:
    """The torch parameter name of an nnx path (``kernel`` is torch's ``weight``)."""
    *parents, leaf = (str(p) for p in path)
    return ".".join([*parents, "weight" if leaf == "kernel" else leaf])


def _to_torch_order(path: Path, ndim: int) -> tuple[int, ...] | None:
    """The axis permutation from the nnx layout to torch's, or ``None`` when they agree."""
    if path[-1] != "kernel" or ndim < 2:
        return None
    # (*window, in, out) -> (out, in, *window); for a linear kernel, a transpose.
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def _to_nnx_order(path: Path, ndim: int) -> tuple[int, ...] | None:
    order = _to_torch_order(path, ndim)
    return None if order is None else tuple(int(i) for i in np.argsort(order))


def _permute(x: Any, order: tuple[int, ...] | None) -> Any:
    return x if order is None else x.transpose(order)


def _nnx_params(nnx_module: nnx.Module) -> list[tuple[Path, nnx.Variable]]:
    return list(nnx.to_flat_state(nnx.state(nnx_module, nnx.Param)))


def _check_names(where: str, torch_names: set[str], nnx_names: set[str]) -> None:
    only_torch, only_nnx = sorted(torch_names - nnx_names), sorted(nnx_names - torch_names)
    if only_torch or only_nnx:
        raise ValueError(
            f"{where}: the modules' parameters do not match by name. Only in torch: {only_torch}; "
            f"only in nnx (named as in torch): {only_nnx}. Build both modules with the same "
            f"attribute names and sizes (torch `weight` (out, in) <-> nnx `kernel` (in, out))."
        )


def _check_shapes(where: str, pairs: list[tuple[str, tuple, Path, tuple]]) -> None:
    """Raises one ``ValueError`` listing every ``(name, torch shape, nnx path, nnx shape)``
    whose shapes disagree (the nnx shape is also given in torch's layout)."""
    problems = []
    for name, torch_shape, path, nnx_shape in pairs:
        order = _to_torch_order(path, len(nnx_shape))
        expected = tuple(nnx_shape[i] for i in order) if order else tuple(nnx_shape)
        if tuple(torch_shape) != expected:
            problems.append(
                f"parameter {name!r} has torch shape {tuple(torch_shape)} but the nnx parameter "
                f"{'/'.join(map(str, path))} has shape {tuple(nnx_shape)} (torch layout {expected})"
            )
    if problems:
        raise ValueError(
            f"{where}: " + "; ".join(problems) + ". Build both modules with the same sizes."
        )


def _params_from_state_dict(
    where: str, state_dict: Mapping[str, Any], nnx_module: nnx.Module
) -> nnx.State:
    params = _nnx_params(nnx_module)
    _check_names(where, set(state_dict), {_torch_name(p) for p, _ in params})
    named = [(_torch_name(path), path, variable) for path, variable in params]
    _check_shapes(where, [(n, state_dict[n].shape, p, v.shape) for n, p, v in named])
    return nnx.from_flat_state(
        [
            (p, v.replace(_owned(_permute(state_dict[n], _to_nnx_order(p, v.ndim)))))
            for n, p, v in named
        ]
    )


def _owned(x: Any) -> Any:
    """``x`` as a JAX array that shares no memory with its source: torch tensors and NumPy
    arrays are copied (a torch optimizer step must never change an nnx model); JAX
    arrays, traced or not, are immutable and kept."""
    if isinstance(x, torch.Tensor):
        x = _numpy(x)
    if isinstance(x, np.ndarray):
        return jnp.array(x, copy=True)
    return x


def nnx_params_from_state_dict(state_dict: Mapping[str, Any], nnx_module: nnx.Module) -> nnx.State:
    """The ``nnx.Param`` state of ``nnx_module`` with values taken from torch-layout arrays.

    Pure: ``nnx_module`` is not changed, and the arrays keep their dtype (they may
    be traced JAX arrays). Use with ``nnx.split``/``nnx.merge`` or ``nnx.update``.

    Args:
      state_dict: torch parameter name -> array (NumPy or JAX), in torch's layout,
        for every parameter of ``nnx_module``.
      nnx_module: gives the structure, names and shapes.

    Returns:
      An ``nnx.State`` of ``nnx.Param``, the structure of ``nnx.state(nnx_module, nnx.Param)``.

    Raises:
      ValueError: if the names or the shapes do not match.

    Example:
      >>> from flax import nnx
      >>> from jaxreg.nn import Linear
      >>> layer = Linear(3, 2, use_bias=False, rngs=nnx.Rngs(0))
      >>> params = nnx_params_from_state_dict({"weight": jnp.ones((2, 3))}, layer)
      >>> print(params["kernel"].shape)
      (3, 2)
    """
    return _params_from_state_dict("nnx_params_from_state_dict", state_dict, nnx_module)


def state_dict_from_nnx(nnx_module: nnx.Module) -> dict[str, jax.Array]:
    """The parameters of ``nnx_module`` as torch names -> JAX arrays in torch's layout."""
    return {
        _torch_name(path): _permute(variable[...], _to_torch_order(path, variable.ndim))
        for path, variable in _nnx_params(nnx_module)
    }


def _numpy(t: torch.Tensor) -> np.ndarray:
    # float64 holds every float16/bfloat16/float32 value exactly; NumPy has no bfloat16.
    # Always a copy: `Tensor.numpy()` shares the tensor's memory.
    t = t.detach().cpu()
    return t.numpy().copy() if t.dtype == torch.float64 else t.to(torch.float64).numpy()


def to_nnx(torch_module: torch.nn.Module, nnx_module: nnx.Module) -> nnx.Module:
    """Copies every parameter of ``torch_module`` into ``nnx_module`` (in place).

    ``weight (out, in)`` becomes ``kernel (in, out)``; values are cast to the nnx
    parameters' dtypes. ``nnx_module`` may be abstract (``nnx.eval_shape``): its
    parameters are then created by the copy and never drawn at random.

    Args:
      torch_module: the source, e.g. a ``torch_ref.nn.SwiGLUFeedForward``.
      nnx_module: the destination with the same attribute names and sizes, e.g.
        a ``jaxreg.nn.SwiGLUFeedForward``.

    Returns:
      ``nnx_module``, for chaining.

    Raises:
      ValueError: if a parameter exists on one side only or the shapes differ.

    Example:
      >>> import torch
      >>> from flax import nnx
      >>> from jaxreg.nn import Linear
      >>> from torch_ref.nn import Linear as TorchLinear
      >>> layer = to_nnx(TorchLinear(3, 2), Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> print(layer.kernel.shape, layer.kernel.dtype)
      (3, 2) float32
    """
    tensors = {name: _numpy(p) for name, p in torch_module.named_parameters()}
    dtypes = {path: variable.dtype for path, variable in _nnx_params(nnx_module)}
    state = _params_from_state_dict("to_nnx", tensors, nnx_module)
    for path, variable in nnx.to_flat_state(state):
        variable.set_value(jnp.asarray(variable[...], dtype=dtypes[path]))
    nnx.update(nnx_module, state)
    return nnx_module


def from_nnx(nnx_module: nnx.Module, torch_module: torch.nn.Module) -> torch.nn.Module:
    """Copies every parameter of ``nnx_module`` into ``torch_module`` (in place).

    ``kernel (in, out)`` becomes ``weight (out, in)``; values are cast to the
    torch parameters' dtypes and devices.

    Args:
      nnx_module: the source.
      torch_module: the destination with the same attribute names and sizes.

    Returns:
      ``torch_module``, for chaining.

    Raises:
      ValueError: if a parameter exists on one side only or the shapes differ.
    """
    arrays = state_dict_from_nnx(nnx_module)
    params = dict(torch_module.named_parameters())
    _check_names("from_nnx", set(params), set(arrays))
    _check_shapes(
        "from_nnx",
        [
            (_torch_name(p), params[_torch_name(p)].shape, p, v.shape)
            for p, v in _nnx_params(nnx_module)
        ],
    )
    with torch.no_grad():
        for name, p in params.items():
            # float64 holds every value exactly; torch cannot read NumPy's bfloat16.
            p.copy_(torch.from_numpy(np.asarray(arrays[name]).astype(np.float64)))
    return torch_module
