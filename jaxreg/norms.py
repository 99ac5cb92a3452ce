"""Vector, matrix and pytree norms with safe gradients, exact over the whole float range.

Conventions:

* at an all-zero input every norm has value 0 and gradient 0 (torch's subgradient);
* NaN in, NaN out: a NaN entry makes its norm NaN for every ``ord`` (also ``0``,
  which counts non-zeros); an infinite entry makes a p-norm ``inf``. Guards test
  ``== 0`` so that a NaN takes the computing branch, never the zero one;
* the result is right wherever it is representable, from ``finfo.max`` down to the
  subnormals (the guarantee of BLAS ``nrm2``): the 2-norm computes the plain sum of
  squares first and only when it came out infinite or too small to be accurate
  rescales the input by an exact power of two near its largest magnitude (a cheap
  check on the result, so the common case costs nothing extra); the other p-norms
  always rescale. See ``jaxreg._scaling`` for why powers of two and what
  XLA:CPU does with subnormals (it flushes them to zero);
* any real order, negative too (torch, NumPy): for ``p < 0`` the scaling is by the
  *smallest* magnitude, and a zero entry gives the norm 0 with gradient 0;
* an empty reduction axis gives 0 for every p-norm with ``p >= 0`` (a sum over
  nothing); ``inf`` and every negative order raise there, as in
  ``torch.linalg.vector_norm`` (no identity); ``global_norm`` of a tree without
  entries is 0;
* ``vector_norm(..., where=mask)``: masked-out entries take no part
  (``torch.masked.norm``); a fully masked vector gives 0, or ``+inf`` for negative
  orders, with gradient 0;
* bf16/fp16 inputs are reduced in float32 and the result is returned in the input
  dtype.

This module checks the arguments and handles the empty and masked cases; the kernels
are private modules: ``jaxreg._p_norms`` (every vector order, the p-norms' custom JVP)
and ``jaxreg._singular_values`` (the nuclear, 2 and -2 matrix norms).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg import _numerics, _p_norms, _singular_values

__all__ = [
    "frobenius_norm",
    "global_norm",
    "l1_norm",
    "l2_norm",
    "matrix_norm",
    "vector_norm",
]

Ord = float | int | str | None

_MATRIX_ORDS = ("fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf)


def _check_vector_ord(ord: Any) -> float:
    if isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise ValueError(
            f"`ord` must be a real number p (negative too), inf, -inf or 0 for a vector norm, "
            f"got {ord!r}; for matrix norms use `matrix_norm`."
        )
    ord = float(ord)
    if math.isnan(ord):
        raise ValueError("`ord` must be a real number, inf or -inf for a vector norm, got nan.")
    return ord


def _check_nonempty(ord: float, size: int, fn_name: str, what: str) -> None:
    """``ValueError`` for the ``inf`` or a negative-order norm over no entries (torch
    raises there too: the reduction has no identity)."""
    if size == 0 and (ord < 0 or ord == math.inf):
        extreme = "largest" if ord > 0 else "smallest"
        raise ValueError(
            f"`{fn_name}` with `ord`={ord} over {what} has no value (driven by the {extreme} "
            f"of no magnitudes; torch.linalg.vector_norm raises too); reduce over a non-empty "
            f"axis, or use a p-norm with p >= 0, which is 0 there."
        )


@_numerics.compiled("ord", "axis", "keepdims")
def vector_norm(
    x: ArrayLike,
    ord: Ord = 2,
    axis: int | Sequence[int] | None = None,
    keepdims: bool = False,
    *,
    where: ArrayLike | None = None,
) -> jax.Array:
    r"""Vector p-norm over ``axis`` (all axes, flattened, by default).

    .. math::
        \|x\|_p = \Big(\sum_i |x_i|^p\Big)^{1/p}, \quad
        \|x\|_\infty = \max_i |x_i|, \quad \|x\|_{-\infty} = \min_i |x_i|, \quad
        \|x\|_0 = \#\{i : x_i \neq 0\}

    ``p`` may be any real number, negative too (as in torch and NumPy): for ``p < 0``
    the norm lies between ``n^{1/p}·min|x|`` and ``min|x|``, and a zero entry makes it
    0 (torch's and NumPy's value, the limit as that entry goes to 0), with gradient 0.

    The value at an all-zero input is 0 with gradient 0, for every ``ord``; at a
    zero entry the gradient is 0 also for ``p < 1`` (torch's rule). A NaN entry makes
    the norm NaN for every ``ord``; an infinite entry makes a ``p > 0`` norm ``inf``
    (and takes no part in a ``p < 0`` norm, ``|inf|^p = 0``). The result is right
    wherever it is representable, ``finfo.max`` down to the subnormals:
    ``vector_norm(jnp.array([1e38, 1e38], jnp.float32))`` is ``1.4142135e38`` (entries
    and results that are subnormal are flushed to 0 by XLA:CPU). Over an empty axis
    every norm with ``p >= 0`` is 0, and ``ord=inf`` or ``ord < 0`` raises, as in
    ``torch.linalg.vector_norm``.

    ``where`` masks entries out, as ``torch.masked.norm``'s ``mask``: a False entry
    takes no part (a NaN there neither), its gradient is 0. A fully masked vector has
    the norm of no entries: 0 for ``p >= 0`` and ``inf``, ``+inf`` for ``-inf`` (as
    ``torch.masked.norm``) and for ``p < 0`` (an empty sum to a negative power;
    ``torch.masked.norm`` instead counts masked-out entries as zeros for ``p < 0`` and
    returns 0), all with gradient 0.

    Args:
      x: a real floating array.
      ord: a real ``p`` (``p < 0`` too), ``inf``, ``-inf`` or ``0``.
      axis: the axis or axes to reduce; ``None`` reduces all of them, like
        ``torch.linalg.vector_norm`` (not ``jnp.linalg.norm``, which treats a
        matrix as a matrix).
      keepdims: keep the reduced axes with size 1.
      where: optional boolean mask broadcastable to ``x``; False entries take no part.

    Returns:
      The norms, with the reduced axes removed (or kept as 1), in ``x``'s dtype.

    Raises:
      ValueError: ``ord`` is not a vector order, or ``ord=inf`` or ``ord < 0`` over an
        empty axis.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.vector_norm(jnp.array([3.0, -4.0])))
      5.0
      >>> print(jaxreg.vector_norm(jnp.array([3.0, -4.0]), ord=1))
      7.0
      >>> print(jaxreg.vector_norm(jnp.array([1e38, 1e38], jnp.float32)))
      1.4142135e+38
      >>> print(jaxreg.vector_norm(jnp.array([3.0, 6.0]), ord=-1))  # 1 / (1/3 + 1/6)
      2.0
      >>> print(jaxreg.vector_norm(jnp.array([3.0, -4.0]), where=jnp.array([True, False])))
      3.0
    """
    x = _numerics.as_float_array(x, "x")
    ord = _check_vector_ord(ord)
    axes = _numerics.normalize_axes(axis, x.ndim)
    size = _p_norms.reduced_size([x], axes)
    _check_nonempty(ord, size, "vector_norm", f"axis {axes} of shape {x.shape}")
    work = _numerics.upcast(x)
    mask = _numerics.broadcast_where(where, x.shape)
    if mask is not None:
        # Masked-out entries become the reduction's identity, held constant (the double
        # where: a NaN there takes no part): 0 for p >= 0 and inf; +inf for p < 0 and
        # -inf (|inf|^p = 0, and min over nothing is +inf).
        identity = jnp.inf if ord < 0 else 0.0
        work = jnp.where(mask, work, jnp.asarray(identity, work.dtype))
    if size == 0:
        out = jnp.sum(work, axis=axes, keepdims=keepdims)  # a sum over nothing: 0
    else:
        out = _p_norms.vector_norm_parts([work], ord, axes, keepdims)
    return out.astype(x.dtype)


@_numerics.compiled("ord")
def global_norm(tree: Any, ord: Ord = 2) -> jax.Array:
    r"""The vector norm of all leaves of a pytree taken together, as one flat vector.

    .. math::
        \|\theta\|_p = \Big(\sum_{\text{leaves } w} \sum_i |w_i|^p\Big)^{1/p}

    Same conventions as :func:`vector_norm` (zero tree: value 0, gradient 0; NaN in,
    NaN out; right from ``finfo.max`` down to the subnormals). Empty leaves take no
    part; a tree without any entry has norm 0 for every ``ord`` (like
    ``optax.global_norm``). Unlike ``optax.global_norm`` it takes any ``ord``.

    Args:
      tree: a pytree of real floating arrays.
      ord: a real ``p`` (``p < 0`` too), ``inf``, ``-inf`` or ``0``.

    Returns:
      A scalar, in the promoted dtype of the leaves.

    Example:
      >>> import jaxreg
      >>> params = {"w": jnp.array([[3.0]]), "b": jnp.array([4.0])}
      >>> print(jaxreg.global_norm(params))
      5.0
    """
    ord = _check_vector_ord(ord)
    leaves = [
        _numerics.as_float_array(leaf, f"tree leaf {jax.tree_util.keystr(path)}")
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]
    if not leaves:
        return jnp.zeros((), dtype=jnp.result_type(float))
    dtype = functools.reduce(jnp.promote_types, [leaf.dtype for leaf in leaves])
    work = _numerics.compute_dtype(dtype)
    parts = [jnp.ravel(leaf).astype(work) for leaf in leaves if leaf.size]
    if not parts:
        return jnp.zeros((), dtype=dtype)
    return _p_norms.vector_norm_parts(parts, ord, (0,), False).astype(dtype)


def _check_nonempty_matrix(ord: Ord, shape: tuple[int, ...], row: int, col: int) -> None:
    """``ValueError`` where a matrix norm takes a minimum over nothing (torch raises too)."""
    empty = (
        (ord == -2 and min(shape[row], shape[col]) == 0)  # no singular values
        or (ord == -1 and shape[col] == 0)  # no columns
        or (ord == -math.inf and shape[row] == 0)  # no rows
    )
    if empty:
        raise ValueError(
            f"`matrix_norm` with `ord`={ord} of matrices of shape "
            f"{(shape[row], shape[col])} (axes {(row, col)} of {shape}) has no value: it is "
            f"a minimum over nothing (torch.linalg.matrix_norm raises too); the norms "
            f"'fro', 'nuc', 1, 2 and inf are 0 there."
        )


@_numerics.compiled("ord", "axis", "keepdims")
def matrix_norm(
    x: ArrayLike,
    ord: Ord = "fro",
    axis: tuple[int, int] = (-2, -1),
    keepdims: bool = False,
) -> jax.Array:
    r"""Matrix norm over the two axes ``axis`` (batched over the others).

    .. math::
        \|X\|_F = \sqrt{\textstyle\sum_{ij} x_{ij}^2}, \quad
        \|X\|_* = \textstyle\sum_k \sigma_k, \quad
        \|X\|_2 = \sigma_{\max}, \quad
        \|X\|_1 = \max_j \textstyle\sum_i |x_{ij}|, \quad
        \|X\|_\infty = \max_i \textstyle\sum_j |x_{ij}|

    ``-1``, ``-2`` and ``-inf`` take the minimum instead of the maximum. At an
    all-zero matrix the value is 0 and the gradient 0 for every ``ord`` (the
    singular-value norms use ``U Vᵀ``-style subgradients otherwise, as torch does).
    A NaN entry makes the norm NaN for every ``ord`` (torch's SVD raises instead);
    an infinite one makes it ``inf`` (``-2``: NaN, undefined). The singular values
    are computed on the matrix scaled by an exact power of two, so no norm
    overflows or underflows where its result is representable. A matrix with no
    rows or no columns has norm 0, except where the norm is a minimum over nothing
    (``-2``; ``-1`` without columns; ``-inf`` without rows), which raises, as in torch.

    Args:
      x: a real floating array with at least two dimensions.
      ord: ``"fro"``, ``"nuc"``, ``1``, ``-1``, ``2``, ``-2``, ``inf`` or ``-inf``.
      axis: the (row, column) axes of the matrices.
      keepdims: keep the reduced axes with size 1.

    Returns:
      The norms, with the two axes removed (or kept as 1), in ``x``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.matrix_norm(jnp.array([[1.0, -2.0], [3.0, 4.0]]), ord=1))
      6.0
    """
    x = _numerics.as_float_array(x, "x")
    if isinstance(ord, bool) or ord not in _MATRIX_ORDS:
        raise ValueError(f"`ord` must be one of {_MATRIX_ORDS} for a matrix norm, got {ord!r}.")
    if x.ndim < 2:
        raise ValueError(
            f"`matrix_norm` needs at least 2 dimensions, got shape {x.shape}; "
            f"use `vector_norm` for vectors."
        )
    if len(axis) != 2:
        raise ValueError(f"`axis` must name two axes, got {axis}.")
    row, col = (_numerics.normalize_axis(a, x.ndim) for a in axis)
    if row == col:
        raise ValueError(f"`axis` must name two different axes, got {axis}.")
    _check_nonempty_matrix(ord, x.shape, row, col)
    dtype = x.dtype
    x = _numerics.upcast(x)
    if x.shape[row] == 0 or x.shape[col] == 0:
        out = jnp.sum(x, axis=(row, col), keepdims=keepdims)  # 0, as in torch
    elif ord == "fro":
        out = _p_norms.vector_norm_parts([x], 2.0, tuple(sorted((row, col))), keepdims)
    elif ord in (1, -1, math.inf, -math.inf):
        # 1: column sums (over rows); inf: row sums (over columns). Sums of magnitudes
        # cannot overflow spuriously, and max/min keep a NaN.
        sum_axis, pick_axis = (row, col) if abs(ord) == 1 else (col, row)
        sums = jnp.sum(_numerics.safe_abs(x), axis=sum_axis, keepdims=True)
        pick = jnp.max if ord > 0 else jnp.min
        out = pick(sums, axis=pick_axis, keepdims=True)
        if not keepdims:
            out = jnp.squeeze(out, axis=(row, col))
    else:
        which = {"nuc": "nuc", 2: "max", -2: "min"}[ord]
        moved = jnp.moveaxis(x, (row, col), (-2, -1))
        out = _singular_values.SINGULAR_VALUE_NORMS[which](moved)
        if keepdims:
            out = jnp.expand_dims(out, axis=(row, col))
    return out.astype(dtype)


# --- conveniences -----------------------------------------------------------------


@_numerics.compiled("axis")
def l1_norm(x: ArrayLike, axis: int | Sequence[int] | None = None) -> jax.Array:
    r"""``vector_norm(x, 1, axis)``: :math:`\sum_i |x_i|`, gradient ``sign(x)`` (0 at 0).

    Example:
      >>> import jaxreg
      >>> print(jaxreg.l1_norm(jnp.array([3.0, -4.0])))
      7.0
    """
    return vector_norm(x, 1, axis)


@_numerics.compiled("axis")
def l2_norm(x: ArrayLike, axis: int | Sequence[int] | None = None) -> jax.Array:
    r"""``vector_norm(x, 2, axis)``: :math:`\sqrt{\sum_i x_i^2}`, gradient 0 at 0.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.l2_norm(jnp.array([3.0, -4.0])))
      5.0
    """
    return vector_norm(x, 2, axis)


@_numerics.compiled("axis")
def frobenius_norm(x: ArrayLike, axis: tuple[int, int] = (-2, -1)) -> jax.Array:
    r"""``matrix_norm(x, "fro", axis)``: :math:`\sqrt{\sum_{ij} x_{ij}^2}`.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.frobenius_norm(jnp.array([[1.0, 2.0], [2.0, 4.0]])))
      5.0
    """
    return matrix_norm(x, "fro", axis)
