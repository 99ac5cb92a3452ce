"""The two sides of :mod:`torch_ref.bridge`: reading each module, and writing into it.

The nnx side is read from the module's own state: its ``Param``/``BatchStat`` variables
become torch-named entries through the layer table of :mod:`torch_ref._bridge_layers`
(each layer first, then the variables no layer of the table owns). The torch side is a
module's ``state_dict`` (or a ``state_dict``), its names passed through the user's
``rename``, with the memory its tensors share (tied weights). The copies go the other
way: the torch values into an ``nnx.State``, the nnx values into the torch tensors.

Private to the bridge (its names are public here so that :mod:`torch_ref.bridge`
imports them): the bridge module holds the API, this one the walking of module trees
and the copies.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from torch_ref import _bridge_checks as checks
from torch_ref import _bridge_layers as layers

__all__ = [
    "NnxSide",
    "Rename",
    "TorchSource",
    "host",
    "nnx_paths",
    "nnx_side",
    "param_state",
    "renamer",
    "storage",
    "to_nnx_state",
    "torch_child",
    "torch_tensors",
    "variable_value",
    "write_torch",
]

Path = layers.Path
#: ``[(pattern, replacement), ...]`` applied to torch names with ``re.sub``, or a callable
#: ``torch name -> nnx name`` (``None``: leave that torch tensor out on purpose).
Rename = Sequence[tuple[str, str]] | Callable[[str], str | None] | None
TorchSource = torch.nn.Module | Mapping[str, Any]
#: the copies to make: (torch name, the entry of its nnx variables)
Copies = list[tuple[str, layers.Entry]]


# --------------------------------------------------------------------------- the nnx side


@dataclasses.dataclass
class NnxSide:
    """An nnx module as the bridge sees it.

    Attributes:
      entries: torch-layout name -> its entry (the nnx variables it is made of).
      variables: nnx path -> ``Param``/``BatchStat`` variable.
      modules: nnx path -> submodule (``()``: the module itself).
      statics: GELU activations held as attributes, to compare with torch's.
    """

    entries: dict[str, layers.Entry]
    variables: dict[Path, nnx.Variable]
    modules: dict[Path, Any]
    statics: list[tuple[Path, Any]]


def nnx_side(nnx_module: nnx.Module) -> NnxSide:
    """The entries of every variable of ``nnx_module``: layers of the table first, then the
    variables no layer owns; layer by layer in the order of the nnx state."""
    if not isinstance(nnx_module, nnx.Module):
        raise TypeError(
            f"torch_ref.bridge: the nnx side must be a flax.nnx.Module, got "
            f"{type(nnx_module).__name__}; pass the module itself (an abstract one from "
            f"nnx.eval_shape works too)."
        )
    modules: dict[Path, Any] = {}
    variables: dict[Path, nnx.Variable] = {}
    statics: list[tuple[Path, Any]] = []
    for path, node in nnx.iter_graph(nnx_module):
        if isinstance(node, nnx.Variable):
            if isinstance(node, (nnx.Param, nnx.BatchStat)):
                variables[path] = node
        elif isinstance(node, nnx.Module):
            modules[path] = node
        elif path and checks.gelu_mode(node) is not None:
            statics.append((path, node))  # an activation to compare with torch's
    order = {path: i for i, path in enumerate(sorted(variables, key=_path_key))}
    below: dict[Path, list[Path]] = {}  # module path -> every variable path under it
    for path in variables:
        for depth in range(len(path)):
            below.setdefault(path[:depth], []).append(path)
    owned: set[Path] = set()
    entries: list[layers.Entry] = []
    for path in sorted(modules, key=len):
        inside = [p for p in below.get(path, []) if p not in owned]
        local = {layers.path_name(p[len(path) :]): variables[p] for p in inside}
        found = layers.layer_entries(path, modules[path], local)
        if found is not None:
            entries += found
            owned.update(p for entry in found for p in entry.paths)
    loose: dict[Path, dict[str, nnx.Variable]] = {}
    for path, variable in variables.items():
        if path not in owned:
            loose.setdefault(path[:-1], {})[str(path[-1])] = variable
    for parent, local in loose.items():
        entries += layers.loose_entries(parent, modules.get(parent), local)
    # layer by layer in the order of the nnx state, each layer's tensors in torch's order
    first: dict[Path, int] = {}
    for entry in entries:
        for p in entry.paths:
            first[entry.layer] = min(first.get(entry.layer, len(order)), order[p])
    entries.sort(key=lambda e: first.get(e.layer, len(order)))
    by_name: dict[str, layers.Entry] = {}
    for entry in entries:
        if entry.name in by_name:
            raise ValueError(
                f"torch_ref.bridge: the nnx variables {nnx_paths(by_name[entry.name])} and "
                f"{nnx_paths(entry)} both become the torch tensor {entry.name!r}; rename one "
                f"of them in the nnx module."
            )
        by_name[entry.name] = entry
    return NnxSide(by_name, variables, modules, statics)


def _path_key(path: Path) -> tuple:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)


def nnx_paths(entry: layers.Entry) -> str:
    """The nnx variable paths of an entry, ``/``-separated, for messages."""
    return ", ".join("/".join(map(str, p)) for p in entry.paths)


# --------------------------------------------------------------------------- the torch side


def renamer(rename: Rename) -> Callable[[str], str | None]:
    """``rename`` (regex pairs, a callable or None) as one checked ``name -> name`` function."""
    if rename is None:
        return lambda name: name
    if callable(rename):

        def call(name: str) -> str | None:
            new = rename(name)
            if new is not None and not isinstance(new, str):
                raise TypeError(
                    f"torch_ref.bridge: `rename` returned {new!r} for {name!r}; it must return "
                    f"the nnx-side name as a str, or None to leave the tensor out."
                )
            return new

        return call
    try:
        rules = [(re.compile(pattern), str(replacement)) for pattern, replacement in rename]
    except (TypeError, ValueError) as error:
        raise TypeError(
            "torch_ref.bridge: `rename` must be a list of (pattern, replacement) pairs, e.g. "
            "[(r'^emb\\.', 'embed.')], or a callable name -> name; got "
            f"{rename!r} ({error})."
        ) from None

    def apply(name: str) -> str:
        for pattern, replacement in rules:
            name = pattern.sub(replacement, name)
        return name

    return apply


def torch_tensors(source: TorchSource, where: str) -> tuple[dict[str, Any], Any]:
    """``(name -> tensor or array, the module or None)``."""
    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict(keep_vars=True)), source
    if isinstance(source, Mapping):
        return dict(source), None
    raise TypeError(
        f"{where}: the torch side must be a torch.nn.Module or a state_dict (a mapping of "
        f"names to tensors or arrays), got {type(source).__name__}."
    )


def storage(value: Any) -> tuple | None:
    """What makes two torch tensors the same memory (tied weights), or None."""
    if not isinstance(value, torch.Tensor) or value.device.type == "meta":
        return None
    ptr = value.untyped_storage().data_ptr()
    if ptr == 0:
        return None
    return (ptr, value.storage_offset(), tuple(value.shape), value.stride(), value.dtype)


def torch_child(root: torch.nn.Module, path: str) -> Any:
    """The submodule (or attribute) of ``root`` at a dotted path, or None."""
    obj: Any = root
    for part in path.split(".") if path else []:
        modules = getattr(obj, "_modules", None)
        if modules is not None and part in modules:
            obj = modules[part]
        else:
            obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# --------------------------------------------------------------------------- the copies


def host(x: Any) -> Any:
    """``x`` as an array that shares no memory with its source: torch tensors and NumPy
    arrays are copied (a torch optimizer step must never change an nnx model); JAX
    arrays, traced or not, are immutable and kept."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
            return x.to(torch.float32).numpy().astype(jnp.bfloat16)
        return x.numpy().copy()
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def variable_value(x: Any) -> Any:
    """The array of an ``nnx.Variable`` (anything else as it is)."""
    return x[...] if isinstance(x, nnx.Variable) else x


