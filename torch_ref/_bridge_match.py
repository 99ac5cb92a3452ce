"""How :mod:`torch_ref.bridge` pairs the torch tensors with the nnx variables.

Both sides' names become trees of dotted names, matched by structure
(:func:`match`): equal names; two lists of different indices in order (torch's
``0, 2, 4`` against nnx's ``0, 1, 2``); a list against the one attribute that holds a
list (``nnx.Sequential``'s ``layers``). :func:`correspond` reads both sides, applies
``rename``, pairs them, and sorts the outcome into what copies, what is left on either
side, the shapes that differ and the tensors torch ties together; with a torch module it
also collects the settings that differ (:func:`config_notes`, the checks of
:mod:`torch_ref._bridge_checks` on each pair of layers found at the same place).
:class:`Names` writes the names of both sides into the errors and the table.

Private to the bridge (its names are public here so that :mod:`torch_ref.bridge`
imports them); :class:`torch_ref.bridge.WeightMap` is the public view of a
:class:`Pairing`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from flax import nnx

from torch_ref import _bridge_checks as checks
from torch_ref import _bridge_layers as layers
from torch_ref import _bridge_sides as sides

__all__ = ["Names", "Pairing", "config_notes", "correspond", "match", "nearest"]

Path = layers.Path
Shape = tuple[int, ...]


# --------------------------------------------------------------------------- name trees


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
        _match_trees(a, b, pairs)


def _match_trees(t: dict, n: dict, pairs: list[tuple[str, str]]) -> None:
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
                _match_trees(rest[holders[0]], other, pairs)
            else:
                _match_trees(other, rest[holders[0]], pairs)
            return


def match(torch_names: Sequence[str], nnx_names: Sequence[str]) -> list[tuple[str, str]]:
    """``(torch name, nnx name)`` pairs of two lists of dotted names, paired by structure."""
    pairs: list[tuple[str, str]] = []
    _match_trees(_tree(torch_names), _tree(nnx_names), pairs)
    return pairs


def nearest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to ``name`` (difflib's ratio), or None if there is none."""
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    return found[0] if found else None


# --------------------------------------------------------------------------- the texts


