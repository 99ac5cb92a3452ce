"""The settings weights cannot carry: the configuration checks of :mod:`torch_ref.bridge`.

For each pair of layers the bridge matched (a torch module and an nnx module), and for
each pair of dropout modules and GELU activations found at the same place, the settings
that make the two compute different functions from the same weights, each as a
:class:`Note` naming the setting, both values and the change that makes them agree.
The convolutions' checks (padding above all) are in :mod:`torch_ref._bridge_conv_checks`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from torch_ref import _bridge_conv_checks as conv

__all__ = ["Note", "check_activation", "check_layer", "gelu_mode", "messages"]


@dataclasses.dataclass(frozen=True)
class Note:
    """A setting that differs between a torch layer and its nnx twin."""

    setting: str
    torch_path: str
    nnx_path: str
    detail: str
    fix: str


def messages(notes: Sequence[Note]) -> list[str]:
    """One line per distinct ``(setting, detail, fix)``, naming every layer it concerns."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for note in notes:
        where = f"`{note.torch_path or '<root>'}`"
        if note.torch_path != note.nnx_path:
            where = f"{where} (torch) / `{note.nnx_path or '<root>'}` (nnx)"
        key = (note.setting, note.detail, note.fix)
        if where not in groups.setdefault(key, []):
            groups[key].append(where)
    return [
        f"{setting} at {', '.join(wheres)}: {detail}; {fix}."
        for (setting, detail, fix), wheres in groups.items()
    ]


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)


def _presence(
    setting: str, torch_has: bool, nnx_has: bool, torch_arg: str, nnx_arg: str
) -> list[tuple[str, str, str]]:
    if torch_has == nnx_has:
        return []
    return [
        (
            setting,
            f"torch has {'a' if torch_has else 'no'} {setting}, nnx has "
            f"{'one' if nnx_has else 'none'}",
            f"build the nnx layer with {nnx_arg}={torch_has} (or torch with {torch_arg}={nnx_has})",
        )
    ]


def _fast_variance(name: str, nnx_module: Any) -> list[tuple[str, str, str]]:
    if not getattr(nnx_module, "use_fast_variance", False):
        return []
    return [
        (
            f"{name} variance formula",
            "nnx computes the variance as E[x²] - E[x]² (use_fast_variance=True), torch as "
            "E[(x - E[x])²]; they differ by rounding that grows with mean²/variance",
            f"build nnx.{name} with use_fast_variance=False",
        )
    ]


def _epsilon(name: str, torch_eps: float, nnx_eps: float) -> list[tuple[str, str, str]]:
    if _close(torch_eps, nnx_eps):
        return []
    return [
        (
            f"{name} epsilon",
            f"torch eps={torch_eps!r}, nnx epsilon={nnx_eps!r}",
            f"build nnx.{name} with epsilon={torch_eps!r}",
        )
    ]


def _axes(name: str, normalized_shape: Sequence[int], nnx_axes: Any) -> list[tuple[str, str, str]]:
    want = tuple(range(-len(normalized_shape), 0))
    got = (nnx_axes,) if isinstance(nnx_axes, int) else tuple(nnx_axes)
    if any(a >= 0 for a in got) or tuple(sorted(got)) == want:
        return []  # positive axes depend on the input's rank: nothing to compare
    return [
        (
            f"{name} axes",
            f"torch normalizes over the last {len(want)} axes (normalized_shape="
            f"{tuple(normalized_shape)}), nnx over reduction_axes={nnx_axes}",
            f"build nnx.{name} with reduction_axes={want} and feature_axes={want}",
        )
    ]


# --------------------------------------------------------------------------- layers


