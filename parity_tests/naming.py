"""Which nnx parameter (and which nnx submodule) is which torch parameter (and submodule).

The model comparisons (:mod:`parity_tests.models`, :mod:`parity_tests.training`) name
every gradient, parameter and layer by both its torch name and its nnx path. The
correspondence is pluggable, through ``param_map``:

- ``None``: the bridge's naming rule. The nnx path ``('a', 'b', 0, 'kernel')`` is the
  torch name ``a.b.0.weight``; the leaves ``kernel``, ``embedding`` (``nnx.Embed``) and
  ``scale`` (``nnx.LayerNorm``/``RMSNorm``) are torch's ``weight``, every other leaf
  keeps its name, and ``layers`` may be dropped (``nnx.Sequential``'s ``layers.0`` is
  ``torch.nn.Sequential``'s ``0``). A kernel changes layout: ``(*window, in, out)`` in
  nnx, ``(out, in, *window)`` in torch.
- a mapping ``{torch name: nnx path}`` (``"a.b.kernel"`` or ``"a/b/kernel"``) for the
  names the rule does not find; the rest still follow the rule.
- a callable ``(state_dict, nnx_module) -> nnx.State`` (or a mapping path -> array),
  such as the weight bridge's state-dict converter: it receives torch-layout NumPy
  arrays under torch's names (parameters and buffers) and returns them in the nnx
  module's structure and layout. Gradients and parameters are sent through it, so
  every conversion the bridge knows (packed attention projections, reshapes,
  renames) is honoured. Which torch names feed which nnx leaf is found by sending
  arrays filled with each name's number through it once.

Strict: a parameter on one side only, or a shape that does not match, raises a
``ValueError`` listing each with its shape and the nearest name on the other side.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np
import torch
from flax import nnx

from parity_tests.errors import LeafError, Tolerance, is_floating, leaf_error

__all__ = ["ParamMap", "ParamMapping", "ParamPair", "module_pairs", "nnx_key", "path_str"]

Path = tuple[Any, ...]
#: ``None`` (the naming rule), ``{torch name: nnx path}``, or a converter (module doc).
ParamMap = Union[None, Mapping[str, str], Callable[..., Any]]  # noqa: UP007

#: nnx leaf names that are torch's ``weight`` (Linear/Conv, Embed, LayerNorm/RMSNorm).
_WEIGHT_LEAVES = {"kernel": "weight", "embedding": "weight", "scale": "weight"}


def path_str(path: Path) -> str:
    """An nnx path as the bridge writes it: ``blocks/0/kernel``."""
    return "/".join(str(p) for p in path)


def nnx_key(path: Path | str) -> str:
    """A canonical key for an nnx path, tuple or string (``a/0/b``, ``a.0.b``): ``a.0.b``."""
    if isinstance(path, str):
        return path.replace("/", ".")
    return ".".join(str(p) for p in path)


def _module_names(parents: list[str]) -> list[str]:
    """The torch module names the naming rule allows for an nnx module path."""
    names = [".".join(parents)]
    stripped = [p for p in parents if p != "layers"]  # nnx.Sequential's `layers`
    if stripped != parents:
        names.append(".".join(stripped))
    return names


def _rule_names(path: Path) -> list[str]:
    """The torch names the naming rule allows for an nnx parameter path, preferred first."""
    *parents, leaf = (str(p) for p in path)
    leaf = _WEIGHT_LEAVES.get(leaf, leaf)
    return [f"{m}.{leaf}" if m else leaf for m in _module_names(parents)]


def _to_torch_order(path: Path, ndim: int) -> tuple[int, ...] | None:
    """The axis permutation from the nnx layout to torch's (kernels only)."""
    if not path or str(path[-1]) != "kernel" or ndim < 2:
        return None
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def _nearest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    return f" (nearest: {close[0]!r})" if close else ""


@dataclasses.dataclass(frozen=True)
class ParamPair:
    """One nnx parameter and the torch parameter(s) it comes from."""

    nnx_path: Path
    torch_names: tuple[str, ...]

    @property
    def label(self) -> str:
        """``torch name ↔ nnx/path`` (``?`` when the converter hides the source)."""
        return f"{', '.join(self.torch_names) or '?'} <-> {path_str(self.nnx_path)}"