@dataclasses.dataclass
class Names:
    """The names and shapes of both sides, to write them into the errors and the table.

    Attributes:
      entries: nnx name (as torch writes it) -> its entry.
      renamed: torch name -> the name ``rename`` gave it.
      shapes: nnx variable path -> shape.
      torch_shapes: torch name -> shape.
      paired: torch name -> the nnx name it is paired with.
    """

    entries: dict[str, layers.Entry]
    renamed: dict[str, str]
    shapes: dict[Path, Shape]
    torch_shapes: dict[str, Shape]
    paired: dict[str, str]

    def _paths(self, entry: layers.Entry) -> str:
        return ", ".join(f"{'/'.join(map(str, p))} {self.shapes[p]}" for p in entry.paths)

    def _nnx_text(self, name: str) -> str:
        entry = self.entries[name]
        return f"{name} {entry.shape} [nnx {self._paths(entry)}]"

    def _torch_text(self, name: str, shape: Shape) -> str:
        renamed = self.renamed.get(name, name)
        alias = f" (renamed {renamed})" if renamed != name else ""
        return f"{name}{alias} {tuple(shape)}"

    def _tshape(self, name: str) -> Shape:
        return tuple(self.torch_shapes.get(name, ()))

    def problems(
        self,
        only_torch: dict[str, Shape],
        only_nnx: dict[str, Shape],
        shape_mismatch: dict[str, tuple[Shape, Shape]],
    ) -> str:
        """The unmatched and mis-shaped tensors, one per line with the nearest candidate."""
        lines = []
        original = {new: old for old, new in self.renamed.items()}
        nnx_names = list(only_nnx) or [n for n, e in self.entries.items() if e.paths]
        torch_names = [self.renamed[n] for n in only_torch] or list(original)
        if only_torch:
            lines.append(f"  only in torch ({len(only_torch)}):")
            for name, shape in only_torch.items():
                near = nearest(self.renamed[name], nnx_names)
                hint = f"; nearest in nnx: {self._nnx_text(near)}" if near else ""
                lines.append(f"    {self._torch_text(name, shape)}{hint}")
        if only_nnx:
            lines.append(f"  only in nnx ({len(only_nnx)}), named as torch would name them:")
            for name in only_nnx:
                near = nearest(name, torch_names)
                hint = ""
                if near is not None:
                    near = original[near]
                    hint = f"; nearest in torch: {self._torch_text(near, self._tshape(near))}"
                lines.append(f"    {self._nnx_text(name)}{hint}")
        if shape_mismatch:
            lines.append(f"  shapes differ ({len(shape_mismatch)}):")
            for name, (torch_shape, nnx_shape) in shape_mismatch.items():
                entry = self.entries[self.paired[name]]
                other = "" if entry.name == self.renamed[name] else f" {entry.name}"
                lines.append(
                    f"    {name}: torch {tuple(torch_shape)}, nnx{other} {nnx_shape} "
                    f"[{self._paths(entry)}]"
                )
        return "\n".join(lines)

    def table(
        self,
        matched: dict[str, str],
        tied: dict[str, str],
        skipped: list[str],
        notes: list[str],
        problems: str | None,
    ) -> str:
        """Each copy with its nnx variables and layout, then the ties, the tensors left
        out, ``problems`` (None when there are none) and the settings."""
        lines = [f"{len(matched)} tensors copy:"]
        for torch_name, nnx_name in matched.items():
            entry = self.entries[nnx_name]
            layout = f": {entry.layout}" if entry.layout else ""
            lines.append(
                f"  {self._torch_text(torch_name, self._tshape(torch_name))} <- "
                f"{entry.kind} {self._paths(entry)}{layout}"
            )
        lines += [f"  {alias} is tied to {name} in torch" for alias, name in tied.items()]
        lines += [f"  {name} left out by `rename`" for name in skipped]
        if problems is not None:
            lines.append(problems)
        lines += [f"  setting: {note}" for note in notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- pairing


@dataclasses.dataclass
class Pairing:
    """What :func:`correspond` finds: the fields of :class:`torch_ref.bridge.WeightMap`
    (``matched`` ... ``notes``, ``names``), and what the copies need."""

    matched: dict[str, str]
    only_torch: dict[str, Shape]
    only_nnx: dict[str, Shape]
    shape_mismatch: dict[str, tuple[Shape, Shape]]
    tied: dict[str, str]
    skipped: list[str]
    notes: list[str]
    names: Names
    side: sides.NnxSide
    tensors: dict[str, Any]
    copies: list[tuple[str, layers.Entry]]


def correspond(
    torch_source: sides.TorchSource,
    nnx_module: nnx.Module,
    rename: sides.Rename,
    *,
    where: str,
    required: Callable[[nnx.Variable], bool],
    notes: bool,
) -> Pairing:
    """Both sides read, renamed and paired; ``required`` says which nnx variables must
    have a torch twin; ``notes``: compare the settings of the paired layers."""
    side = sides.nnx_side(nnx_module)
    tensors, torch_module = sides.torch_tensors(torch_source, where)
    apply = sides.renamer(rename)
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
    pairs_by_name = match(list(owner), list(side.entries))
    position = {name: i for i, name in enumerate(tensors)}
    pairs = sorted(
        ((owner[t], side.entries[n]) for t, n in pairs_by_name), key=lambda p: position[p[0]]
    )
    paired_torch = {t for t, _ in pairs}
    paired_nnx = {e.name for _, e in pairs}

    storages: dict[tuple, str] = {}
    group: dict[str, str] = {}  # torch name -> the first name of its memory
    for name in tensors:
        key = sides.storage(tensors[name])
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
    mismatch: dict[str, tuple[Shape, Shape]] = {}
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
        found_notes = config_notes(torch_module, side, pairs)
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
    return Pairing(
        matched=matched,
        only_torch=only_torch,
        only_nnx=only_nnx,
        shape_mismatch=mismatch,
        tied=tied,
        skipped=skipped,
        notes=checks.messages(found_notes),
        names=Names(
            entries=side.entries,
            renamed=renamed,
            shapes=shapes,
            torch_shapes=torch_shapes,
            paired={t: e.name for t, e in pairs},
        ),
        side=side,
        tensors=tensors,
        copies=copies,
    )


def config_notes(
    torch_module: torch.nn.Module, side: sides.NnxSide, pairs: list[tuple[str, layers.Entry]]
) -> list[checks.Note]:
    """The settings that differ between the layers paired through their tensors, and
    between the dropout modules and GELU activations found at the same places."""
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
        torch_layer = sides.torch_child(torch_module, prefix)
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
        torch_obj = sides.torch_child(torch_module, torch_path)
        if torch_obj is not None:
            found += checks.check_activation(torch_obj, obj, torch_path, layers.path_name(path))
    return found
