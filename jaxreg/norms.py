"""Vector, matrix and pytree norms with safe gradients and no spurious overflow.

Conventions (DESIGN.md):

* at an all-zero input every norm has value 0 and gradient 0 (torch's subgradient);
* the result neither overflows nor underflows where it is representable (the
  guarantee of BLAS ``nrm2``): the plain sum of powers is computed first, and only
  when it came out infinite or too small to be accurate is the input rescaled by
  its largest magnitude — a cheap check on the result, so the common case costs
  nothing extra;
* bf16/fp16 inputs are reduced in float32 and the result is returned in the input
  dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxreg import _numerics

Ord = float | int | str | None

_MATRIX_ORDS = ("fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf)


def _check_vector_ord(ord: Any) -> float:
    if isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise ValueError(
            f"`ord` must be a number p > 0, inf, -inf or 0 for a vector norm, got {ord!r}; "
            f"for matrix norms use `matrix_norm`."
        )
    ord = float(ord)
    if math.isnan(ord) or (ord < 0 and ord != -math.inf):
        raise ValueError(f"`ord` must be p > 0, inf, -inf or 0 for a vector norm, got {ord}.")
    return ord


def _safe_divisor(m: jax.Array) -> jax.Array:
    # The scale used to rescale by the largest magnitude: 1 where that is 0 or inf.
    return lax.stop_gradient(jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m)))


def _safe_root(s: jax.Array, p: float) -> jax.Array:
    """``s ** (1/p)`` with value 0 and gradient 0 at ``s == 0`` (the "double where")."""
    positive = s > 0
    safe = jnp.where(positive, s, jnp.ones_like(s))
    root = jnp.sqrt(safe) if p == 2.0 else safe ** (1.0 / p)
    return jnp.where(positive, root, jnp.zeros_like(s))


def _abs_pow(x: jax.Array, p: float) -> jax.Array:
    """``|x| ** p`` with gradient 0 at ``x == 0`` for every ``p`` (torch's rule for p < 1)."""
    if p == 2.0:
        return x * x
    if p == 1.0:
        return _numerics.safe_abs(x)
    nonzero = x != 0
    a = _numerics.safe_abs(jnp.where(nonzero, x, jnp.ones_like(x)))
    return jnp.where(nonzero, a**p, jnp.zeros_like(x))


def _sum_pow(parts: Sequence[jax.Array], p: float, axes: Any, keepdims: bool) -> jax.Array:
    return functools.reduce(
        jnp.add, [jnp.sum(_abs_pow(x, p), axis=axes, keepdims=keepdims) for x in parts]
    )


def _max_abs(parts: Sequence[jax.Array], axes: Any, keepdims: bool) -> jax.Array:
    return functools.reduce(
        jnp.maximum, [jnp.max(_numerics.safe_abs(x), axis=axes, keepdims=keepdims) for x in parts]
    )


def _rescaled_p_norm(parts: Sequence[jax.Array], p: float, axes: Any, keepdims: bool) -> jax.Array:
    """``m·‖x/m‖_p`` with ``m`` the largest magnitude (held constant: the identity is exact)."""
    m = _safe_divisor(_max_abs(parts, axes, keepdims=True))
    scaled = [x / m for x in parts]
    m_out = m if keepdims else jnp.squeeze(m, axis=axes)
    return m_out * _safe_root(_sum_pow(scaled, p, axes, keepdims), p)


def _two_norm_value(parts: Sequence[jax.Array], axes: Any, keepdims: bool) -> jax.Array:
    s = _sum_pow(parts, 2.0, axes, keepdims)
    if any(x.size == 0 for x in parts):
        return _safe_root(s, 2.0)
    # The cheap check, on the sum of squares only: one that overflowed (inf), or that is
    # below tiny/eps (digits lost to underflow; this includes 0, which an all-zero input
    # also gives and for which the rescaled branch returns 0 too). The square root is
    # taken inside the common branch, so the check adds one small kernel.
    finfo = jnp.finfo(s.dtype)
    threshold = float(finfo.tiny) / float(finfo.eps)
    needs = jnp.any(jnp.isinf(s) | (s < threshold))
    rescaled, plain = _two_norm_branches(axes, keepdims)
    return lax.cond(needs, rescaled, plain, list(parts), s)


@functools.cache
def _two_norm_branches(axes: Any, keepdims: bool):
    """The two branches of the 2-norm's check, made once per (axes, keepdims).

    ``lax.cond`` caches its traced branches by function identity: fresh lambdas on
    every call would retrace and recompile each eager call.
    """

    def rescaled(parts: list[jax.Array], s: jax.Array) -> jax.Array:
        return _rescaled_p_norm(parts, 2.0, axes, keepdims)

    def plain(parts: list[jax.Array], s: jax.Array) -> jax.Array:
        return _safe_root(s, 2.0)

    return rescaled, plain


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _two_norm(parts: Sequence[jax.Array], axes: Any, keepdims: bool) -> jax.Array:
    return _two_norm_value(parts, axes, keepdims)


@_two_norm.defjvp
def _two_norm_jvp(axes, keepdims, primals, tangents):
    (parts,), (dparts,) = primals, tangents
    n = _two_norm(parts, axes, keepdims)
    n_b = n if keepdims else jnp.expand_dims(n, axes)
    positive = n_b > 0
    n_safe = jnp.where(positive, n_b, jnp.ones_like(n_b))
    # d‖x‖ = Σ (x/‖x‖)·dx, with x/‖x‖ <= 1 (no overflow) and 0 at x = 0.
    dn = functools.reduce(
        jnp.add,
        [
            jnp.sum(
                jnp.where(positive, x / n_safe, jnp.zeros_like(x)) * dx,
                axis=axes,
                keepdims=keepdims,
            )
            for x, dx in zip(parts, dparts, strict=True)
        ],
    )
    return n, dn


def _p_norm(parts: Sequence[jax.Array], p: float, axes: Any, keepdims: bool) -> jax.Array:
    """``(Σ|x|^p)^(1/p)`` over ``parts`` (arrays reduced over the same ``axes``)."""
    if p == 1.0:
        return _sum_pow(parts, p, axes, keepdims)
    if p == 2.0:
        return _two_norm(list(parts), axes, keepdims)
    # General p: |x|^p leaves the float range quickly, always rescale.
    return _rescaled_p_norm(parts, p, axes, keepdims)


def _vector_norm_parts(
    parts: Sequence[jax.Array], ord: float, axes: Any, keepdims: bool
) -> jax.Array:
    if ord == math.inf:
        return _max_abs(parts, axes, keepdims)
    if ord == -math.inf:
        return functools.reduce(
            jnp.minimum,
            [jnp.min(_numerics.safe_abs(x), axis=axes, keepdims=keepdims) for x in parts],
        )
    if ord == 0:
        # The number of non-zero entries; piecewise constant, so its gradient is 0.
        return functools.reduce(
            jnp.add,
            [jnp.sum((x != 0).astype(x.dtype), axis=axes, keepdims=keepdims) for x in parts],
        )
    return _p_norm(parts, ord, axes, keepdims)


@_numerics.compiled("ord", "axis", "keepdims")
def vector_norm(
    x: ArrayLike, ord: Ord = 2, axis: int | Sequence[int] | None = None, keepdims: bool = False
) -> jax.Array:
    r"""Vector p-norm over ``axis`` (all axes, flattened, by default).

    .. math::
        \|x\|_p = \Big(\sum_i |x_i|^p\Big)^{1/p}, \quad
        \|x\|_\infty = \max_i |x_i|, \quad \|x\|_{-\infty} = \min_i |x_i|, \quad
        \|x\|_0 = \#\{i : x_i \neq 0\}

    The value at an all-zero input is 0 with gradient 0, for every ``ord``; at a
    zero entry the gradient is 0 also for ``p < 1`` (torch's rule). The result does
    not overflow or underflow where it is representable:
    ``vector_norm(jnp.array([1e20, 1e20], jnp.float32))`` is ``1.4142135e20``.

    Args:
      x: a real floating array.
      ord: ``p > 0`` (any real), ``inf``, ``-inf`` or ``0``.
      axis: the axis or axes to reduce; ``None`` reduces all of them, like
        ``torch.linalg.vector_norm`` (not ``jnp.linalg.norm``, which treats a
        matrix as a matrix).
      keepdims: keep the reduced axes with size 1.

    Returns:
      The norms, with the reduced axes removed (or kept as 1), in ``x``'s dtype.

    Example:
      >>> import jaxreg
      >>> print(jaxreg.vector_norm(jnp.array([3.0, -4.0])))
      5.0
      >>> print(jaxreg.vector_norm(jnp.array([3.0, -4.0]), ord=1))
      7.0
    """
    x = _numerics.as_float_array(x, "x")
    ord = _check_vector_ord(ord)
    axes = _numerics.normalize_axes(axis, x.ndim)
    out = _vector_norm_parts([_numerics.upcast(x)], ord, axes, keepdims)
    return out.astype(x.dtype)


@_numerics.compiled("ord")
def global_norm(tree: Any, ord: Ord = 2) -> jax.Array:
    r"""The vector norm of all leaves of a pytree taken together, as one flat vector.

    .. math::
        \|\theta\|_p = \Big(\sum_{\text{leaves } w} \sum_i |w_i|^p\Big)^{1/p}

    Same conventions as :func:`vector_norm` (zero tree: value 0, gradient 0; no
    spurious overflow). Unlike ``optax.global_norm`` it takes any ``ord``.

    Args:
      tree: a pytree of real floating arrays.
      ord: ``p > 0``, ``inf``, ``-inf`` or ``0``.

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
    parts = [jnp.ravel(leaf).astype(work) for leaf in leaves]
    return _vector_norm_parts(parts, ord, 0, False).astype(dtype)


# --- matrix norms ---------------------------------------------------------------


def _singular_value_norm(x: jax.Array, which: str) -> jax.Array:
    """Σσ (``"nuc"``), max σ (``"max"``) or min σ (``"min"``) of ``x[..., m, n]``."""
    return _SINGULAR_VALUE_NORMS[which](x)


def _make_singular_value_norm(which: str):
    @jax.custom_jvp
    def norm(x: jax.Array) -> jax.Array:
        s = jnp.linalg.svd(x, compute_uv=False)
        return _pick(s, which)

    @norm.defjvp
    def norm_jvp(primals, tangents):
        (x,), (dx,) = primals, tangents
        zero = jnp.all(x == 0, axis=(-2, -1))
        # The double where: at an all-zero matrix the rule differentiates the SVD of a
        # stand-in with distinct singular values (1, 2, ...), so that even its own
        # derivative (the Hessian) has no NaN; the tangent there is 0 anyway.
        m, n = x.shape[-2:]
        stand_in = jnp.eye(m, n, dtype=x.dtype) * jnp.arange(1, n + 1, dtype=x.dtype)[None, :]
        x_safe = jnp.where(zero[..., None, None], stand_in, x)
        u, s, vh = jnp.linalg.svd(x_safe, full_matrices=False)
        # d σ_k = u_kᵀ dX v_k (for Σσ: trace(Uᵀ dX V), torch's U Vᵀ subgradient).
        dsigma = jnp.einsum("...ik,...ij,...kj->...k", u, dx, vh)
        if which == "nuc":
            tangent = jnp.sum(dsigma, axis=-1)
        else:
            tangent = dsigma[..., 0] if which == "max" else dsigma[..., -1]
        value = jnp.where(zero, jnp.zeros_like(tangent), _pick(s, which))
        return value, jnp.where(zero, jnp.zeros_like(tangent), tangent)

    return norm


def _pick(s: jax.Array, which: str) -> jax.Array:
    if which == "nuc":
        return jnp.sum(s, axis=-1)
    return s[..., 0] if which == "max" else s[..., -1]


_SINGULAR_VALUE_NORMS = {w: _make_singular_value_norm(w) for w in ("nuc", "max", "min")}


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
    dtype = x.dtype
    x = _numerics.upcast(x)
    if ord == "fro":
        out = _vector_norm_parts([x], 2.0, (row, col), keepdims)
    elif ord in (1, -1, math.inf, -math.inf):
        # 1: column sums (over rows); inf: row sums (over columns).
        sum_axis, pick_axis = (row, col) if abs(ord) == 1 else (col, row)
        sums = jnp.sum(_numerics.safe_abs(x), axis=sum_axis, keepdims=True)
        pick = jnp.max if ord > 0 else jnp.min
        out = pick(sums, axis=pick_axis, keepdims=True)
        if not keepdims:
            out = jnp.squeeze(out, axis=(row, col))
    else:
        which = {"nuc": "nuc", 2: "max", -2: "min"}[ord]
        moved = jnp.moveaxis(x, (row, col), (-2, -1))
        out = _singular_value_norm(moved, which)
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
