"""The layer table of :mod:`torch_ref.bridge`: the torch tensors an nnx layer's variables make.

Each flax.nnx layer is read from its own state (as HuggingFace's PT<->Flax conversion is
guided by the target's initialised state) and becomes a list of :class:`Entry`: one
torch tensor, under its name inside the torch twin (``weight``, ``running_mean``,
``in_proj_weight``, ``out_proj.weight``), with the nnx variables it is made of and the
two exact conversions between the layouts (transposes, reshapes, splits, flips: no
arithmetic, so round trips are bitwise). The table itself is in
:mod:`torch_ref.bridge`'s docstring.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["Entry", "Path", "layer_entries", "loose_entries", "path_name"]

Path = tuple[Any, ...]


def path_name(path: Path) -> str:
    """The dotted torch-style name of an nnx path: ``('layers', 0, 'w')`` -> ``layers.0.w``."""
    return ".".join(str(p) for p in path)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One torch tensor and the nnx variables it is made of.

    Attributes:
      name: its name in the nnx module, written as torch writes it: the nnx layer's path,
        dotted, then ``local`` (``blocks.0.attn.in_proj_weight``).
      layer: the nnx path of the layer.
      local: the torch name inside the layer (``weight``, ``out_proj.weight``).
      paths: the nnx variable paths (several for a packed attention projection; none for a
        torch tensor the nnx layer has no use for, e.g. ``num_batches_tracked``).
      shape: the torch shape.
      to_torch: nnx values (in the order of ``paths``) -> the torch-layout array.
      to_nnx: torch-layout array -> the nnx values.
      kind: the nnx layer's class, e.g. ``nnx.Linear``.
      layout: how the layout changes, in words (empty: unchanged).
      dtypes: the nnx dtypes the values take (``None``: the variables' own).
    """

    name: str
    layer: Path
    local: str
    paths: tuple[Path, ...]
    shape: tuple[int, ...]
    to_torch: Callable[..., Any]
    to_nnx: Callable[[Any], tuple[Any, ...]]
    kind: str
    layout: str = ""
    dtypes: tuple[Any, ...] | None = None

    @property
    def optional(self) -> bool:
        """True for a torch tensor without nnx variables (never copied, never missing)."""
        return not self.paths


def _kind(module: Any) -> str:
    if module is None:
        return "container"
    cls = type(module)
    if cls.__module__.startswith("flax."):
        return f"nnx.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _permuted(shape: tuple[int, ...], order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[i] for i in order)


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(order))


def _flip(x: Any, n: int) -> Any:
    """``x`` reversed along its first ``n`` axes (exact; NumPy, JAX and traced arrays)."""
    return x if n == 0 else x[(slice(None, None, -1),) * n]


def _make(
    layer: Path,
    kind: str,
    local: str,
    path: Path,
    shape: tuple[int, ...],
    *,
    order: tuple[int, ...] | None = None,
    flip: int = 0,
    layout: str = "",
    dtype: Any = None,
) -> Entry:
    """An entry for one variable: the torch array is the nnx one with its first ``flip``
    axes reversed, then transposed by ``order`` (``None``: as is)."""
    if order is None:
        order = tuple(range(len(shape)))
    inverse = _inverse(order)
    same = order == inverse == tuple(range(len(shape)))

    def to_torch(x: Any) -> Any:
        x = _flip(x, flip)
        return x if same else x.transpose(order)

    def to_nnx(w: Any) -> tuple[Any, ...]:
        return (_flip(w if same else w.transpose(inverse), flip),)

    return Entry(
        name=path_name((*layer, local)),
        layer=layer,
        local=local,
        paths=(path,),
        shape=_permuted(tuple(shape), order),
        to_torch=to_torch,
        to_nnx=to_nnx,
        kind=kind,
        layout=layout,
        dtypes=None if dtype is None else (dtype,),
    )


#: nnx (*window, in, out) -> torch (out, in, *window); for 2-D a plain transpose.
def _conv_order(ndim: int) -> tuple[int, ...]:
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def _simple(
    layer: Path, module: Any, variables: Mapping[str, Any], names: Mapping[str, str]
) -> list[Entry]:
    """Same-layout entries ``torch name <- nnx name`` for the variables that exist."""
    kind = _kind(module)
    return [
        _make(layer, kind, torch_name, (*layer, nnx_name), variables[nnx_name].shape)
        for nnx_name, torch_name in names.items()
        if nnx_name in variables
    ]