def to_nnx_state(side: NnxSide, tensors: Mapping[str, Any], copies: Copies) -> nnx.State:
    """The torch tensors as the nnx variables' new values, cast to their dtypes (batch
    statistics to the entry's own dtype)."""
    flat = []
    for name, entry in copies:
        values = entry.to_nnx(host(tensors[name]))
        dtypes = entry.dtypes or tuple(side.variables[p].dtype for p in entry.paths)
        for path, value, dtype in zip(entry.paths, values, dtypes, strict=True):
            array = jnp.array(value, dtype=dtype or side.variables[path].dtype)
            flat.append((path, side.variables[path].replace(array)))
    return nnx.from_flat_state(flat)


def write_torch(side: NnxSide, tensors: Mapping[str, Any], copies: Copies) -> None:
    """Writes the nnx values into the torch tensors (or NumPy arrays), in place, cast to
    their dtypes."""
    with torch.no_grad():
        for name, entry in copies:
            value = entry.to_torch(*(side.variables[p][...] for p in entry.paths))
            # float64 holds every value exactly; torch cannot read NumPy's bfloat16.
            value = np.asarray(value).astype(np.float64)
            target = tensors[name]
            if isinstance(target, np.ndarray):
                np.copyto(target, value, casting="unsafe")
            else:
                target.copy_(torch.from_numpy(value))


def param_state(side: NnxSide, state_dict: Mapping[str, Any], copies: Copies) -> nnx.State:
    """The ``nnx.Param`` variables with values from torch-layout arrays, dtypes kept (JAX
    arrays, traced or not, pass through)."""
    flat = []
    for name, entry in copies:
        variables = [side.variables[p] for p in entry.paths]
        if not all(isinstance(v, nnx.Param) for v in variables):
            continue
        value = host(state_dict[name])
        if isinstance(value, np.ndarray):
            value = jnp.asarray(value)
        for path, variable, part in zip(entry.paths, variables, entry.to_nnx(value), strict=True):
            flat.append((path, variable.replace(part)))
    return nnx.from_flat_state(flat)