def _embed(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    found = []
    if torch_module.padding_idx is not None:
        found.append(
            (
                "Embedding padding_idx",
                f"torch padding_idx={torch_module.padding_idx} gets no gradient, nnx.Embed "
                "trains every row",
                "zero that row's gradient on the nnx side (or build torch with padding_idx=None)",
            )
        )
    if torch_module.max_norm is not None:
        found.append(
            (
                "Embedding max_norm",
                f"torch max_norm={torch_module.max_norm} renormalizes looked-up rows in place; "
                "nnx.Embed does not",
                "build torch with max_norm=None",
            )
        )
    if torch_module.scale_grad_by_freq:
        found.append(
            (
                "Embedding scale_grad_by_freq",
                "torch scales gradients by the inverse token frequency; nnx.Embed does not",
                "build torch with scale_grad_by_freq=False",
            )
        )
    return found


def _layer_norm(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    return [
        *_epsilon("LayerNorm", torch_module.eps, nnx_module.epsilon),
        *_axes("LayerNorm", torch_module.normalized_shape, nnx_module.reduction_axes),
        *_presence("scale", torch_module.weight is not None, nnx_module.scale is not None,
                   "elementwise_affine", "use_scale"),
        *_presence("bias", torch_module.bias is not None, nnx_module.bias is not None,
                   "bias", "use_bias"),
        *_fast_variance("LayerNorm", nnx_module),
    ]  # fmt: skip


def _rms_norm(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    found = []
    if torch_module.eps is None:
        # torch: the machine epsilon of the input's dtype, here taken as the weight's
        if torch_module.weight is not None:
            dtype = torch_module.weight.dtype
            eps, name = torch.finfo(dtype).eps, str(dtype).removeprefix("torch.")
        else:
            dtype = jnp.dtype(nnx_module.dtype or nnx_module.param_dtype)
            eps, name = float(jnp.finfo(dtype).eps), dtype.name
        if not _close(eps, nnx_module.epsilon):
            found.append(
                (
                    "RMSNorm epsilon",
                    f"torch eps=None is the machine epsilon of the input dtype ({eps!r} for "
                    f"{name}), nnx epsilon={nnx_module.epsilon!r}",
                    f"build nnx.RMSNorm with epsilon={eps!r} (jnp.finfo({name}).eps)",
                )
            )
    else:
        found += _epsilon("RMSNorm", torch_module.eps, nnx_module.epsilon)
    found += _axes("RMSNorm", torch_module.normalized_shape, nnx_module.reduction_axes)
    found += _presence(
        "scale", torch_module.weight is not None, nnx_module.scale is not None,
        "elementwise_affine", "use_scale",
    )  # fmt: skip
    return found


def _group_norm(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    found = []
    if torch_module.num_groups != nnx_module.num_groups:
        found.append(
            (
                "GroupNorm num_groups",
                f"torch num_groups={torch_module.num_groups}, nnx num_groups="
                f"{nnx_module.num_groups} (flax's default is 32)",
                f"build nnx.GroupNorm with num_groups={torch_module.num_groups}",
            )
        )
    return [
        *found,
        *_epsilon("GroupNorm", torch_module.eps, nnx_module.epsilon),
        *_presence("scale", torch_module.weight is not None, nnx_module.scale is not None,
                   "affine", "use_scale"),
        *_presence("bias", torch_module.bias is not None, nnx_module.bias is not None,
                   "affine", "use_bias"),
        *_fast_variance("GroupNorm", nnx_module),
    ]  # fmt: skip


def _batch_norm(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    found = list(_epsilon("BatchNorm", torch_module.eps, nnx_module.epsilon))
    momentum = torch_module.momentum
    if momentum is None:
        found.append(
            (
                "BatchNorm momentum",
                "torch momentum=None keeps a cumulative average (over num_batches_tracked); "
                "flax keeps an exponential one",
                "give torch a momentum m and build nnx.BatchNorm with momentum=1 - m",
            )
        )
    elif not _close(1.0 - momentum, nnx_module.momentum):
        found.append(
            (
                "BatchNorm momentum",
                f"torch momentum={momentum!r} weighs the new batch, nnx momentum="
                f"{nnx_module.momentum!r} the old average",
                f"build nnx.BatchNorm with momentum={1.0 - momentum!r} (1 - torch's)",
            )
        )
    if not torch_module.track_running_stats:
        found.append(
            (
                "BatchNorm running statistics",
                "torch track_running_stats=False normalizes with the batch statistics in "
                "eval mode too; nnx uses its running averages when use_running_average=True",
                "build torch with track_running_stats=True, or keep nnx use_running_average=False",
            )
        )
    found += _presence(
        "scale", torch_module.weight is not None, nnx_module.scale is not None,
        "affine", "use_scale",
    )  # fmt: skip
    found += _presence(
        "bias", torch_module.bias is not None, nnx_module.bias is not None, "affine", "use_bias"
    )
    found += _fast_variance("BatchNorm", nnx_module)
    running = nnx_module.use_running_average
    torch_trains = torch_module.training
    nnx_trains = None if running is None else not running
    if nnx_trains is not None and torch_trains != nnx_trains:
        found.append(
            (
                "BatchNorm mode",
                f"torch is in {'training' if torch_trains else 'eval'} mode, nnx "
                f"use_running_average={running}",
                "put both models in the same mode (model.train() or model.eval() on each side)",
            )
        )
    if (torch_trains and torch_module.track_running_stats) or nnx_trains:
        found.append(
            (
                "BatchNorm running variance",
                "in training torch updates running_var with the unbiased batch variance "
                "(times n/(n-1)), flax with the biased one",
                "expect the running variances to differ by that factor after training steps, "
                "or compare in eval mode",
            )
        )
    return found


def _attention(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    found = []
    if torch_module.num_heads != nnx_module.num_heads:
        found.append(
            (
                "MultiheadAttention num_heads",
                f"torch num_heads={torch_module.num_heads}, nnx num_heads="
                f"{nnx_module.num_heads} (the weights reshape either way)",
                f"build nnx.MultiHeadAttention with num_heads={torch_module.num_heads}",
            )
        )
    if not _close(torch_module.dropout, nnx_module.dropout_rate):
        found.append(
            (
                "MultiheadAttention dropout",
                f"torch dropout={torch_module.dropout!r}, nnx dropout_rate="
                f"{nnx_module.dropout_rate!r}",
                f"build nnx.MultiHeadAttention with dropout_rate={torch_module.dropout!r}",
            )
        )
    if nnx_module.dropout_rate > 0 and nnx_module.broadcast_dropout:
        found.append(
            (
                "MultiHeadAttention broadcast_dropout",
                "nnx broadcast_dropout=True drops the same attention weights in every batch "
                "entry and head; torch draws them independently",
                "build nnx.MultiHeadAttention with broadcast_dropout=False",
            )
        )
    if not torch_module.batch_first:
        found.append(
            (
                "MultiheadAttention batch_first",
                "torch batch_first=False takes (length, batch, embed) inputs, nnx takes "
                "(batch, length, features)",
                "build torch with batch_first=True, or transpose the torch inputs",
            )
        )
    if torch_module.add_zero_attn:
        found.append(
            (
                "MultiheadAttention add_zero_attn",
                "torch add_zero_attn=True appends a zero key and value; nnx does not",
                "build torch with add_zero_attn=False",
            )
        )
    if torch_module.bias_k is not None:
        found.append(
            (
                "MultiheadAttention add_bias_kv",
                "torch add_bias_kv=True appends learned bias_k/bias_v to the keys and "
                "values; nnx has no such parameters",
                "build torch with add_bias_kv=False",
            )
        )
    found += _presence(
        "bias", torch_module.in_proj_bias is not None, bool(nnx_module.use_bias), "bias",
        "use_bias",
    )  # fmt: skip
    dtype = jnp.dtype(nnx_module.dtype or nnx_module.param_dtype)
    if dtype == jnp.float64 and nnx_module.attention_fn is nnx.dot_product_attention:
        found.append(
            (
                "MultiHeadAttention softmax dtype",
                "flax's default attention_fn (jax.nn.dot_product_attention) computes the "
                "softmax in float32 even for float64 inputs (errors near 1e-7)",
                "build nnx.MultiHeadAttention with "
                "attention_fn=torch_ref.bridge.attention_in_input_dtype",
            )
        )
    return found


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

#: (nnx class, its torch twins, check): the first nnx class the module is an instance of.
_CHECKS: tuple[tuple[type, tuple[type, ...], Callable[..., list]], ...] = (
    (nnx.MultiHeadAttention, (nn.MultiheadAttention,), _attention),
    (nnx.ConvTranspose, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
     conv.conv_transpose_settings),
    (nnx.Conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d), conv.conv_settings),
    (nnx.Linear, (nn.Linear,), lambda t, n: _presence(
        "bias", t.bias is not None, n.bias is not None, "bias", "use_bias")),
    (nnx.Embed, (nn.Embedding,), _embed),
    (nnx.BatchNorm, _BATCH_NORMS, _batch_norm),
    (nnx.LayerNorm, (nn.LayerNorm,), _layer_norm),
    (nnx.RMSNorm, (nn.RMSNorm,), _rms_norm),
    (nnx.GroupNorm, (nn.GroupNorm,), _group_norm),
)  # fmt: skip
_TORCH_LAYERS = tuple(cls for _, classes, _ in _CHECKS for cls in classes)


def check_layer(torch_module: Any, nnx_module: Any, torch_path: str, nnx_path: str) -> list[Note]:
    """The settings that differ between two matched layers (none for a layer not in the
    table, or a torch module of a class the bridge does not know)."""
    for nnx_cls, torch_classes, check in _CHECKS:
        if not isinstance(nnx_module, nnx_cls):
            continue
        if isinstance(torch_module, torch_classes):
            found = check(torch_module, nnx_module)
        elif isinstance(torch_module, _TORCH_LAYERS):
            found = [
                (
                    "layer type",
                    f"the nnx {nnx_cls.__name__} is matched to a torch "
                    f"{type(torch_module).__name__}",
                    f"build the torch twin as {' or '.join(c.__name__ for c in torch_classes)}",
                )
            ]
        else:
            found = []
        return [Note(s, torch_path, nnx_path, detail, fix) for s, detail, fix in found]
    return []


def gelu_mode(obj: Any) -> str | None:
    """``'tanh'``/``'none'`` for a GELU (jax, flax, torch function or module), else None."""
    func, keywords = obj, {}
    if isinstance(obj, functools.partial):
        func, keywords = obj.func, obj.keywords
    if func is jax.nn.gelu:
        return "tanh" if keywords.get("approximate", True) else "none"
    if func is F.gelu:
        return keywords.get("approximate", "none")
    if isinstance(obj, nn.GELU):
        return obj.approximate
    return None


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def check_activation(torch_obj: Any, nnx_obj: Any, torch_path: str, nnx_path: str) -> list[Note]:
    """Dropout rates and modes, and GELU's approximation, of two objects at the same place."""
    found = []
    if isinstance(nnx_obj, nnx.Dropout) and isinstance(torch_obj, _DROPOUTS):
        if not _close(torch_obj.p, nnx_obj.rate):
            found.append(
                (
                    "Dropout rate",
                    f"torch p={torch_obj.p!r}, nnx rate={nnx_obj.rate!r}",
                    f"build nnx.Dropout with rate={torch_obj.p!r}",
                )
            )
        torch_drops = torch_obj.training and torch_obj.p > 0
        nnx_drops = not nnx_obj.deterministic and nnx_obj.rate > 0
        if torch_drops != nnx_drops:
            found.append(
                (
                    "Dropout mode",
                    f"torch {'drops' if torch_drops else 'does not drop'} (training="
                    f"{torch_obj.training}), nnx {'drops' if nnx_drops else 'does not drop'} "
                    f"(deterministic={nnx_obj.deterministic})",
                    "put both models in the same mode (model.train() or model.eval() on each side)",
                )
            )
    nnx_gelu, torch_gelu = gelu_mode(nnx_obj), gelu_mode(torch_obj)
    if nnx_gelu is not None and torch_gelu is not None and nnx_gelu != torch_gelu:
        approximate = torch_gelu == "tanh"
        found.append(
            (
                "GELU approximation",
                f"torch GELU approximate={torch_gelu!r}, nnx gelu approximate="
                f"{nnx_gelu == 'tanh'} (nnx.gelu defaults to the tanh form)",
                f"use functools.partial(nnx.gelu, approximate={approximate}) on the nnx side",
            )
        )
    return [Note(s, torch_path, nnx_path, detail, fix) for s, detail, fix in found]
