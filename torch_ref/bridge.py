"""Copy weights between a torch module (or ``state_dict``) and any flax.nnx module.

The mapping is read from the nnx module's own state, as HuggingFace's PT↔Flax
conversion is guided by the target's initialised state: each flax layer says which
torch tensors its variables make and in which layout, the layers are paired with torch's
by their attribute paths, and every tensor is copied, never shared.

Layers (nnx → torch, with the layout change):

- ``nnx.Linear``, :class:`jaxreg.nn.Linear` → ``nn.Linear``: ``kernel (in, out)`` →
  ``weight (out, in)``; ``bias``.
- ``nnx.Conv`` → ``nn.Conv1d/2d/3d``: ``kernel (*k, in/groups, out)`` →
  ``weight (out, in/groups, *k)``.
- ``nnx.ConvTranspose`` → ``nn.ConvTranspose1d/2d/3d``: ``kernel (*k, in, out)`` →
  ``weight (in, out, *k)`` with the window flipped; with ``transpose_kernel=True`` the
  kernel is ``(*k, out, in)`` and is not flipped.
- ``nnx.Embed`` → ``nn.Embedding``: ``embedding`` → ``weight``.
- ``nnx.LayerNorm``, ``nnx.RMSNorm``, ``nnx.GroupNorm`` → their torch namesakes:
  ``scale`` → ``weight``; ``bias``.
- ``nnx.BatchNorm`` → ``nn.BatchNorm1d/2d/3d``: ``scale``, ``bias``, and the batch
  statistics ``mean``, ``var`` → the buffers ``running_mean``, ``running_var`` (they
  take the layer's ``param_dtype``: flax creates them in float32). torch's
  ``num_batches_tracked`` has no nnx twin: it is never required and ``from_nnx`` leaves
  it as it is.
- ``nnx.MultiHeadAttention`` → ``nn.MultiheadAttention``: the ``query``/``key``/``value``
  kernels ``(in, heads, head_dim)`` → rows of the packed ``in_proj_weight
  (3·embed, in)`` (or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when the
  key/value size differs from the query's, as torch decides), biases ``(heads,
  head_dim)`` → ``in_proj_bias``; ``out.kernel (heads, head_dim, out)`` →
  ``out_proj.weight (out, embed)``.
- any other module (:class:`jaxreg.nn.SwiGLUFeedForward`, :class:`jaxreg.nn.MLP`, yours):
  its own variables ``kernel`` → ``weight`` (2-D transposed, more axes as a
  convolution), ``embedding``/``scale`` → ``weight``, batch-stat ``mean``/``var`` →
  ``running_mean``/``running_var``, every other name as is.

Names: an nnx path ``blocks.0.attn`` is the torch module path ``blocks.0.attn``. A list
of layers pairs by structure: torch's ``nn.Sequential``/``nn.ModuleList`` items ``0``,
``2``, ... pair with an nnx list's in order, and the nnx attribute that holds the list
(``nnx.Sequential``'s ``layers``) pairs with a torch Sequential that has none
(``0.weight`` ↔ ``layers.0.weight``). Everything else is the user's: ``rename`` maps torch
names to the nnx module's names (as written by :func:`state_dict_from_nnx` and in the
errors), either as regex pairs ``[(pattern, replacement), ...]`` applied in order with
``re.sub``, or as a callable (returning ``None`` drops that torch tensor on purpose).
Tensors torch ties to one another (the same memory) count once.

Strict by default: if any tensor is left on one side or has another shape, nothing is
copied and one ``ValueError`` lists each such tensor with its shape and the nearest name
on the other side. ``strict=False`` copies what matches and reports the rest as an
:class:`UnmatchedWeightsWarning`.

Settings weights cannot carry: given torch *modules* (not bare ``state_dict``\\ s),
``to_nnx`` and ``from_nnx`` compare the configurations of every pair of layers they
matched, and of dropout modules and GELU activations found at the same place, and warn
(a :class:`PortingWarning` per setting, naming the layers and the change to make):
LayerNorm/GroupNorm epsilon (flax 1e-6, torch 1e-5), RMSNorm ``eps=None`` (torch: the
machine epsilon of the input dtype), GroupNorm ``num_groups`` (flax's default 32),
flax's ``use_fast_variance=True``, BatchNorm momentum (torch ``m`` ↔ flax ``1 - m``) and
epsilon, train/eval modes, torch's unbiased running variance (while training), conv
stride/dilation/groups/padding (flax ``'SAME'`` with a stride pads by the input size,
``(0, 1)`` where torch pads ``(1, 1)``), ConvTranspose padding (torch ``p`` ↔ flax
``(d·(k-1)-p, d·(k-1)-p+output_padding)``), attention heads, dropout, ``batch_first``,
``add_zero_attn``/``add_bias_kv``, flax's float32 softmax for float64 attention (use
:func:`attention_in_input_dtype`), bias presence, dropout rates, and
``nnx.gelu``'s tanh approximation against torch's exact GELU. :func:`weight_map` returns
the whole correspondence and these notes without copying anything.

Values are cast to the destination's dtypes (``from_nnx``: the torch tensors' dtypes and
devices); :func:`nnx_params_from_state_dict` keeps the arrays' dtypes and works on
traced JAX arrays, so a torch-layout parameter list can drive an nnx module inside
``jax.jit`` or ``jax.grad``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights

from torch_ref import _bridge_checks as checks
from torch_ref import _bridge_layers as layers

__all__ = [
    "PortingWarning",
    "UnmatchedWeightsWarning",
    "WeightMap",
    "attention_in_input_dtype",
    "from_nnx",
    "nnx_params_from_state_dict",
    "state_dict_from_nnx",
    "to_nnx",
    "weight_map",
]

Path = layers.Path
#: ``[(pattern, replacement), ...]`` applied to torch names with ``re.sub``, or a callable
#: ``torch name -> nnx name`` (``None``: leave that torch tensor out on purpose).
Rename = Sequence[tuple[str, str]] | Callable[[str], str | None] | None
TorchSource = torch.nn.Module | Mapping[str, Any]
NnxModule = TypeVar("NnxModule", bound=nnx.Module)
TorchModule = TypeVar("TorchModule", bound=TorchSource)


class PortingWarning(UserWarning):
    """A setting differs between a torch layer and its nnx twin, so the same weights give
    different results: the message names the layers, both values and the change to make."""


class UnmatchedWeightsWarning(PortingWarning):
    """``strict=False`` left tensors uncopied: the message lists them as the error would."""


# --------------------------------------------------------------------------- the nnx side


@dataclasses.dataclass
class _NnxSide:
    entries: dict[str, layers.Entry]
    variables: dict[Path, nnx.Variable]
    modules: dict[Path, Any]
    statics: list[tuple[Path, Any]]


def _nnx_side(nnx_module: nnx.Module) -> _NnxSide:
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
                f"torch_ref.bridge: the nnx variables {_nnx_paths(by_name[entry.name])} and "
                f"{_nnx_paths(entry)} both become the torch tensor {entry.name!r}; rename one "
                f"of them in the nnx module."
            )
        by_name[entry.name] = entry
    return _NnxSide(by_name, variables, modules, statics)


def _path_key(path: Path) -> tuple:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)


def _nnx_paths(entry: layers.Entry) -> str:
    return ", ".join("/".join(map(str, p)) for p in entry.paths)


# --------------------------------------------------------------------------- the torch side


def _renamer(rename: Rename) -> Callable[[str], str | None]:
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


def _torch_tensors(source: TorchSource, where: str) -> tuple[dict[str, Any], Any]:
    """``(name -> tensor or array, the module or None)``."""
    if isinstance(source, torch.nn.Module):
        return dict(source.state_dict(keep_vars=True)), source
    if isinstance(source, Mapping):
        return dict(source), None
    raise TypeError(
        f"{where}: the torch side must be a torch.nn.Module or a state_dict (a mapping of "
        f"names to tensors or arrays), got {type(source).__name__}."
    )


def _storage(value: Any) -> tuple | None:
    """What makes two torch tensors the same memory (tied weights), or None."""
    if not isinstance(value, torch.Tensor) or value.device.type == "meta":
        return None
    ptr = value.untyped_storage().data_ptr()
    if ptr == 0:
        return None
    return (ptr, value.storage_offset(), tuple(value.shape), value.stride(), value.dtype)


# --------------------------------------------------------------------------- matching


def _tree(names: Sequence[str]) -> dict:
    """Dotted names as a tree of dicts; a leaf holds the full name."""
    root: dict = {}
    for name in names:
        node, parts = root, name.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a name that is also a prefix: leave it out
                break
            node = child
        else:
            node.setdefault(parts[-1], name)
    return root


def _is_list(keys: Any) -> bool:
    keys = list(keys)
    return bool(keys) and all(k.isdigit() for k in keys)


def _pair(a: Any, b: Any, pairs: list[tuple[str, str]]) -> None:
    if isinstance(a, str) and isinstance(b, str):
        pairs.append((a, b))
    elif isinstance(a, dict) and isinstance(b, dict):
        _match(a, b, pairs)


def _match(t: dict, n: dict, pairs: list[tuple[str, str]]) -> None:
    """Pairs the leaves of two name trees by structure: equal names; two lists of
    different indices in order; a list against an attribute holding one."""
    if _is_list(t) and _is_list(n) and set(t) != set(n) and len(t) == len(n):
        for a, b in zip(sorted(t, key=int), sorted(n, key=int), strict=True):
            _pair(t[a], n[b], pairs)
        return
    for key in t.keys() & n.keys():
        _pair(t[key], n[key], pairs)
    t_rest = {k: v for k, v in t.items() if k not in n}
    n_rest = {k: v for k, v in n.items() if k not in t}
    if not (t_rest and n_rest):
        return
    for rest, other, flip in ((n_rest, t_rest, False), (t_rest, n_rest, True)):
        if not _is_list(other):
            continue
        holders = [k for k, v in rest.items() if isinstance(v, dict) and _is_list(v)]
        if len(holders) == 1:
            if flip:
                _match(rest[holders[0]], other, pairs)
            else:
                _match(other, rest[holders[0]], pairs)
            return


@dataclasses.dataclass
class WeightMap:
    """How the tensors of a torch module and the variables of an nnx module correspond.

    Names on the nnx side are written as torch writes them (the nnx layer's path, then
    the torch name inside the layer); ``str(weight_map)`` shows each with its nnx
    variables and the layout change.

    Attributes:
      matched: torch name -> nnx name, for the tensors that copy (same shape).
      only_torch: torch name -> shape, for torch tensors with no nnx twin.
      only_nnx: nnx name -> shape (in torch's layout), for nnx variables with no torch twin.
      shape_mismatch: torch name -> ``(torch shape, nnx shape in torch's layout)``.
      tied: torch name -> the torch name it shares memory with (copied once).
      skipped: torch names that ``rename`` left out.
      notes: the settings that differ (the :class:`PortingWarning` texts).
    """

    matched: dict[str, str]
    only_torch: dict[str, tuple[int, ...]]
    only_nnx: dict[str, tuple[int, ...]]
    shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    tied: dict[str, str]
    skipped: list[str]
    notes: list[str]
    _entries: dict[str, layers.Entry] = dataclasses.field(repr=False)
    _renamed: dict[str, str] = dataclasses.field(repr=False)
    _shapes: dict[Path, tuple[int, ...]] = dataclasses.field(repr=False)
    _torch_shapes: dict[str, tuple[int, ...]] = dataclasses.field(repr=False)
    _paired: dict[str, str] = dataclasses.field(repr=False)

    @property
    def complete(self) -> bool:
        """True when every tensor on both sides has its twin with the same shape."""
        return not (self.only_torch or self.only_nnx or self.shape_mismatch)

    def _paths(self, entry: layers.Entry) -> str:
        return ", ".join(f"{'/'.join(map(str, p))} {self._shapes[p]}" for p in entry.paths)

    def _nnx_text(self, name: str) -> str:
        entry = self._entries[name]
        return f"{name} {entry.shape} [nnx {self._paths(entry)}]"

    def _torch_text(self, name: str, shape: tuple[int, ...]) -> str:
        renamed = self._renamed.get(name, name)
        alias = f" (renamed {renamed})" if renamed != name else ""
        return f"{name}{alias} {tuple(shape)}"

    def problems(self) -> str:
        """The unmatched and mis-shaped tensors, one per line with the nearest candidate."""
        lines = []
        original = {new: old for old, new in self._renamed.items()}
        nnx_names = list(self.only_nnx) or [n for n, e in self._entries.items() if e.paths]
        torch_names = [self._renamed[n] for n in self.only_torch] or list(original)
        if self.only_torch:
            lines.append(f"  only in torch ({len(self.only_torch)}):")
            for name, shape in self.only_torch.items():
                near = _nearest(self._renamed[name], nnx_names)
                hint = f"; nearest in nnx: {self._nnx_text(near)}" if near else ""
                lines.append(f"    {self._torch_text(name, shape)}{hint}")
        if self.only_nnx:
            lines.append(f"  only in nnx ({len(self.only_nnx)}), named as torch would name them:")
            for name in self.only_nnx:
                near = _nearest(name, torch_names)
                hint = ""
                if near is not None:
                    near = original[near]
                    hint = f"; nearest in torch: {self._torch_text(near, self._tshape(near))}"
                lines.append(f"    {self._nnx_text(name)}{hint}")
        if self.shape_mismatch:
            lines.append(f"  shapes differ ({len(self.shape_mismatch)}):")
            for name, (torch_shape, nnx_shape) in self.shape_mismatch.items():
                entry = self._entries[self._paired[name]]
                other = "" if entry.name == self._renamed[name] else f" {entry.name}"
                lines.append(
                    f"    {name}: torch {tuple(torch_shape)}, nnx{other} {nnx_shape} "
                    f"[{self._paths(entry)}]"
                )
        return "\n".join(lines)

    def _tshape(self, name: str) -> tuple[int, ...]:
        return tuple(self._torch_shapes.get(name, ()))

    def __str__(self) -> str:
        lines = [f"{len(self.matched)} tensors copy:"]
        for torch_name, nnx_name in self.matched.items():
            entry = self._entries[nnx_name]
            layout = f": {entry.layout}" if entry.layout else ""
            lines.append(
                f"  {self._torch_text(torch_name, self._tshape(torch_name))} <- "
                f"{entry.kind} {self._paths(entry)}{layout}"
            )
        lines += [f"  {alias} is tied to {name} in torch" for alias, name in self.tied.items()]
        lines += [f"  {name} left out by `rename`" for name in self.skipped]
        if not self.complete:
            lines.append(self.problems())
        lines += [f"  setting: {note}" for note in self.notes]
        return "\n".join(lines)


def _nearest(name: str, candidates: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    return found[0] if found else None


def _map(
    torch_source: TorchSource,
    nnx_module: nnx.Module,
    rename: Rename,
    *,
    where: str,
    required: Callable[[nnx.Variable], bool] = lambda v: True,
    notes: bool = True,
) -> tuple[WeightMap, _NnxSide, dict[str, Any], Any, list[tuple[str, layers.Entry]]]:
    side = _nnx_side(nnx_module)
    tensors, torch_module = _torch_tensors(torch_source, where)
    apply = _renamer(rename)
    renamed: dict[str, str] = {}
    skipped: list[str] = []
    owner: dict[str, str] = {}
    for name in tensors:
        new = apply(name)
        if new is None:
            skipped.append(name)
            continue
        if new in owner:
            raise ValueError(
                f"{where}: `rename` maps both {owner[new]!r} and {name!r} to {new!r}; every "
                f"torch tensor needs its own name."
            )
        owner[new] = name
        renamed[name] = new
    pairs_by_name: list[tuple[str, str]] = []
    _match(_tree(list(owner)), _tree(list(side.entries)), pairs_by_name)
    position = {name: i for i, name in enumerate(tensors)}
    pairs = sorted(
        ((owner[t], side.entries[n]) for t, n in pairs_by_name), key=lambda p: position[p[0]]
    )
    paired_torch = {t for t, _ in pairs}
    paired_nnx = {e.name for _, e in pairs}

    storages: dict[tuple, str] = {}
    group: dict[str, str] = {}  # torch name -> the first name of its memory
    for name in tensors:
        key = _storage(tensors[name])
        if key is not None:
            group[name] = storages.setdefault(key, name)
    matched_groups: dict[str, str] = {}
    for t, _ in pairs:
        if t in group:
            matched_groups.setdefault(group[t], t)
    tied = {
        name: matched_groups[group[name]]
        for name in renamed
        if name not in paired_torch and name in group and group[name] in matched_groups
    }

    shapes = {path: tuple(v.shape) for path, v in side.variables.items()}
    torch_shapes = {name: tuple(np.shape(v)) for name, v in tensors.items()}
    matched: dict[str, str] = {}
    mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    copies: list[tuple[str, layers.Entry]] = []
    for t, entry in pairs:
        if entry.optional:
            continue
        if torch_shapes[t] != entry.shape:
            mismatch[t] = (torch_shapes[t], entry.shape)
            continue
        matched[t] = entry.name
        copies.append((t, entry))
    only_torch = {
        name: torch_shapes[name]
        for name in renamed
        if name not in paired_torch and name not in tied
    }
    only_nnx = {
        entry.name: entry.shape
        for entry in side.entries.values()
        if entry.name not in paired_nnx
        and not entry.optional
        and all(required(side.variables[p]) for p in entry.paths)
    }
    found_notes: list[checks.Note] = []
    if notes and torch_module is not None:
        found_notes = _config_notes(torch_module, side, pairs)
        groups: dict[str, list[str]] = {}
        for t, _ in copies:
            if t in group:
                groups.setdefault(group[t], []).append(t)
        for names in groups.values():
            if len(names) > 1:
                found_notes.append(
                    checks.Note(
                        "tied weights",
                        names[0],
                        ", ".join(matched[n] for n in names),
                        f"torch ties {', '.join(names)} (one tensor), the nnx model has "
                        f"{len(names)} variables",
                        "to_nnx copies the tensor to each; from_nnx writes each into the one "
                        "tensor, the last one wins: tie them in nnx too (e.g. Embed.attend)",
                    )
                )
    wmap = WeightMap(
        matched=matched,
        only_torch=only_torch,
        only_nnx=only_nnx,
        shape_mismatch=mismatch,
        tied=tied,
        skipped=skipped,
        notes=checks.messages(found_notes),
        _entries=side.entries,
        _renamed=renamed,
        _shapes=shapes,
        _torch_shapes=torch_shapes,
        _paired={t: e.name for t, e in pairs},
    )
    return wmap, side, tensors, torch_module, copies


def _torch_child(root: torch.nn.Module, path: str) -> Any:
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


def _config_notes(
    torch_module: torch.nn.Module, side: _NnxSide, pairs: list[tuple[str, layers.Entry]]
) -> list[checks.Note]:
    found: list[checks.Note] = []
    seen: set[tuple[str, Path]] = set()
    places: dict[Path, str] = {}  # nnx path -> torch path of the same place
    for t, entry in pairs:
        if t == entry.local:
            prefix = ""
        elif t.endswith("." + entry.local):
            prefix = t[: -len(entry.local) - 1]
        else:
            continue  # renamed inside the layer: no module to compare
        if (prefix, entry.layer) in seen:
            continue
        seen.add((prefix, entry.layer))
        torch_layer = _torch_child(torch_module, prefix)
        nnx_layer = side.modules.get(entry.layer)
        if torch_layer is not None and nnx_layer is not None:
            found += checks.check_layer(
                torch_layer, nnx_layer, prefix, layers.path_name(entry.layer)
            )
        t_parts, n_parts = prefix.split(".") if prefix else [], list(entry.layer)
        while True:
            places.setdefault(tuple(n_parts), ".".join(t_parts))
            if not (t_parts and n_parts and t_parts[-1] == str(n_parts[-1])):
                break
            t_parts, n_parts = t_parts[:-1], n_parts[:-1]
    others = [(p, m) for p, m in side.modules.items() if isinstance(m, nnx.Dropout)]
    for path, obj in [*others, *side.statics]:
        if not path or path[:-1] not in places:
            continue
        parent = places[path[:-1]]
        torch_path = f"{parent}.{path[-1]}" if parent else str(path[-1])
        torch_obj = _torch_child(torch_module, torch_path)
        if torch_obj is not None:
            found += checks.check_activation(torch_obj, obj, torch_path, layers.path_name(path))
    return found


def _enforce(where: str, wmap: WeightMap, strict: bool, *, warn_notes: bool = True) -> None:
    """Raises (strict) or warns about unmatched tensors; warns about the settings."""
    if not wmap.complete:
        fix = (
            "Build the nnx model with the torch model's attribute names (a list of layers as "
            "nnx.List or nnx.Sequential), or map torch names to the nnx names above with "
            "rename=[(pattern, replacement), ...] or a callable (None leaves a tensor out)"
        )
        settings = "".join(f"\n  setting: {note}" for note in wmap.notes)
        if strict:
            raise ValueError(
                f"{where}: the torch and nnx weights do not match, nothing was copied.\n"
                f"{wmap.problems()}{settings}\n{fix}; strict=False copies what matches."
            )
        warnings.warn(
            f"{where}: copied what matches (strict=False); not copied:\n{wmap.problems()}",
            UnmatchedWeightsWarning,
            stacklevel=3,
        )
    if warn_notes:
        for note in wmap.notes:
            warnings.warn(f"{where}: {note}", PortingWarning, stacklevel=3)


# --------------------------------------------------------------------------- conversions


def _host(x: Any) -> Any:
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


def _value(x: Any) -> Any:
    return x[...] if isinstance(x, nnx.Variable) else x


def weight_map(
    torch_module: TorchSource, nnx_module: nnx.Module, *, rename: Rename = None
) -> WeightMap:
    """How the torch tensors and the nnx variables correspond, without copying anything.

    Args:
      torch_module: a ``torch.nn.Module`` (its ``state_dict``: parameters and persistent
        buffers) or a ``state_dict``.
      nnx_module: any ``flax.nnx`` module (concrete or abstract).
      rename: torch name -> nnx name, as regex pairs ``[(pattern, replacement), ...]``
        or a callable (``None`` leaves a tensor out); see the module docstring.

    Returns:
      A :class:`WeightMap`; ``print`` it for the table, ``.complete`` says whether
      :func:`to_nnx` would copy everything.

    Example:
      >>> import torch
      >>> from flax import nnx
      >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
      >>> twin = nnx.Sequential(
      ...     nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(4, 2, rngs=nnx.Rngs(0))
      ... )
      >>> for torch_name, nnx_name in weight_map(model, twin).matched.items():
      ...     print(torch_name, "->", nnx_name)
      0.weight -> layers.0.weight
      0.bias -> layers.0.bias
      2.weight -> layers.2.weight
      2.bias -> layers.2.bias
    """
    return _map(torch_module, nnx_module, rename, where="weight_map")[0]


def to_nnx(
    torch_module: TorchSource,
    nnx_module: NnxModule,
    *,
    rename: Rename = None,
    strict: bool = True,
) -> NnxModule:
    """Copies the weights of ``torch_module`` (parameters and buffers) into ``nnx_module``.

    In place; values are cast to the nnx variables' dtypes (batch statistics to the
    BatchNorm's ``param_dtype``). ``nnx_module`` may be abstract (``nnx.eval_shape``): its
    variables are then created by the copy and never drawn at random. Given a module,
    the configurations of the matched layers are compared and every setting that
    differs is a :class:`PortingWarning`.

    Args:
      torch_module: the source, a ``torch.nn.Module`` or a ``state_dict``.
      nnx_module: the destination, any ``flax.nnx`` module; its own state says which
        torch tensors it needs (see the module docstring for the layer table).
      rename: torch name -> nnx name, as regex pairs ``[(pattern, replacement), ...]``
        or a callable (``None`` leaves a tensor out).
      strict: if True (default), any tensor without a twin, or with another shape, is a
        ``ValueError`` and nothing is copied; if False, what matches is copied and the
        rest is an :class:`UnmatchedWeightsWarning`.

    Returns:
      ``nnx_module``, for chaining.

    Raises:
      ValueError: (strict) listing each unmatched tensor with its shape and the nearest
        name on the other side, and each shape that differs.

    Example:
      >>> import torch
      >>> from flax import nnx
      >>> from jaxreg.nn import Linear
      >>> from torch_ref.nn import Linear as TorchLinear
      >>> layer = to_nnx(TorchLinear(3, 2), Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> print(layer.kernel.shape, layer.kernel.dtype)
      (3, 2) float32
      >>> emb = to_nnx(torch.nn.Embedding(5, 3), nnx.Embed(5, 3, rngs=nnx.Rngs(0)))
      >>> print(emb.embedding.shape)
      (5, 3)
    """
    wmap, side, tensors, _, copies = _map(torch_module, nnx_module, rename, where="to_nnx")
    _enforce("to_nnx", wmap, strict)
    flat = []
    for name, entry in copies:
        values = entry.to_nnx(_host(tensors[name]))
        dtypes = entry.dtypes or tuple(side.variables[p].dtype for p in entry.paths)
        for path, value, dtype in zip(entry.paths, values, dtypes, strict=True):
            array = jnp.array(value, dtype=dtype or side.variables[path].dtype)
            flat.append((path, side.variables[path].replace(array)))
    nnx.update(nnx_module, nnx.from_flat_state(flat))
    return nnx_module


def from_nnx(
    nnx_module: nnx.Module,
    torch_module: TorchModule,
    *,
    rename: Rename = None,
    strict: bool = True,
) -> TorchModule:
    """Copies the variables of ``nnx_module`` into ``torch_module``'s parameters and buffers.

    In place; values are cast to the torch tensors' dtypes and devices. torch's
    ``num_batches_tracked`` is left as it is. The inverse of :func:`to_nnx`: the round
    trips torch → nnx → torch and nnx → torch → nnx are exact (bitwise) when the dtypes
    agree.

    Args:
      nnx_module: the source.
      torch_module: the destination, a ``torch.nn.Module`` or a ``state_dict`` of
        tensors or NumPy arrays (written in place).
      rename: torch name -> nnx name (applied to the torch names, as in :func:`to_nnx`).
      strict: as in :func:`to_nnx`.

    Returns:
      ``torch_module``, for chaining.

    Raises:
      ValueError: (strict) as in :func:`to_nnx`.
    """
    wmap, side, tensors, _, copies = _map(torch_module, nnx_module, rename, where="from_nnx")
    _enforce("from_nnx", wmap, strict)
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
    return torch_module


def state_dict_from_nnx(
    nnx_module: nnx.Module,
    *,
    state: nnx.State | None = None,
    torch_module: TorchSource | None = None,
    rename: Rename = None,
    strict: bool = True,
) -> dict[str, jax.Array]:
    """The variables of ``nnx_module`` as torch-layout JAX arrays under torch names.

    Pure (nothing is copied into anything) and traceable.

    Args:
      nnx_module: gives the structure, names and layouts.
      state: values to use instead of the module's, e.g. the ``nnx.State`` of gradients
        from ``nnx.grad``; only the tensors whose variables it holds are returned.
      torch_module: a torch module or ``state_dict`` whose names to use (matched as in
        :func:`to_nnx`, e.g. ``0.weight`` for ``layers.0.weight``); without it, the names
        are the nnx paths written as torch writes them.
      rename: with ``torch_module``, as in :func:`to_nnx`.
      strict: with ``torch_module``, as in :func:`to_nnx`.

    Returns:
      ``{torch name: array}`` in torch's layout (parameters and batch statistics).

    Example:
      >>> from flax import nnx
      >>> layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
      >>> print({k: v.shape for k, v in state_dict_from_nnx(layer).items()})
      {'weight': (2, 3), 'bias': (2,)}
    """
    side = _nnx_side(nnx_module)
    values: Mapping[Path, Any] = side.variables
    if state is not None:
        values = dict(nnx.to_flat_state(state))
    if torch_module is None:
        named = [(e.name, e) for e in side.entries.values() if not e.optional]
    else:
        wmap, _, _, _, named = _map(
            torch_module, nnx_module, rename, where="state_dict_from_nnx", notes=False
        )
        _enforce("state_dict_from_nnx", wmap, strict, warn_notes=False)
    return {
        name: entry.to_torch(*(_value(values[p]) for p in entry.paths))
        for name, entry in named
        if all(p in values for p in entry.paths)
    }


def nnx_params_from_state_dict(
    state_dict: Mapping[str, Any],
    nnx_module: nnx.Module,
    *,
    rename: Rename = None,
    strict: bool = True,
) -> nnx.State:
    """The ``nnx.Param`` state of ``nnx_module`` with values taken from torch-layout arrays.

    Pure: ``nnx_module`` is not changed, and the arrays keep their dtype (they may be
    traced JAX arrays). Use with ``nnx.split``/``nnx.merge`` or ``nnx.update``. Tensors
    of other nnx variables (BatchNorm's ``running_mean``...) may be present and are left
    out; they are not required.

    Args:
      state_dict: torch name -> array (NumPy, JAX or torch), in torch's layout, for every
        parameter of ``nnx_module``.
      nnx_module: gives the structure, names and shapes.
      rename: as in :func:`to_nnx`.
      strict: as in :func:`to_nnx`.

    Returns:
      An ``nnx.State`` of ``nnx.Param``, the structure of ``nnx.state(nnx_module, nnx.Param)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.nn import Linear
      >>> layer = Linear(3, 2, use_bias=False, rngs=nnx.Rngs(0))
      >>> params = nnx_params_from_state_dict({"weight": jnp.ones((2, 3))}, layer)
      >>> print(params["kernel"].shape)
      (3, 2)
    """
    wmap, side, _, _, copies = _map(
        state_dict,
        nnx_module,
        rename,
        where="nnx_params_from_state_dict",
        required=lambda v: isinstance(v, nnx.Param),
        notes=False,
    )
    _enforce("nnx_params_from_state_dict", wmap, strict, warn_notes=False)
    flat = []
    for name, entry in copies:
        variables = [side.variables[p] for p in entry.paths]
        if not all(isinstance(v, nnx.Param) for v in variables):
            continue
        host = _host(state_dict[name])
        if isinstance(host, np.ndarray):
            host = jnp.asarray(host)
        for path, variable, value in zip(entry.paths, variables, entry.to_nnx(host), strict=True):
            flat.append((path, variable.replace(value)))
    return nnx.from_flat_state(flat)


def attention_in_input_dtype(
    query: jax.Array, key: jax.Array, value: jax.Array, **kwargs: Any
) -> jax.Array:
    """An ``attention_fn`` for ``nnx.MultiHeadAttention`` whose softmax runs in the inputs'
    dtype, as torch's does.

    flax's default (``nnx.dot_product_attention`` → ``jax.nn.dot_product_attention``)
    computes the softmax in float32 even for float64 inputs, so a float64 port is off by
    about 1e-7. This one uses flax's ``dot_product_attention_weights`` (softmax in the
    inputs' dtype; masks, dropout and ``sow_weights`` as flax's) and multiplies by the
    values; grouped key/value heads are repeated.

    Args:
      query: ``[batch..., q_length, heads, head_dim]``.
      key: ``[batch..., kv_length, kv_heads, head_dim]``.
      value: ``[batch..., kv_length, kv_heads, v_head_dim]``.
      **kwargs: what ``nnx.MultiHeadAttention`` passes (``mask``, ``dropout_rng``,
        ``dropout_rate``, ``deterministic``, ``dtype``, ``precision``, ``module``...).

    Returns:
      ``[batch..., q_length, heads, v_head_dim]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> attn = nnx.MultiHeadAttention(
      ...     2, 4, param_dtype=jnp.float64, attention_fn=attention_in_input_dtype,
      ...     decode=False, rngs=nnx.Rngs(0),
      ... )
      >>> print(attn(jnp.ones((1, 3, 4), jnp.float64)).dtype)
      float64
    """
    heads, kv_heads = query.shape[-2], key.shape[-2]
    if kv_heads != heads:
        key = jnp.repeat(key, heads // kv_heads, axis=-2)
        value = jnp.repeat(value, heads // kv_heads, axis=-2)
    weights = dot_product_attention_weights(query, key, **kwargs)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=kwargs.get("precision"))
