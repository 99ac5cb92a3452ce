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
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights

from torch_ref import _bridge_layers as layers
from torch_ref import _bridge_match as matching
from torch_ref import _bridge_sides as sides

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
Rename = sides.Rename  # regex pairs, a callable torch name -> nnx name, or None
TorchSource = sides.TorchSource
NnxModule = TypeVar("NnxModule", bound=nnx.Module)
TorchModule = TypeVar("TorchModule", bound=TorchSource)


class PortingWarning(UserWarning):
    """A setting differs between a torch layer and its nnx twin, so the same weights give
    different results: the message names the layers, both values and the change to make."""


class UnmatchedWeightsWarning(PortingWarning):
    """``strict=False`` left tensors uncopied: the message lists them as the error would."""


# --------------------------------------------------------------------------- the map


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
    _names: matching.Names = dataclasses.field(repr=False)

    @property
    def complete(self) -> bool:
        """True when every tensor on both sides has its twin with the same shape."""
        return not (self.only_torch or self.only_nnx or self.shape_mismatch)

    def problems(self) -> str:
        """The unmatched and mis-shaped tensors, one per line with the nearest candidate."""
        return self._names.problems(self.only_torch, self.only_nnx, self.shape_mismatch)

    def __str__(self) -> str:
        problems = None if self.complete else self.problems()
        return self._names.table(self.matched, self.tied, self.skipped, self.notes, problems)


def _map(
    torch_source: TorchSource,
    nnx_module: nnx.Module,
    rename: Rename,
    *,
    where: str,
    required: Callable[[nnx.Variable], bool] = lambda v: True,
    notes: bool = True,
) -> tuple[WeightMap, matching.Pairing]:
    found = matching.correspond(
        torch_source, nnx_module, rename, where=where, required=required, notes=notes
    )
    wmap = WeightMap(
        matched=found.matched,
        only_torch=found.only_torch,
        only_nnx=found.only_nnx,
        shape_mismatch=found.shape_mismatch,
        tied=found.tied,
        skipped=found.skipped,
        notes=found.notes,
        _names=found.names,
    )
    return wmap, found


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
    wmap, found = _map(torch_module, nnx_module, rename, where="to_nnx")
    _enforce("to_nnx", wmap, strict)
    nnx.update(nnx_module, sides.to_nnx_state(found.side, found.tensors, found.copies))
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
    wmap, found = _map(torch_module, nnx_module, rename, where="from_nnx")
    _enforce("from_nnx", wmap, strict)
    sides.write_torch(found.side, found.tensors, found.copies)
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
    side = sides.nnx_side(nnx_module)
    values: Mapping[Path, Any] = side.variables
    if state is not None:
        values = dict(nnx.to_flat_state(state))
    if torch_module is None:
        named = [(e.name, e) for e in side.entries.values() if not e.optional]
    else:
        wmap, found = _map(
            torch_module, nnx_module, rename, where="state_dict_from_nnx", notes=False
        )
        named = found.copies
        _enforce("state_dict_from_nnx", wmap, strict, warn_notes=False)
    return {
        name: entry.to_torch(*(sides.variable_value(values[p]) for p in entry.paths))
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
    wmap, found = _map(
        state_dict,
        nnx_module,
        rename,
        where="nnx_params_from_state_dict",
        required=lambda v: isinstance(v, nnx.Param),
        notes=False,
    )
    _enforce("nnx_params_from_state_dict", wmap, strict, warn_notes=False)
    return sides.param_state(found.side, state_dict, found.copies)


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
