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

REDUCTIONS = ("none", "mean", "sum")

F = TypeVar("F", bound=Callable[..., Any])
_UNHASHABLE = object()


#: Static arguments whose lists mean the same as tuples.
_SEQUENCES = ("axis", "range")


def _static_value(value: Any, name: str) -> Any:
    """``value`` as a hashable static argument (0-d arrays as Python scalars, lists of
    axes as tuples), or ``_UNHASHABLE`` for traced or otherwise unhashable values."""
    if isinstance(value, jax.core.Tracer):
        return _UNHASHABLE
    if isinstance(value, list) and name not in _SEQUENCES:
        return _UNHASHABLE  # e.g. a mask given as a list: its structure matters
    if isinstance(value, (list, tuple)):
        items = tuple(_static_value(v, "") for v in value)
        return _UNHASHABLE if any(v is _UNHASHABLE for v in items) else items
    if isinstance(value, (np.ndarray, jax.Array)):
        return value.item() if value.ndim == 0 else _UNHASHABLE
    try:
        hash(value)
    except TypeError:
        return _UNHASHABLE
    return value


def compiled(*static_argnames: str) -> Callable[[F], F]:
    """Compiles a public function as one XLA program, like ``jax.nn``'s functions.

    An eager call then compiles the whole function once per input shapes, dtypes and
    options (several times faster than compiling it operation by operation, as eager
    JAX does), and later calls reuse the program. The named arguments choose the
    computation (axes, ``ord``, ``reduction``, ...) and are static: the checks on them
    run at trace time with their concrete values. When one of them is traced or cannot
    be hashed (an array mask, a traced strength), the function runs as plain Python
    inside the caller's trace instead, which compiles it with everything else.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        jitted = jax.jit(fn, static_argnames=static_argnames)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            for name in static_argnames:
                if name in bound.arguments:
                    value = _static_value(bound.arguments[name], name)
                    if value is _UNHASHABLE:
                        return fn(*args, **kwargs)
                    bound.arguments[name] = value
            return jitted(*bound.args, **bound.kwargs)

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
            f"`{name}` must be a real floating array, got dtype {arr.dtype}; "
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


def safe_abs(x: jax.Array) -> jax.Array:
    """``|x|`` with derivative ``sign(x)``, so 0 at 0 (``jnp.abs``'s derivative at 0 is 1)."""
    return x * lax.stop_gradient(jnp.sign(x))


def is_symbolic_zero(t: Any) -> bool:
    """Whether a tangent given to a ``symbolic_zeros=True`` JVP rule is an unperturbed input."""
    return isinstance(t, jax.custom_derivatives.SymbolicZero)


def sum_terms(terms: Sequence[jax.Array], like: jax.Array) -> jax.Array:
    """The sum of the tangent terms that exist (zeros like ``like`` when there are none)."""
    return functools.reduce(operator.add, terms) if terms else jnp.zeros_like(like)