def _as_flat(tree: Any) -> dict[str, tuple[Path, Any]]:
    """A converter's result (``nnx.State`` or mapping) as ``{key: (path, array)}``."""
    if isinstance(tree, nnx.State):
        items = nnx.to_flat_state(tree)
    elif isinstance(tree, Mapping):
        items = [
            (tuple(p.replace("/", ".").split(".")) if isinstance(p, str) else tuple(p), v)
            for p, v in tree.items()
        ]
    else:
        raise TypeError(
            f"param_map must return an nnx.State or a mapping path -> array, got {type(tree)}"
        )
    out = {}
    for path, value in items:
        value = value.get_value() if isinstance(value, nnx.Variable) else value
        out[nnx_key(path)] = (tuple(path), value)
    return out


def untied_state(torch_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``torch_model``'s parameters and buffers by name, each tensor once.

    Tensors torch ties together (a head sharing the embedding's weight) appear under
    every name in ``state_dict()``; only the first name is kept, as ``named_parameters()``
    does, so that a converter sees each tensor once.
    """
    seen: set[int] = set()
    state = {}
    for name, tensor in torch_model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            state[name] = tensor.detach()
    return state


class ParamMapping:
    """The correspondence between a torch module's and an nnx module's parameters.

    Args:
      torch_model: the torch module (its ``named_parameters`` and buffers).
      nnx_model: the nnx module (its ``nnx.Param`` leaves).
      param_map: see the module docstring.

    Raises:
      ValueError: listing every unmatched or mis-shaped parameter, on either side.
    """

    def __init__(self, torch_model: torch.nn.Module, nnx_model: nnx.Module, param_map: ParamMap):
        self._nnx_model = nnx_model
        self._converter = param_map if callable(param_map) else None
        torch_shapes = {n: tuple(p.shape) for n, p in torch_model.named_parameters()}
        nnx_params = {
            path: tuple(v.shape) for path, v in nnx.to_flat_state(nnx.state(nnx_model, nnx.Param))
        }
        if self._converter is not None:
            self.pairs = self._probe(torch_model, nnx_params)
            return
        renames = {nnx_key(v): k for k, v in (param_map or {}).items()}
        pairs, problems, used = [], [], set()
        for path, shape in nnx_params.items():
            if nnx_key(path) in renames:
                names = [renames[nnx_key(path)]]
            else:
                names = [n for n in _rule_names(path) if n in torch_shapes and n not in used]
            if not names or names[0] not in torch_shapes:
                unused = sorted(set(torch_shapes) - used)
                problems.append(
                    f"nnx parameter {path_str(path)} {shape} has no torch parameter "
                    f"(looked for {_rule_names(path)}){_nearest(_rule_names(path)[0], unused)}"
                )
                continue
            name = names[0]
            used.add(name)
            order = _to_torch_order(path, len(shape))
            expected = tuple(shape[i] for i in order) if order else shape
            if torch_shapes[name] != expected:
                problems.append(
                    f"torch parameter {name!r} {torch_shapes[name]} vs nnx parameter "
                    f"{path_str(path)} {shape} (torch layout {expected})"
                )
            pairs.append(ParamPair(path, (name,)))
        nnx_names = [_rule_names(p)[0] for p in nnx_params]
        for name in sorted(set(torch_shapes) - used):
            problems.append(
                f"torch parameter {name!r} {torch_shapes[name]} has no nnx parameter"
                f"{_nearest(name, nnx_names)}"
            )
        if problems:
            raise ValueError(
                "the torch and nnx parameters do not correspond:\n  "
                + "\n  ".join(problems)
                + "\nPass param_map={torch name: nnx path} for renamed parameters, or the "
                "bridge's converter (state_dict, nnx_module) -> nnx.State."
            )
        self.pairs = pairs

    def _probe(
        self, torch_model: torch.nn.Module, nnx_params: dict[Path, tuple]
    ) -> list[ParamPair]:
        """Pairs from a converter: arrays filled with each torch name's number go through
        it, and the numbers found in each nnx leaf name its sources."""
        state = untied_state(torch_model)
        names = list(state)
        codes = {n: np.full(tuple(state[n].shape), float(i + 1)) for i, n in enumerate(names)}
        converted = _as_flat(self._converter(codes, self._nnx_model))
        pairs, problems = [], []
        for path, shape in nnx_params.items():
            if nnx_key(path) not in converted:
                problems.append(f"the converter gives no value for nnx parameter {path_str(path)}")
                continue
            value = np.asarray(converted[nnx_key(path)][1], dtype=np.float64)
            if value.shape != shape:
                problems.append(
                    f"the converter gives shape {value.shape} for nnx parameter "
                    f"{path_str(path)} {shape}"
                )
            found = np.unique(value)
            sources = tuple(
                names[int(c) - 1] for c in found if c == int(c) and 1 <= c <= len(names)
            )
            pairs.append(ParamPair(path, sources if len(sources) == len(found) else ()))
        if problems:
            raise ValueError("param_map:\n  " + "\n  ".join(problems))
        return pairs

    def errors(
        self, jax_state: nnx.State, torch_arrays: Mapping[str, np.ndarray], tol: Tolerance
    ) -> tuple[LeafError, ...]:
        """Per-parameter errors of an nnx state (parameters or gradients) against the
        torch-layout arrays of the same quantity, one per paired parameter."""
        torch_by_path = self.to_nnx(torch_arrays)
        jax_by_path = {nnx_key(p): v for p, v in nnx.to_flat_state(jax_state)}
        return tuple(
            leaf_error(
                pair.label,
                np.asarray(jax_by_path[nnx_key(pair.nnx_path)]),
                torch_by_path[nnx_key(pair.nnx_path)],
                tol,
            )
            for pair in self.pairs
        )

    def to_nnx(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """torch-layout arrays under torch names -> nnx-layout arrays under :func:`nnx_key`.

        Only the paired parameters are returned. ``arrays`` holds what the converter
        needs: every parameter, and the buffers for a converter that copies them.
        """
        if self._converter is not None:
            converted = _as_flat(self._converter(dict(arrays), self._nnx_model))
            wanted = max(
                (a.dtype.itemsize for a in arrays.values() if is_floating(a.dtype)), default=0
            )
            out = {}
            for pair in self.pairs:
                value = np.asarray(converted[nnx_key(pair.nnx_path)][1])
                if is_floating(value.dtype) and value.dtype.itemsize < wanted:
                    raise ValueError(
                        f"param_map returned {value.dtype} for {path_str(pair.nnx_path)}: a "
                        "converter must keep the dtype of the arrays it is given (it gets "
                        "the harness's copy of the nnx module, cast to the compared dtype)"
                    )
                out[nnx_key(pair.nnx_path)] = value
            return out
        out = {}
        for pair in self.pairs:
            value = np.asarray(arrays[pair.torch_names[0]])
            order = _to_torch_order(pair.nnx_path, value.ndim)
            out[nnx_key(pair.nnx_path)] = (
                value if order is None else value.transpose(np.argsort(order))
            )
        return out


def _common_prefix(seqs: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix: list[str] = []
    for parts in zip(*seqs, strict=False):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return tuple(prefix)


def module_pairs(
    pairs: list[ParamPair], torch_modules: list[str], nnx_modules: list[str]
) -> dict[str, str]:
    """torch module name -> nnx module key (:func:`nnx_key`), for the layer comparison.

    Modules with parameters pair through their parameters (the common prefix of the
    nnx paths a torch module's parameters go to, and back); modules without pair by
    the naming rule; the roots pair; then parents of paired modules pair with each other
    while that is unambiguous.
    """
    torch_set, nnx_set = set(torch_modules), set(nnx_modules)
    result: dict[str, str] = {}
    taken: set[str] = set()

    def add(t: str, n: str) -> None:
        if t in torch_set and n in nnx_set and t not in result and n not in taken:
            result[t] = n
            taken.add(n)

    by_torch: dict[str, list[tuple[str, ...]]] = {}
    for pair in pairs:
        nnx_module = tuple(str(p) for p in pair.nnx_path[:-1])
        for name in pair.torch_names:
            by_torch.setdefault(name.rpartition(".")[0], []).append(nnx_module)
    for t in torch_modules:
        if t in by_torch:
            add(t, ".".join(_common_prefix(by_torch[t])))
    for n in nnx_modules:
        for candidate in _module_names(n.split(".")) if n else []:
            add(candidate, n)
    add("", "")
    changed = True
    while changed:
        changed = False
        proposals: dict[str, set[str]] = {}
        for t, n in result.items():
            if t and n:
                proposals.setdefault(t.rpartition(".")[0], set()).add(n.rpartition(".")[0])
        for t, ns in proposals.items():
            if len(ns) == 1 and t not in result and next(iter(ns)) not in taken:
                add(t, next(iter(ns)))
                changed = True
    return result
