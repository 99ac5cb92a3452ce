"""What the optax transforms of :mod:`jaxreg.optim` and :mod:`jaxreg.proximal` share.

Private to the package (the public optimizers are in those two modules): the types of
their hyperparameters, the learning-rate lookup and check, the casts of a hyperparameter
to a leaf's dtype, torch's "skip when the hyperparameter is 0" (:func:`unless_zero`),
the step counter, and :func:`map_selected`, which applies a regularizer to the leaves
(or entries) a mask selects through the one resolver, ``jaxreg._masks``.

Hyperparameters may be Python numbers or JAX arrays, traced or not. A Python number
decides in Python (a Python ``0`` skips work that torch skips); an array takes a
``where`` with the same result, so a traced hyperparameter never meets a Python ``if``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import _masks
from jaxreg._numerics import check_nonnegative

__all__ = [
    "MaskOrFn",
    "Scalar",
    "ScalarOrSchedule",
    "check_learning_rate",
    "is_number",
    "lr_at",
    "map_selected",
    "require_params",
    "scalar_like",
    "unless_zero",
    "wide",
    "zero_count",
]

Scalar = float | jax.Array  # a Python number or a JAX array, traced or not
ScalarOrSchedule = Scalar | Callable[[jax.Array], Any]
MaskOrFn = Any  # None, a pytree of bools / boolean arrays, params -> mask, or an nnx filter


def map_selected(
    mask: MaskOrFn | None,
    fn: Callable[[jax.Array, jax.Array], jax.Array],
    updates: Any,
    params: Any,
    remembered: _masks.Remembered,
) -> Any:
    """``fn(u, p)`` on the selected leaves (entries) of ``updates``, ``u`` elsewhere.

    Through the one resolver: a False leaf is not computed on; an elementwise mask is a
    double where (``fn`` sees unselected entries of ``u`` and ``p`` as zeros).
    ``remembered`` holds what ``init`` resolved from nnx Variables (:func:`_masks.remember`,
    kept in the optimizer's state).
    """
    selections = [e.selection for e in _masks.resolve(params, mask, remembered=remembered)]
    flat, treedef = jax.tree.flatten(updates)
    out = [
        _masks.select(k, fn, u, u, p)
        for u, p, k in zip(flat, jax.tree.leaves(params), selections, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def check_learning_rate(learning_rate: ScalarOrSchedule, name: str = "learning_rate") -> None:
    """A concrete learning rate must be ``>= 0`` (a schedule or a traced one is not checked)."""
    check_nonnegative(learning_rate, name)


def is_number(x: Any) -> bool:
    """A Python (or NumPy) number: decided in Python. Arrays, traced or not, are data."""
    return isinstance(x, int | float | np.number)


def unless_zero(x: Any, if_zero: jax.Array, compute: Callable[[], jax.Array]) -> jax.Array:
    """``compute()``, or ``if_zero`` where the hyperparameter ``x`` is 0 (torch's
    ``if x != 0``). A Python number decides in Python; an array takes a ``where`` with the
    same result, so a traced 0 gives what a Python 0 gives (NaN computes)."""
    if is_number(x):
        return if_zero if x == 0 else compute()
    return jnp.where(jnp.asarray(x) == 0, if_zero, compute())


def lr_at(learning_rate: ScalarOrSchedule, count: jax.Array) -> Any:
    """The learning rate of step ``count`` (a schedule is called, a constant returned)."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def scalar_like(x: Any, like: jax.Array) -> jax.Array:
    """A hyperparameter (Python float or array) cast to the dtype of ``like``."""
    return jnp.asarray(x, dtype=like.dtype)


def wide(x: Any) -> jax.Array:
    """``x`` in the widest enabled float (float64 under x64), where torch uses Python floats."""
    return jnp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


def require_params(params: Any, name: str) -> None:
    """Raises unless ``update`` was given the current params (optax's ``params=None``)."""
    if params is None:
        raise ValueError(
            f"`{name}` needs the current params: call `update(updates, state, params)`."
        )


def zero_count() -> jax.Array:
    """A step counter in JAX's default integer (int64 under x64): schedules evaluated at an
    int32 count compute in float32, which would make float64 runs drift from torch."""
    return jnp.zeros([], jax.dtypes.canonicalize_dtype(jnp.int64))
