"""The one mask resolver of jaxreg: which parameter leaves (or entries) a penalty or an
optimizer's regularizer applies to.

A ``mask`` is one of

- ``None``: every leaf;
- a pytree of Python bools matched to ``params`` *by path* (dict keys, sequence indices,
  attribute names), so a plain dict matches an ``nnx.State`` and ``nnx.Variable``
  wrappers are ignored on either side; a bool may stand for a whole subtree (a prefix,
  as in ``optax.add_decayed_weights``), and entries the params do not have are ignored
  (a mask built on the whole model serves ``nnx.Optimizer(..., wrt=nnx.Param)``);
- elementwise boolean arrays as leaves: an array leaf selects entries of its parameter
  and must broadcast to the parameter's shape; unselected entries count as zeros;
- a callable ``params -> mask`` (such as :func:`jaxreg.weights_only`);
- an ``nnx`` filter (a Variable type such as ``nnx.Param``, ``nnx.PathContains(...)``,
  ``nnx.Any/All/Not``, ``...``, a tag string, a ``(path, variable) -> bool`` function, or
  a tuple of those), applied with ``flax.nnx.filterlib.to_predicate`` to each leaf's
  path and Variable.

Python bools (and concrete 0-d arrays) stay static: an unselected leaf is never computed
on, so integer leaves (BatchNorm counters, RNG state) can be masked out; array leaves are
data, traced under ``jit`` like any other input.

``nnx.Optimizer`` passes Variables to ``tx.init`` but plain arrays to ``tx.update``. A
filter that looks at Variable types can only be evaluated where the Variables are: the
optimizers resolve it in ``init`` and keep the flags in their state as static data
(:class:`Remembered`, a pytree node without leaves), which ``update`` reads back. Without
Variables and without remembered flags, a type filter raises an error saying so.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx import filterlib

__all__ = [
    "Entry",
    "Remembered",
    "Selection",
    "remember",
    "resolve",
    "select",
    "value_of",
    "zero_unselected",
]

#: True/False (static: the whole leaf or nothing) or a boolean array of the leaf's shape.
Selection = bool | jax.Array

_MISSING = object()

_FIX = (
    "Build the mask with `jax.tree.map(lambda w: ..., params)`, or pass a callable such as "
    "`jaxreg.weights_only` or an nnx filter such as `nnx.PathContains('kernel')`."
)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Remembered:
    """The per-leaf flags of a Variable-type filter, resolved where the Variables were
    visible (``tx.init``), for the plain arrays ``tx.update`` sees; ``None`` when the mask
    needs nothing remembered. Static: part of the state's structure, never traced."""

    flags: tuple[bool, ...] | None = None


class Entry(NamedTuple):
    """One parameter leaf: where it is, its value (Variable unwrapped), its selection."""

    path: str
    value: Any
    selection: Selection


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def value_of(leaf: Any) -> Any:
    """``leaf`` with an ``nnx.Variable`` wrapper removed."""
    return leaf.get_value() if _is_variable(leaf) else leaf


def _raw_key(key: Any) -> Any:
    """A path entry as flax writes it: the dict key, sequence index or attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return key


def _flatten(tree: Any) -> list[tuple[tuple[Any, ...], Any]]:
    """``(path, leaf)`` pairs, Variables kept whole (their ``.value`` is not in the path)."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_variable)[0]
    return [(tuple(_raw_key(k) for k in path), leaf) for path, leaf in flat]


def _keys(path: tuple[Any, ...]) -> str:
    """``path`` written as indexing, e.g. ``['dense']['bias']``."""
    return "".join(f"[{k!r}]" for k in path) or "the root"


def _where(path: tuple[Any, ...]) -> str:
    return "params" + "".join(f"[{k!r}]" for k in path)


