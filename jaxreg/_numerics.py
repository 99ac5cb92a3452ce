"""Private helpers shared by the jaxreg modules: argument checks and dtype rules.

Every check here runs at trace time (on shapes and dtypes, never on values), so a
bad call fails when it is traced, with a message naming the argument and the fix.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

__all__ = [
    "REDUCTIONS",
    "as_float_array",
    "as_int_array",
    "broadcast_where",
    "check_class_ids",
    "check_in_unit_interval",
    "check_nonnegative",
    "check_reduction",
    "check_same_shape",
    "class_id_rows",
    "compiled",
    "compute_dtype",
    "is_concrete",
    "is_symbolic_zero",
    "nan_rows",
    "nonzero_or_one",
    "normalize_axes",
    "normalize_axis",
    "reduce",
    "reduced_shape",
    "safe_abs",
    "shifted_exp",
    "sum_terms",
    "torch_mean",
    "upcast",
]

REDUCTIONS = ("none", "mean", "sum")

F = TypeVar("F", bound=Callable[..., Any])


def _static_value(value: Any, fn_name: str, name: str) -> Any:
    """A static argument in hashable form: lists as tuples (recursively), concrete 0-d
    arrays as Python scalars. A traced or unhashable value raises a ``TypeError``."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"`{name}` of `{fn_name}` chooses the computation (it is static, like an axis) "
            f"and must be a concrete Python value, not a traced array; numeric "
            f"hyperparameters may be traced, structural arguments may not."
        )
    if isinstance(value, (list, tuple)):
        return tuple(_static_value(v, fn_name, name) for v in value)
    if isinstance(value, (np.ndarray, jax.Array)):
        if value.ndim == 0:
            return value.item()
        raise TypeError(
            f"`{name}` of `{fn_name}` chooses the computation (it is static) and must be a "
            f"Python value, got an array of shape {value.shape}."
        )
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"`{name}` of `{fn_name}` is a static argument and must be hashable, got a "
            f"{type(value).__name__}."
        ) from None
    return value