def _linear(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry]:
    kind = _kind(module)
    entries = [
        _make(
            layer, kind, "weight", (*layer, "kernel"), variables["kernel"].shape,
            order=(1, 0), layout="transposed",
        )
    ]  # fmt: skip
    return entries + _simple(layer, module, variables, {"bias": "bias"})


def _conv(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry]:
    shape = variables["kernel"].shape
    kind = _kind(module)
    entries = [
        _make(
            layer, kind, "weight", (*layer, "kernel"), shape,
            order=_conv_order(len(shape)), layout="(*k, in, out) -> (out, in, *k)",
        )
    ]  # fmt: skip
    return entries + _simple(layer, module, variables, {"bias": "bias"})


def _conv_transpose(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry]:
    # torch's weight W (in, out, *k) is the kernel of the convolution whose gradient the
    # layer is. flax with transpose_kernel=True stores that kernel as (*k, out, in) and
    # flips it itself; without, it correlates with its kernel K (*k, in, out) as is, so
    # K[*s, i, o] = W[i, o, *reversed s].
    shape = variables["kernel"].shape
    n = len(shape) - 2
    kind = _kind(module)
    if getattr(module, "transpose_kernel", False):
        weight = _make(
            layer, kind, "weight", (*layer, "kernel"), shape,
            order=(n + 1, n, *range(n)), layout="(*k, out, in) -> (in, out, *k)",
        )  # fmt: skip
    else:
        weight = _make(
            layer, kind, "weight", (*layer, "kernel"), shape,
            order=(n, n + 1, *range(n)), flip=n,
            layout="(*k, in, out) -> (in, out, *k), window flipped",
        )  # fmt: skip
    return [weight, *_simple(layer, module, variables, {"bias": "bias"})]


def _norm(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry]:
    return _simple(layer, module, variables, {"scale": "weight", "bias": "bias"})


def _nothing(*values: Any) -> None:
    return None


def _no_values(w: Any) -> tuple[Any, ...]:
    return ()


def _batch_norm(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry]:
    # flax creates the statistics in float32 whatever `param_dtype`; they take the
    # parameters' dtype here, so a float64 port keeps float64 statistics.
    kind = _kind(module)
    dtype = getattr(module, "param_dtype", None)
    entries = _norm(layer, module, variables)
    for nnx_name, torch_name in (("mean", "running_mean"), ("var", "running_var")):
        if nnx_name in variables:
            shape = variables[nnx_name].shape
            entries.append(_make(layer, kind, torch_name, (*layer, nnx_name), shape, dtype=dtype))
    entries.append(
        Entry(
            name=path_name((*layer, "num_batches_tracked")),
            layer=layer,
            local="num_batches_tracked",
            paths=(),
            shape=(),
            to_torch=_nothing,
            to_nnx=_no_values,
            kind=kind,
            layout="torch only: not copied (kept in torch)",
        )
    )
    return entries


