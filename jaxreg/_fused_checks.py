"""The argument checks of the fused losses (private): errors at trace time that name the
argument, the shapes and the fix.

:mod:`jaxreg.fused`'s three functions take the same options (:class:`Options`) and the
same kinds of targets, so they share these checks; each runs on shapes, dtypes and
concrete values only (a traced hyperparameter is never looked at), before the kernel is
traced.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg import _numerics

__all__ = [
    "Options",
    "check_linear",
    "check_options",
    "check_row_weights",
    "check_targets",
]


class Options(NamedTuple):
    """The loss options of one call (checked by :func:`check_options`)."""

    ignore_index: int
    label_smoothing: ArrayLike
    z_loss: ArrayLike
    softcap: ArrayLike | None
    num_valid_classes: int | None
    reduction: str
    return_aux: bool
    out_dtype: Any


def check_options(opts: Options, dtype: Any) -> Options:
    """``opts`` with ``out_dtype`` resolved (``dtype`` by default), or the error."""
    ignore_index, label_smoothing, z_loss, softcap, num_valid_classes = opts[:5]
    _numerics.check_reduction(opts.reduction)
    _numerics.check_in_unit_interval(label_smoothing, "label_smoothing")
    _numerics.check_nonnegative(z_loss, "z_loss")
    if not isinstance(ignore_index, int | np.integer):
        raise TypeError(f"`ignore_index` must be a Python int, got {type(ignore_index).__name__}.")
    if softcap is not None:
        if jnp.ndim(softcap) != 0:
            raise ValueError(f"`softcap` must be a scalar or None, got shape {jnp.shape(softcap)}.")
        if _numerics.is_concrete(softcap) and not float(np.asarray(softcap)) > 0:
            raise ValueError(f"`softcap` must be positive (or None: no cap), got {softcap}.")
    if num_valid_classes is not None and (
        not isinstance(num_valid_classes, int | np.integer) or num_valid_classes < 1
    ):
        raise ValueError(
            f"`num_valid_classes` must be a positive int or None, got {num_valid_classes!r}."
        )
    if not isinstance(opts.return_aux, bool):
        raise TypeError(f"`return_aux` must be a Python bool, got {opts.return_aux!r}.")
    out_dtype = jnp.dtype(dtype if opts.out_dtype is None else opts.out_dtype)
    if not jnp.issubdtype(out_dtype, jnp.floating):
        raise TypeError(f"`out_dtype` must be a floating dtype, e.g. jnp.float32, got {out_dtype}.")
    return opts._replace(out_dtype=out_dtype)


def check_targets(
    labels: ArrayLike, batch_shape: tuple, columns: int, what: str, ignore_index: int
) -> jax.Array:
    """Integer class ids of shape ``batch_shape``, or probabilities with ``columns`` more."""
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != (*batch_shape, columns):
            raise ValueError(
                f"floating `labels` are probabilities and must have shape "
                f"{(*batch_shape, columns)}, one per column of `{what}`, got {labels.shape}; "
                f"class ids must be integers (`labels.astype(jnp.int32)`)."
            )
        if ignore_index != -100:
            raise ValueError(
                "`ignore_index` is not supported with probability labels (as in torch); give "
                "the rows to skip a `token_weight` of 0 instead, or use integer labels."
            )
        return labels
    labels = _numerics.as_int_array(labels, "labels")
    if labels.shape != batch_shape:
        raise ValueError(
            f"`labels` must have the batch shape of `{what}`, {batch_shape}, got {labels.shape}: "
            f"one class id per row of `{what}` (or probabilities with one more axis)."
        )
    return labels


def check_linear(
    hidden: ArrayLike, weight: ArrayLike, bias: ArrayLike | None, names: tuple[str, str]
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``hidden [..., D]``, ``weight (D, V)`` and ``bias (V,)`` as arrays, or an error naming
    the argument (``names`` are the weight's and the bias's)."""
    w_name, b_name = names
    hidden = _numerics.as_float_array(hidden, "hidden")
    weight = _numerics.as_float_array(weight, w_name)
    if hidden.ndim < 1:
        raise ValueError("`hidden` must have shape [..., D], got a scalar.")
    if weight.ndim != 2 or weight.shape[1] == 0:
        raise ValueError(f"`{w_name}` must have shape (D, V) with V >= 1, got {weight.shape}.")
    if weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"`hidden` has D={hidden.shape[-1]} features (shape {hidden.shape}) but `{w_name}` "
            f"has shape {weight.shape}; it must be (D, V) = (in_features, vocab). A torch "
            f"nn.Linear weight is (V, D): pass its transpose."
        )
    dtypes = {"hidden": hidden.dtype, w_name: weight.dtype}
    if bias is not None:
        bias = _numerics.as_float_array(bias, b_name)
        if bias.shape != (weight.shape[1],):
            raise ValueError(
                f"`{b_name}` must have shape ({weight.shape[1]},), one entry per column of "
                f"`{w_name}` {weight.shape}, got {bias.shape}."
            )
        dtypes[b_name] = bias.dtype
    if len(set(dtypes.values())) > 1:
        named = ", ".join(f"`{n}` {d}" for n, d in dtypes.items())
        raise TypeError(
            f"{named}: these must share one dtype; cast them, e.g. "
            f"`{w_name}.astype(hidden.dtype)` (the products accumulate in float32 anyway)."
        )
    return hidden, weight, bias


def check_row_weights(
    weight: ArrayLike | None, token_weight: ArrayLike | None, classes: int, batch_shape: tuple
) -> tuple[jax.Array | None, jax.Array | None]:
    if weight is not None:
        weight = _numerics.as_float_array(weight, "weight")
        if weight.shape != (classes,):
            raise ValueError(
                f"`weight` (class weights) must have shape ({classes},), one per class, got "
                f"{weight.shape}."
            )
    if token_weight is not None:
        token_weight = _numerics.as_float_array(token_weight, "token_weight")
        if token_weight.shape != batch_shape:
            raise ValueError(
                f"`token_weight` must have the batch shape {batch_shape}, one weight per "
                f"token, got {token_weight.shape}."
            )
    return weight, token_weight
