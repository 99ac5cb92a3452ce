"""The convolution checks of :mod:`torch_ref._bridge_checks`: strides, dilations, groups
and, above all, padding, which torch and flax write differently.

torch pads symmetrically by ``padding`` (or by its own ``'same'``/``'valid'``) with a
``padding_mode``; flax takes explicit ``(low, high)`` pairs or a string, and its
``'SAME'`` with a stride pads by the input size (``(0, 1)`` for kernel 3, stride 2 and an
even size, where torch pads ``(1, 1)``). A transposed convolution pads the dilated input:
torch by ``d·(k-1)-p`` before and ``d·(k-1)-p+output_padding`` after, flax (through
``lax.conv_transpose``) by the pairs its padding string makes. Each function returns the
settings that differ as ``(setting, detail, fix)`` triples, as the other checks do.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["conv_settings", "conv_transpose_settings"]


def _ints(value: Any, n: int) -> tuple[int, ...]:
    """``None``/int/sequence as ``n`` ints (flax's ``maybe_broadcast``)."""
    if value is None:
        value = 1
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


def _padding_pairs(padding: Any, n: int) -> list[tuple[int, int]]:
    if isinstance(padding, int):
        return [(padding, padding)] * n
    return [(p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]


def conv_settings(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    """The settings of a ``nn.Conv1d/2d/3d`` and an ``nnx.Conv`` that differ."""
    kernel = tuple(torch_module.kernel_size)
    n = len(kernel)
    found = []
    for setting, torch_value, nnx_arg, nnx_value in (
        ("stride", tuple(torch_module.stride), "strides", _ints(nnx_module.strides, n)),
        ("dilation", tuple(torch_module.dilation), "kernel_dilation",
         _ints(nnx_module.kernel_dilation, n)),
        ("groups", (torch_module.groups,), "feature_group_count",
         (nnx_module.feature_group_count,)),
    ):  # fmt: skip
        if torch_value != nnx_value:
            value = torch_value if setting != "groups" else torch_value[0]
            found.append(
                (
                    f"Conv {setting}",
                    f"torch {setting}={torch_value}, nnx {nnx_arg}={nnx_value}",
                    f"build nnx.Conv with {nnx_arg}={value}",
                )
            )
    if _ints(nnx_module.input_dilation, n) != (1,) * n:
        found.append(
            (
                "Conv input_dilation",
                f"nnx input_dilation={nnx_module.input_dilation}; torch's Conv has none",
                "build nnx.Conv with input_dilation=1 (or port to nn.ConvTranspose)",
            )
        )
    if nnx_module.mask is not None:
        found.append(
            (
                "Conv mask",
                "nnx multiplies its kernel by `mask`; torch's Conv has no mask",
                "build nnx.Conv with mask=None, or multiply the torch weight by the mask",
            )
        )
    dilated = [d * (k - 1) + 1 for k, d in zip(kernel, torch_module.dilation, strict=True)]
    if isinstance(torch_module.padding, str):
        torch_pads = (
            [(0, 0)] * n
            if torch_module.padding == "valid"
            else [((e - 1) // 2, e - 1 - (e - 1) // 2) for e in dilated]
        )
    else:
        torch_pads = _padding_pairs(torch_module.padding, n)
    torch_mode = torch_module.padding_mode
    padding = nnx_module.padding
    strides = _ints(nnx_module.strides, n)
    nnx_mode = "zeros"
    if isinstance(padding, str) and padding.upper() == "SAME" and any(s > 1 for s in strides):
        if torch_mode == "zeros":
            found.append(
                (
                    "Conv padding",
                    f"nnx padding='SAME' with strides={strides} pads by the input size "
                    f"((0, 1) for kernel 3, stride 2 and an even size), torch pads "
                    f"{torch_pads}",
                    f"build nnx.Conv with padding={torch_pads}",
                )
            )
        return found
    if isinstance(padding, str):
        mode = padding.upper()
        nnx_pads = {
            "VALID": [(0, 0)] * n,
            "SAME": [((e - 1) // 2, e - 1 - (e - 1) // 2) for e in dilated],
            "CAUSAL": [(e - 1, 0) for e in dilated],
        }.get(mode, [((e - 1) // 2, e // 2) for e in dilated])
        nnx_mode = {"CIRCULAR": "circular", "REFLECT": "reflect"}.get(mode, "zeros")
    else:
        nnx_pads = _padding_pairs(padding, n)
    if (torch_pads, torch_mode) != (nnx_pads, nnx_mode):
        flax_style = [((e - 1) // 2, e // 2) for e in dilated]
        if torch_mode == "zeros":
            fix = f"build nnx.Conv with padding={torch_pads}"
        elif torch_mode in ("circular", "reflect") and torch_pads == flax_style:
            fix = f"build nnx.Conv with padding={torch_mode.upper()!r}"
        else:
            fix = (
                f"nnx.Conv has no such padding: pad the input with jnp.pad(mode=...) and "
                f"build nnx.Conv with padding='VALID' (torch padding_mode={torch_mode!r})"
            )
        found.append(
            (
                "Conv padding",
                f"torch pads {torch_pads} ({torch_mode}), nnx pads {nnx_pads} ({nnx_mode})",
                fix,
            )
        )
    return found


def _conv_transpose_pads(dilated: int, stride: int, mode: str) -> tuple[int, int]:
    """lax.conv_transpose's padding of the dilated input for 'SAME'/'VALID'."""
    if mode == "SAME":
        total = dilated + stride - 2
        low = dilated - 1 if stride > dilated - 1 else math.ceil(total / 2)
    else:
        total = dilated + stride - 2 + max(dilated - stride, 0)
        low = dilated - 1
    return low, total - low


def conv_transpose_settings(torch_module: Any, nnx_module: Any) -> list[tuple[str, str, str]]:
    """The settings of a ``nn.ConvTranspose1d/2d/3d`` and an ``nnx.ConvTranspose`` that differ."""
    kernel = tuple(torch_module.kernel_size)
    n = len(kernel)
    found = []
    strides = _ints(nnx_module.strides, n)
    dilations = _ints(nnx_module.kernel_dilation, n)
    for setting, torch_value, nnx_arg, nnx_value in (
        ("stride", tuple(torch_module.stride), "strides", strides),
        ("dilation", tuple(torch_module.dilation), "kernel_dilation", dilations),
    ):
        if torch_value != nnx_value:
            found.append(
                (
                    f"ConvTranspose {setting}",
                    f"torch {setting}={torch_value}, nnx {nnx_arg}={nnx_value}",
                    f"build nnx.ConvTranspose with {nnx_arg}={torch_value}",
                )
            )
    if torch_module.groups != 1:
        found.append(
            (
                "ConvTranspose groups",
                f"torch groups={torch_module.groups}; nnx.ConvTranspose has no groups",
                "build torch with groups=1",
            )
        )
    if nnx_module.mask is not None:
        found.append(
            (
                "ConvTranspose mask",
                "nnx multiplies its kernel by `mask`; torch's ConvTranspose has no mask",
                "build nnx.ConvTranspose with mask=None",
            )
        )
    # torch pads the dilated input by d·(k-1) - p before and d·(k-1) - p + output_padding after
    torch_pads = [
        (d * (k - 1) - p, d * (k - 1) - p + o)
        for k, d, p, o in zip(
            kernel, torch_module.dilation, torch_module.padding, torch_module.output_padding,
            strict=True,
        )
    ]  # fmt: skip
    padding = nnx_module.padding
    if isinstance(padding, str) and padding.upper() not in ("SAME", "VALID"):
        found.append(
            (
                "ConvTranspose padding",
                f"nnx padding={padding!r} has no torch equivalent; torch pads the dilated "
                f"input by {torch_pads}",
                f"build nnx.ConvTranspose with padding={torch_pads}",
            )
        )
        return found
    if isinstance(padding, str):
        nnx_pads = [
            _conv_transpose_pads(d * (k - 1) + 1, s, padding.upper())
            for k, d, s in zip(kernel, dilations, strides, strict=True)
        ]
    else:
        nnx_pads = _padding_pairs(padding, n)
    if torch_pads != nnx_pads:
        found.append(
            (
                "ConvTranspose padding",
                f"torch padding={tuple(torch_module.padding)}, output_padding="
                f"{tuple(torch_module.output_padding)} pads the dilated input by {torch_pads} "
                f"(d·(k-1)-p, d·(k-1)-p+output_padding), nnx by {nnx_pads}",
                f"build nnx.ConvTranspose with padding={torch_pads}",
            )
        )
    return found