def compiled(*static_argnames: str, check: Callable[..., None] | None = None) -> Callable[[F], F]:
    """Compiles a public function as one XLA program, like ``jax.nn``'s functions.

    ``partial(jax.jit, static_argnames=...)`` with the same contract: only structural
    arguments are static (axes, ``ord``, ``reduction``, ``ignore_index``, code-path
    flags); every numeric hyperparameter is an ordinary traced argument, so a new value
    neither recompiles nor meets a Python branch. Static arguments may be given as lists
    (they are hashed as tuples) or as concrete 0-d arrays; a traced or unhashable static
    argument raises a ``TypeError`` that names it. Inside a caller's ``jit``, ``grad`` or
    ``vmap`` the inner jit is inlined as usual.

    ``check``, if given, is called with every argument by name (defaults filled in)
    before tracing, where values the caller passed concretely can still be checked
    (labels in range, a smoothing in [0, 1]); it must skip traced values.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        jitted = jax.jit(fn, static_argnames=static_argnames)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            for name in static_argnames:
                if name in bound.arguments:
                    bound.arguments[name] = _static_value(bound.arguments[name], fn.__name__, name)
            if check is not None:
                bound.apply_defaults()
                check(**bound.arguments)
            return jitted(*bound.args, **bound.kwargs)

        wrapper._jitted = jitted  # type: ignore[attr-defined]  # (tests count compilations)
        return wrapper  # type: ignore[return-value]

    return decorate


def as_float_array(x: ArrayLike, name: str) -> jax.Array:
    """``x`` as a JAX array of a real floating dtype, or a ``TypeError`` naming ``name``.

    Python scalars are accepted (they take JAX's default float dtype).
    """
    if type(x) is int:
        x = float(x)
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"`{name}` must be a floating array (real), got dtype {arr.dtype}; "
            f"convert it first, e.g. `{name}.astype(jnp.float32)`."
        )
    return arr


def as_int_array(x: ArrayLike, name: str) -> jax.Array:
    """``x`` as a JAX integer array, or a ``TypeError`` naming ``name``."""
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an integer array of class ids, got dtype {arr.dtype}.")
    return arr


def compute_dtype(dtype: Any) -> jnp.dtype:
    """The dtype a reduction runs in: float32 for bf16/fp16 (and narrower), else ``dtype``."""
    dtype = jnp.dtype(dtype)
    if dtype.itemsize < 4:
        return jnp.dtype(jnp.float32)
    return dtype


def upcast(x: jax.Array) -> jax.Array:
    """``x`` in its compute dtype (float32 for low-precision floats)."""
    return x.astype(compute_dtype(x.dtype))


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}.")


def reduce(losses: jax.Array, reduction: str) -> jax.Array:
    """Applies ``"none"``, ``"sum"`` or ``"mean"`` (over every element)."""
    check_reduction(reduction)
    if reduction == "sum":
        return jnp.sum(losses)
    if reduction == "mean":
        return jnp.mean(losses)
    return losses


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {a.shape} and {b.shape}; "
            f"broadcast explicitly (`jnp.broadcast_to`) if that is what you mean."
        )


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"`{name}`={axis} is out of range for an array of rank {ndim}.")
    return axis % ndim


def normalize_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, an int or a sequence) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = tuple(sorted({normalize_axis(a, ndim) for a in axes}))
    if len(out) != len(axes):
        raise ValueError(f"`axis` has repeated entries: {axis}.")
    return out


def broadcast_where(where: ArrayLike | None, shape: tuple[int, ...]) -> jax.Array | None:
    """A boolean ``where`` mask broadcast to ``shape``, or a ``ValueError`` naming ``where``."""
    if where is None:
        return None
    mask = jnp.asarray(where)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"`where` must be a boolean mask, got dtype {mask.dtype}.")
    try:
        if jnp.broadcast_shapes(mask.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"`where` of shape {mask.shape} does not broadcast to the input's shape {shape}."
        ) from None
    return jnp.broadcast_to(mask, shape)


def is_concrete(x: Any) -> bool:
    """True when ``x`` is a Python number or a concrete (non-traced) array."""
    return not isinstance(x, jax.core.Tracer)


def check_in_unit_interval(value: Any, name: str) -> None:
    """``ValueError`` unless ``0 <= value <= 1`` (skipped for traced values)."""
    if is_concrete(value) and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {float(value)}.")


def check_nonnegative(value: Any, name: str) -> None:
    """``ValueError`` unless ``value >= 0`` (skipped for traced values)."""
    if is_concrete(value) and not callable(value) and float(value) < 0:
        raise ValueError(f"`{name}` must be non-negative, got {float(value)}.")


def nonzero_or_one(s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(s == 0, s with its zeros replaced by 1)``: the guard of a division or log by ``s``.

    Tested as ``s == 0``, not ``s > 0``, so that a NaN takes the computing branch and
    stays NaN (a guard is not a NaN filter).
    """
    zero = s == 0
    return zero, jnp.where(zero, jnp.ones_like(s), s)


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple:
    """``shape`` after reducing ``axes`` (kept as 1 with ``keepdims``)."""
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def shifted_exp(
    x: jax.Array,
    axes: tuple[int, ...],
    mask: jax.Array | None,
    *,
    floor_max: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(m, z, e, s)``: the row max ``m`` (held constant), ``z = x - m``, ``e = exp(z)``
    and ``s = Σ e`` over ``axes`` (``m`` and ``s`` keep the reduced axes as size 1).

    Masked-out entries become ``-inf`` in ``z`` and 0 in ``e``: a NaN there takes no
    part. Rows without a finite max shift by 0, so ``+inf`` entries stay ``+inf`` and a
    NaN stays NaN. With ``floor_max`` the max is instead taken with the lowest finite
    number as the reduction's initial value: all ``-inf`` rows still give ``z = -inf``,
    and the compiler fuses the max with the subtraction and the exponential (for
    callers for which a ``+inf`` entry gives NaN anyway: ``z`` is then NaN there).
    """
    if mask is not None:
        x = jnp.where(mask, x, -jnp.inf)
    if floor_max:
        lowest = jnp.array(jnp.finfo(x.dtype).min, x.dtype)
        # The input is held constant before the reduction: under differentiation JAX
        # would otherwise rewrite this generic reduction (its initial value is not max's
        # identity) as a tree of slices, several times slower.
        m = lax.reduce(lax.stop_gradient(x), lowest, lax.max, axes)
        if all(x.shape[a] == 1 for a in axes):
            # XLA drops a reduction's initial value when the reduced axes have size 1
            # (the reduction becomes a reshape), so an all -inf row of length 1 would
            # give -inf - -inf = NaN: floor the result again (only then: elsewhere the
            # extra operation stops the max from fusing with the shift).
            # tests/test_information.py::test_masked_rows_of_length_one fails without
            # it (jaxlib 0.10.2).
            m = jnp.maximum(m, lowest)
        m = jnp.expand_dims(m, axes)
    else:
        m = jnp.max(x, axis=axes, keepdims=True)
        m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)))
    z = x - m
    e = jnp.exp(z)
    return m, z, e, jnp.sum(e, axis=axes, keepdims=True)


def check_class_ids(labels: Any, num_classes: int, ignore_index: int, name: str = "labels") -> None:
    """``ValueError`` naming the first label that is neither a class id in
    ``[0, num_classes)`` nor ``ignore_index``; skipped for traced labels (whose rows are
    then NaN, see :func:`class_id_rows`)."""
    if not is_concrete(labels):
        return
    ids = np.asarray(labels)
    if not np.issubdtype(ids.dtype, np.integer):
        return
    bad = (ids != ignore_index) & ((ids < 0) | (ids >= num_classes))
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        position = where[0] if len(where) == 1 else where
        raise ValueError(
            f"`{name}` holds {int(ids[where])} at position {position}, which is neither a "
            f"class id in [0, {num_classes}) nor `ignore_index`={ignore_index}. Fix the "
            f"labels, or pass the value that marks rows to skip as `ignore_index` (torch's "
            f"default is -100). Traced labels out of range give that row a NaN loss and "
            f"gradient."
        )


def class_id_rows(
    labels: jax.Array, num_classes: int, ignore_index: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(valid, safe_labels, bad)`` for integer class ids.

    ``valid`` marks the rows that take part (label not ``ignore_index``);
    ``safe_labels`` is a class id on every row (0 where the label is ignored or out of
    range), safe to gather with; ``bad`` marks the rows whose label is neither a class
    nor ignored, whose loss :func:`nan_rows` makes NaN.
    """
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= num_classes))
    safe_labels = jnp.where(valid & ~bad, labels, jnp.zeros_like(labels))
    return valid, safe_labels, bad