def _attention(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry] | None:
    names = ("query", "key", "value", "out")
    if any(f"{n}.kernel" not in variables for n in names):
        return None
    q, k, v, o = (variables[f"{n}.kernel"] for n in names)
    if not tuple(q.shape[1:]) == tuple(k.shape[1:]) == tuple(v.shape[1:]) == tuple(o.shape[:2]):
        return None  # grouped key/value heads: torch's MultiheadAttention has none
    kind = _kind(module)
    heads, head_dim, out = o.shape
    width = heads * head_dim

    def to_rows(w: Any) -> Any:  # (in, h, d) -> (h·d, in)
        return w.reshape(w.shape[0], width).T

    def from_rows(w: Any, n_in: int) -> Any:  # (h·d, in) -> (in, h, d)
        return w.T.reshape(n_in, heads, head_dim)

    projections = [(*layer, n, "kernel") for n in names[:3]]
    entries = []
    # torch packs q, k and v into one matrix exactly when kdim == vdim == embed_dim
    if k.shape[0] == q.shape[0] and v.shape[0] == q.shape[0]:
        n_in = q.shape[0]
        entries.append(
            Entry(
                name=path_name((*layer, "in_proj_weight")),
                layer=layer,
                local="in_proj_weight",
                paths=tuple(projections),
                shape=(3 * width, n_in),
                to_torch=lambda *ws: jnp.concatenate([to_rows(w) for w in ws], axis=0),
                to_nnx=lambda w: tuple(
                    from_rows(w[i * width : (i + 1) * width], n_in) for i in range(3)
                ),
                kind=kind,
                layout="q, k, v kernels (in, h, d) -> stacked rows (3·h·d, in)",
            )
        )
    else:
        for letter, path, var in zip("qkv", projections, (q, k, v), strict=True):
            n_in = var.shape[0]
            entries.append(
                Entry(
                    name=path_name((*layer, f"{letter}_proj_weight")),
                    layer=layer,
                    local=f"{letter}_proj_weight",
                    paths=(path,),
                    shape=(width, n_in),
                    to_torch=to_rows,
                    to_nnx=functools.partial(lambda w, n: (from_rows(w, n),), n=n_in),
                    kind=kind,
                    layout="(in, h, d) -> (h·d, in)",
                )
            )
    if all(f"{n}.bias" in variables for n in names[:3]):
        entries.append(
            Entry(
                name=path_name((*layer, "in_proj_bias")),
                layer=layer,
                local="in_proj_bias",
                paths=tuple((*layer, n, "bias") for n in names[:3]),
                shape=(3 * width,),
                to_torch=lambda *bs: jnp.concatenate([b.reshape(width) for b in bs]),
                to_nnx=lambda b: tuple(
                    b[i * width : (i + 1) * width].reshape(heads, head_dim) for i in range(3)
                ),
                kind=kind,
                layout="q, k, v biases (h, d) -> stacked (3·h·d,)",
            )
        )
    entries.append(
        Entry(
            name=path_name((*layer, "out_proj.weight")),
            layer=layer,
            local="out_proj.weight",
            paths=((*layer, "out", "kernel"),),
            shape=(out, width),
            to_torch=lambda w: w.reshape(width, out).T,
            to_nnx=lambda w: (w.T.reshape(heads, head_dim, out),),
            kind=kind,
            layout="(h, d, out) -> (out, h·d)",
        )
    )
    if "out.bias" in variables:
        entries.append(
            _make(
                layer, kind, "out_proj.bias", (*layer, "out", "bias"), variables["out.bias"].shape
            )
        )
    return entries


#: (nnx class, entry builder), the first that the module is an instance of wins.
_LAYERS: tuple[tuple[type, Callable[..., list[Entry] | None]], ...] = (
    (nnx.MultiHeadAttention, _attention),
    (nnx.ConvTranspose, _conv_transpose),
    (nnx.Conv, _conv),
    (nnx.Linear, _linear),
    (nnx.Embed, lambda layer, m, v: _simple(layer, m, v, {"embedding": "weight"})),
    (nnx.BatchNorm, _batch_norm),
    (nnx.LayerNorm, _norm),
    (nnx.RMSNorm, _norm),
    (nnx.GroupNorm, _norm),
)


def layer_entries(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry] | None:
    """The entries of a flax layer, or ``None`` if ``module`` is not one of the table's.

    Args:
      layer: the module's nnx path.
      module: the nnx module (concrete or abstract).
      variables: its Param/BatchStat variables by dotted path inside it (``kernel``,
        ``query.kernel``).

    Returns:
      The entries; they use exactly the variables their ``paths`` name.
    """
    for cls, build in _LAYERS:
        if isinstance(module, cls):
            return build(layer, module, variables)
    return None


#: generic renames of a variable of any other module (HuggingFace's PT<->Flax rules)
_GENERIC_NAMES = {"embedding": "weight", "scale": "weight"}
_GENERIC_STATS = {"mean": "running_mean", "var": "running_var"}


def loose_entries(layer: Path, module: Any, variables: Mapping[str, Any]) -> list[Entry]:
    """The entries of the variables a module holds directly, for a module not in the table
    (``jaxreg.nn.Linear``, a user's module): ``kernel`` -> ``weight`` (2-D transposed, more
    axes as a convolution), ``embedding``/``scale`` -> ``weight``, batch-stat
    ``mean``/``var`` -> ``running_mean``/``running_var``, any other name kept as is."""
    kind = _kind(module)
    entries = []
    # weights before biases, as torch modules register them
    first = ("kernel", "embedding", "scale")
    for name in sorted(variables, key=lambda n: n not in first):
        var = variables[name]
        shape = tuple(var.shape)
        if name == "kernel" and len(shape) >= 2:
            order = _conv_order(len(shape))
            layout = "transposed" if len(shape) == 2 else "(*k, in, out) -> (out, in, *k)"
            entries.append(
                _make(layer, kind, "weight", (*layer, name), shape, order=order, layout=layout)
            )
            continue
        if isinstance(var, nnx.BatchStat) and name in _GENERIC_STATS:
            torch_name = _GENERIC_STATS[name]
        else:
            torch_name = _GENERIC_NAMES.get(name, "weight" if name == "kernel" else name)
        entries.append(_make(layer, kind, torch_name, (*layer, name), shape))
    return entries
