"""The argument checks of :mod:`torch_ref.fused` (private), with jaxreg's messages.

The three losses take the same options (:class:`Options`) and the same kinds of targets,
so they share these checks (mirror of ``jaxreg._fused_checks``); each names the
argument, the shapes and the fix, as jaxreg's errors do at trace time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from torch_ref import _numerics

__all__ = [
    "Options",
    "check_linear",
    "check_options",
    "check_row_weights",
    "check_soft_options",
    "check_targets",
]


class Options(NamedTuple):
    """The loss options of one call (checked by :func:`check_options`)."""

    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    num_valid_classes: int | None
    reduction: str
    return_aux: bool
    out_dtype: torch.dtype


def check_options(dtype: torch.dtype, **kw: Any) -> Options:
    """The options as :class:`Options`, or an error naming the one that is wrong."""
    _numerics.check_reduction(kw["reduction"])
    _numerics.check_in_unit_interval(kw["label_smoothing"], "label_smoothing")
    _numerics.check_nonnegative(kw["z_loss"], "z_loss")
    if not isinstance(kw["ignore_index"], int):
        raise TypeError(f"`ignore_index` must be a Python int, got {kw['ignore_index']!r}.")
    if kw["softcap"] is not None and not float(kw["softcap"]) > 0:
        raise ValueError(f"`softcap` must be positive (or None: no cap), got {kw['softcap']}.")
    valid = kw["num_valid_classes"]
    if valid is not None and (not isinstance(valid, int) or valid < 1):
        raise ValueError(f"`num_valid_classes` must be a positive int or None, got {valid!r}.")
    out_dtype = dtype if kw["out_dtype"] is None else kw["out_dtype"]
    if not out_dtype.is_floating_point:
        raise TypeError(f"`out_dtype` must be a floating dtype, got {out_dtype}.")
    return Options(
        kw["ignore_index"],
        float(kw["label_smoothing"]),
        float(kw["z_loss"]),
        None if kw["softcap"] is None else float(kw["softcap"]),
        valid,
        kw["reduction"],
        bool(kw["return_aux"]),
        out_dtype,
    )


def check_targets(labels: Any, batch_shape: torch.Size, columns: int, what: str) -> torch.Tensor:
    """Integer class ids of shape ``batch_shape``, or probabilities with ``columns`` more."""
    labels = torch.as_tensor(labels)
    if labels.is_floating_point():
        if labels.shape != (*batch_shape, columns):
            raise ValueError(
                f"floating `labels` are probabilities and must have shape "
                f"{(*batch_shape, columns)}, one per column of `{what}`, got "
                f"{tuple(labels.shape)}."
            )
        return labels
    if labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"`labels` must be an integer array of class ids, got {labels.dtype}.")
    if labels.shape != batch_shape:
        raise ValueError(
            f"`labels` must have the batch shape of `{what}`, {tuple(batch_shape)}, got "
            f"{tuple(labels.shape)}: one class id per row of `{what}`."
        )
    return labels.long()


def check_linear(
    hidden: Any, weight: Any, bias: Any, names: tuple[str, str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``hidden [..., D]``, ``weight (D, V)`` and ``bias (V,)`` as tensors of one dtype."""
    w_name, b_name = names
    hidden = _numerics.as_float_array(hidden, "hidden")
    weight = _numerics.as_float_array(weight, w_name)
    if hidden.ndim < 1:
        raise ValueError("`hidden` must have shape [..., D], got a scalar.")
    if weight.ndim != 2 or weight.shape[1] == 0:
        raise ValueError(
            f"`{w_name}` must have shape (D, V) with V >= 1, got {tuple(weight.shape)}."
        )
    if weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"`hidden` has D={hidden.shape[-1]} features (shape {tuple(hidden.shape)}) but "
            f"`{w_name}` has shape {tuple(weight.shape)}; it must be (D, V) = (in_features, "
            f"vocab). A torch nn.Linear weight is (V, D): pass its transpose."
        )
    dtypes = {"hidden": hidden.dtype, w_name: weight.dtype}
    if bias is not None:
        bias = _numerics.as_float_array(bias, b_name)
        if bias.shape != (weight.shape[1],):
            raise ValueError(
                f"`{b_name}` must have shape ({weight.shape[1]},), one entry per column of "
                f"`{w_name}` {tuple(weight.shape)}, got {tuple(bias.shape)}."
            )
        dtypes[b_name] = bias.dtype
    if len(set(dtypes.values())) > 1:
        named = ", ".join(f"`{n}` {d}" for n, d in dtypes.items())
        raise TypeError(f"{named}: these must share one dtype; cast them to one.")
    return hidden, weight, bias


def check_row_weights(weight: Any, token_weight: Any, classes: int, batch_shape: torch.Size):
    """Class weights ``(classes,)`` and token weights of ``batch_shape`` (each may be None)."""
    if weight is not None:
        weight = _numerics.as_float_array(weight, "weight")
        if weight.shape != (classes,):
            raise ValueError(
                f"`weight` (class weights) must have shape ({classes},), one per class, got "
                f"{tuple(weight.shape)}."
            )
    if token_weight is not None:
        token_weight = _numerics.as_float_array(token_weight, "token_weight")
        if token_weight.shape != batch_shape:
            raise ValueError(
                f"`token_weight` must have the batch shape {tuple(batch_shape)}, one weight "
                f"per token, got {tuple(token_weight.shape)}."
            )
    return weight, token_weight


def check_soft_options(labels: torch.Tensor, ignore_index: int) -> None:
    """``ignore_index`` is torch's default with probability labels (torch has no other)."""
    if labels.is_floating_point() and ignore_index != -100:
        raise ValueError(
            "`ignore_index` is not supported with probability labels (as in torch); give "
            "the rows to skip a `token_weight` of 0 instead, or use integer labels."
        )