def _is_filter(mask: Any) -> bool:
    """Whether ``mask`` is an nnx filter rather than a mask tree or a ``params -> mask``."""
    if isinstance(mask, str | type) or mask is Ellipsis:
        return True
    if type(mask).__module__ == filterlib.__name__:
        return True
    if isinstance(mask, list | tuple):
        return bool(mask) and all(_is_filter(m) for m in mask)
    if callable(mask):
        try:
            params = inspect.signature(mask).parameters.values()
        except (TypeError, ValueError):
            return False
        positional = [
            p
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        return len(positional) == 2  # flax's predicate protocol: (path, variable) -> bool
    return False


def _needs_variables(predicate: Callable[..., Any]) -> bool:
    """Whether a flax predicate looks at the Variable (its type or tag), not just the path."""
    if isinstance(predicate, filterlib.OfType | filterlib.WithTag):
        return True
    if isinstance(predicate, filterlib.Any | filterlib.All):
        return any(map(_needs_variables, predicate.predicates))
    if isinstance(predicate, filterlib.Not):
        return _needs_variables(predicate.predicate)
    return False


def _filter_flags(
    flat: list[tuple[tuple[Any, ...], Any]],
    mask: Any,
    name: str,
    remembered: Remembered | None,
) -> tuple[bool, ...]:
    predicate = filterlib.to_predicate(tuple(mask) if isinstance(mask, list) else mask)
    if any(_is_variable(leaf) for _, leaf in flat) or not _needs_variables(predicate):
        return tuple(bool(predicate(path, leaf)) for path, leaf in flat)
    if remembered is not None and remembered.flags is not None:
        if len(remembered.flags) == len(flat):
            return remembered.flags
    raise ValueError(
        f"`{name}`={mask!r} selects by Variable type or tag, but the params are plain "
        f"arrays, not nnx Variables. Pass `nnx.state(model, ...)` (with its Variables), "
        f"let `tx.init` see them first (as `nnx.Optimizer` does), or use a path filter "
        f"such as `nnx.PathContains('kernel')`."
    )


def remember(params: Any, mask: Any, name: str = "mask") -> Remembered:
    """Checks ``mask`` against ``params`` (raising as :func:`resolve` does) and returns what
    ``update`` must remember: the flags of a Variable-type filter, else nothing."""
    entries = resolve(params, mask, name)
    if _is_filter(mask):
        predicate = filterlib.to_predicate(tuple(mask) if isinstance(mask, list) else mask)
        if _needs_variables(predicate):
            return Remembered(tuple(bool(e.selection) for e in entries))
    return Remembered()


def _selection(leaf: Any, value: Any, path: tuple[Any, ...], name: str) -> Selection:
    """A mask leaf as a static bool, or a boolean array broadcast to ``value``'s shape."""
    leaf = value_of(leaf)
    if isinstance(leaf, bool | np.bool_):
        return bool(leaf)
    if not isinstance(leaf, jax.Array | np.ndarray):
        raise TypeError(
            f"`{name}` leaf at {_keys(path)} must be a bool or a boolean array, "
            f"got {type(leaf).__name__}. {_FIX}"
        )
    if leaf.dtype != np.bool_:
        raise TypeError(
            f"`{name}` leaf at {_keys(path)} must be boolean, got dtype "
            f"{leaf.dtype}; compare it first, e.g. `m != 0`."
        )
    shape = jnp.shape(value)
    try:
        ok = jnp.broadcast_shapes(leaf.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"`{name}` leaf at {_keys(path)} has shape {leaf.shape}, which does "
            f"not broadcast to the parameter's shape {tuple(shape)}."
        )
    if leaf.ndim == 0 and not isinstance(leaf, jax.core.Tracer):
        return bool(leaf)
    return jnp.broadcast_to(jnp.asarray(leaf), shape)


def _lookup(table: dict[tuple[Any, ...], Any], path: tuple[Any, ...]) -> Any:
    """The mask entry of ``path``: its own, or the one of its longest prefix."""
    for end in range(len(path), -1, -1):
        found = table.get(path[:end], _MISSING)
        if found is not _MISSING:
            return found
    return _MISSING


def resolve(
    params: Any, mask: Any, name: str = "mask", remembered: Remembered | None = None
) -> list[Entry]:
    """Every leaf of ``params`` (in ``jax.tree.leaves`` order) with its selection.

    ``remembered`` (from :func:`remember` in ``init``) supplies the flags of a
    Variable-type filter when ``params`` are plain arrays.

    Raises:
      ValueError: naming the path of the first leaf that the mask has no entry for, or
        whose array does not broadcast to the parameter.
      TypeError: a mask leaf that is not a bool or a boolean array.
    """
    flat = _flatten(params)
    if mask is None:
        flags: tuple[Any, ...] = (True,) * len(flat)
    elif _is_filter(mask):
        flags = _filter_flags(flat, mask, name, remembered)
    else:
        if callable(mask):
            mask = mask(params)
        table = dict(_flatten(mask))
        flags = tuple(_lookup(table, path) for path, _ in flat)
        for (path, _), leaf in zip(flat, flags, strict=True):
            if leaf is _MISSING:
                raise ValueError(f"`{name}` has no entry for {_where(path)}. {_FIX}")
    return [
        Entry(_where(path), value_of(leaf), _selection(m, value_of(leaf), path, name))
        for (path, leaf), m in zip(flat, flags, strict=True)
    ]


def zero_unselected(selection: Selection, x: jax.Array) -> jax.Array:
    """``x`` with its unselected entries replaced by 0 (the first half of a double where)."""
    if isinstance(selection, bool):
        return x if selection else jnp.zeros_like(x)
    return jnp.where(selection, x, jnp.zeros_like(x))


def select(
    selection: Selection, fn: Callable[..., jax.Array], otherwise: jax.Array, *args: jax.Array
) -> jax.Array:
    """``fn(*args)`` where selected, ``otherwise`` elsewhere.

    A static selection evaluates one side only (``fn`` is not even traced for a False
    leaf). An array selection is a double where: ``fn`` sees the unselected entries of
    ``args`` as zeros, so a NaN there cannot reach the value or its gradient.
    """
    if selection is True:
        return fn(*args)
    if selection is False:
        return otherwise
    return jnp.where(selection, fn(*(zero_unselected(selection, a) for a in args)), otherwise)