def nan_rows(losses: jax.Array, bad: jax.Array) -> jax.Array:
    """``losses`` times NaN on the ``bad`` rows and times 1 elsewhere (see
    :func:`class_id_rows`): their value and gradient become NaN, the others are exact."""
    return losses * jnp.where(bad, jnp.nan, 1.0).astype(losses.dtype)


def torch_mean(losses: jax.Array, weights: jax.Array, valid: jax.Array) -> jax.Array:
    """torch's mean for class-id targets: ``Σ losses / Σ weights`` over the rows.

    ``losses`` are already weighted and 0 on the rows that are not ``valid``; ``weights``
    are the rows' weights (``w[y_i]``, or 1), 0 where not valid. The division is
    torch's exactly (a negative or zero weight sum divides as torch does); only when no
    row is valid the mean is 0, with gradient 0, instead of torch's 0/0 = NaN.
    """
    # One reduction for the three sums (the losses, the weights, the valid rows): on CPU
    # each separate reduction of a row vector is its own small kernel, and three of them
    # cost about as much as the rest of a [2048, 1024] cross-entropy's overhead.
    rows = [losses, weights, valid.astype(losses.dtype)]
    loss_sum, total, count = jnp.sum(jnp.stack([jnp.ravel(r) for r in rows]), axis=1)
    none = count == 0
    total = jnp.where(none, jnp.ones_like(total), total)
    return jnp.where(none, jnp.zeros_like(total), loss_sum / total)


def safe_abs(x: jax.Array) -> jax.Array:
    """``|x|`` with derivative ``sign(x)``, so 0 at 0 (``jnp.abs``'s derivative at 0 is 1)."""
    return x * lax.stop_gradient(jnp.sign(x))


def is_symbolic_zero(t: Any) -> bool:
    """Whether a tangent given to a ``symbolic_zeros=True`` JVP rule is an unperturbed input."""
    return isinstance(t, jax.custom_derivatives.SymbolicZero)


def sum_terms(terms: Sequence[jax.Array], like: jax.Array) -> jax.Array:
    """The sum of the tangent terms that exist (zeros like ``like`` when there are none)."""
    return functools.reduce(operator.add, terms) if terms else jnp.zeros_like(like)
