"""PyTorch twin of :mod:`jaxreg.norms`: the same names, arguments and conventions.

Built on ``torch.linalg.vector_norm`` and ``torch.linalg.matrix_norm``. jaxreg's
conventions that raw torch lacks are added here:

* no spurious overflow or underflow (BLAS ``nrm2`` semantics): torch computes
  ``‖[1e20, 1e20]‖₂`` in float32 as ``inf`` and ``‖[1e-300] * 4‖₂`` in float64 as
  ``0``; where the plain result is infinite or too small to be accurate, the input
  is rescaled by its largest magnitude (``‖x‖ = m ‖x / m‖``, exact with ``m`` constant;
  torch divides exactly and keeps subnormals, so no power-of-two scaling is needed);
* NaN in, NaN out: ``ord=0`` of a vector with a NaN is NaN (torch counts the NaN as
  a non-zero), and ``"nuc"``, ``2``, ``-2`` of a matrix with a NaN are NaN (torch's
  SVD raises); an infinite entry makes ``"nuc"`` and ``2`` infinite (torch: NaN);
* at an all-zero matrix the singular-value norms (``"nuc"``, ``2``, ``-2``) have
  gradient 0 (torch returns a ``U Vᵀ`` subgradient there);
* empty reductions: every p-norm is 0 (as torch); ``ord=±inf`` over an empty axis and
  matrix norms that are a minimum over nothing raise a ``ValueError`` (torch raises a
  ``RuntimeError`` or an ``IndexError``); ``global_norm`` of a tree without entries is 0;
* bf16/fp16 inputs are reduced in float32 and returned in the input dtype;
* integer inputs raise a ``TypeError`` naming the argument.

The private functions at the top (dtype and axis checks) are shared by the other
``torch_ref`` modules of the same family (penalties, information, losses).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch

from torch_ref import _numerics

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
    """``ValueError`` for the ``inf`` or a negative-order norm over no entries (jaxreg's
    message)."""
    if size == 0 and (ord < 0 or ord == math.inf):
        extreme = "largest" if ord > 0 else "smallest"
        raise ValueError(
            f"`{fn_name}` with `ord`={ord} over {what} has no value (driven by the {extreme} "
            f"of no magnitudes; torch.linalg.vector_norm raises too); reduce over a non-empty "
            f"axis, or use a p-norm with p >= 0, which is 0 there."
        )


def _negative_order_norm(x: torch.Tensor, ord: float, axes: tuple[int, ...]) -> torch.Tensor:
    """``m·‖x/m‖_p`` for ``p < 0`` with ``m`` the smallest magnitude (so ``|x/m|^p <= 1``:
    no overflow of the sum however small ``m`` is, no underflow however large).

    A vector with a zero entry has norm 0 (torch's value) and gradient 0 (torch: 0, or
    NaN beside tiny entries); infinite entries take no part (``|inf|^p = 0``) and are
    held constant (torch's gradient there is NaN). Keeps the reduced axes.
    """
    with torch.no_grad():
        m = torch.amin(x.abs(), dim=axes, keepdim=True)
        held = (m == 0) | torch.isinf(x)
        scale = torch.where((m > 0) & torch.isfinite(m), m, torch.ones_like(m))
    x = torch.where(held, x.detach(), x)
    return scale * torch.linalg.vector_norm(x / scale, ord, dim=axes, keepdim=True)


def _vector_norm(x: torch.Tensor, ord: float, axes: tuple[int, ...], keepdims: bool):
    """``torch.linalg.vector_norm`` of ``x`` (already in its compute dtype), rescaled
    by the largest magnitude where the plain result overflowed or underflowed."""
    size = math.prod(x.shape[a] for a in axes)
    if ord < 0 and ord != -math.inf and size:
        out = _negative_order_norm(x, ord, axes)
        return out if keepdims else out.squeeze(axes)
    plain = torch.linalg.vector_norm(x, ord, dim=axes, keepdim=True)
    if ord == 0.0:
        # NaN in, NaN out (torch counts a NaN as a non-zero entry).
        plain = plain + torch.where(torch.isnan(x), x, 0.0).sum(dim=axes, keepdim=True)
    if ord in (0.0, 1.0, math.inf, -math.inf) or size == 0:
        # No powers of |x|: nothing to overflow or underflow.
        return plain if keepdims else plain.squeeze(axes)
    finfo = torch.finfo(x.dtype)
    # Below this the sum of p-th powers lies under n·tiny/eps: digits lost to underflow.
    threshold = (size * finfo.tiny / finfo.eps) ** (1.0 / ord)
    with torch.no_grad():
        m = torch.amax(x.abs(), dim=axes, keepdim=True)
        # A NaN row fails every test and keeps its plain (NaN) value.
        needs = (torch.isinf(plain) | (plain < threshold)) & (m > 0) & torch.isfinite(m)
    if bool(needs.any()):
        # ‖x‖ = m ‖x / m‖ with m the largest magnitude (held constant: the identity is exact).
        m = torch.where(needs, m, torch.ones_like(m))
        plain = m * torch.linalg.vector_norm(x / m, ord, dim=axes, keepdim=True)
    return plain if keepdims else plain.squeeze(axes)


def vector_norm(
    x: torch.Tensor,
    ord: Ord = 2,
    axis: int | Sequence[int] | None = None,
    keepdims: bool = False,
    *,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Vector p-norm over ``axis`` (all axes, flattened, by default).

    Mirrors :func:`jaxreg.norms.vector_norm`, built on ``torch.linalg.vector_norm``.

    .. math::
        \|x\|_p = \Big(\sum_i |x_i|^p\Big)^{1/p}, \quad
        \|x\|_\infty = \max_i |x_i|, \quad \|x\|_{-\infty} = \min_i |x_i|, \quad
        \|x\|_0 = \#\{i : x_i \neq 0\}

    Where raw torch differs: torch overflows or underflows when the sum of powers
    does (``‖[1e20, 1e20]‖₂`` is ``inf`` in float32); here the input is then
    rescaled by its largest magnitude (by its smallest for ``p < 0``), so the result
    is exact where representable. At an all-zero input the value and the gradient
    are 0 for every ``ord`` (as in torch); for ``p < 0`` a zero entry gives 0 with
    gradient 0. A NaN entry makes the norm NaN for every ``ord`` (torch's ``ord=0``
    counts it as a non-zero). Over an empty axis every norm with ``p >= 0`` is 0 and
    ``ord=inf`` or ``ord < 0`` raises a ``ValueError`` (torch: ``RuntimeError``).
    ``where`` is ``torch.masked.norm``'s ``mask`` (masked-out entries take no part),
    except that for ``p < 0`` they count as absent, not as zeros: a fully masked
    vector gives ``+inf`` for ``p < 0`` and ``-inf``, 0 otherwise.

    Args:
      x: a real floating tensor, any shape.
      ord: a real ``p`` (``p < 0`` too), ``inf``, ``-inf`` or ``0``.
      axis: the axis or axes to reduce; ``None`` reduces all of them.
      keepdims: keep the reduced axes with size 1.
      where: optional boolean mask broadcastable to ``x``; False entries take no part.

    Returns:
      The norms, shape of ``x`` without ``axis`` (or with size 1 there), in ``x``'s dtype.

    Example:
      >>> import torch
      >>> from torch_ref.norms import vector_norm
      >>> print(vector_norm(torch.tensor([3.0, -4.0])).item())
      5.0
      >>> print(vector_norm(torch.tensor([1e20, 1e20])).item() > 1e20)
      True
      >>> print(vector_norm(torch.tensor([3.0, -4.0]), where=torch.tensor([True, False])).item())
      3.0
    """
    x = _numerics.as_float_array(x, "x")
    ord = _check_vector_ord(ord)
    axes = _numerics.normalize_axes(axis, x.ndim)
    size = math.prod(x.shape[a] for a in axes)
    _check_nonempty(ord, size, "vector_norm", f"axis {axes} of shape {tuple(x.shape)}")
    work = _numerics.upcast(x)
    if where is not None:
        mask = torch.as_tensor(where, device=x.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"`where` must be a boolean mask, got dtype {mask.dtype}.")
        # The reduction's identity, held constant: a NaN there takes no part.
        identity = math.inf if ord < 0 else 0.0
        work = torch.where(mask, work, torch.tensor(identity, dtype=work.dtype))
    return _vector_norm(work, ord, axes, keepdims).to(x.dtype)


def global_norm(tree: Any, ord: Ord = 2) -> torch.Tensor:
    r"""The vector norm of all leaves of a pytree taken together, as one flat vector.

    Mirrors :func:`jaxreg.norms.global_norm` (torch has no pytree norm; this is
    ``vector_norm`` of the concatenated, flattened leaves). A tree without entries has
    norm 0 for every ``ord``.

    .. math::
        \|\theta\|_p = \Big(\sum_{\text{leaves } w} \sum_i |w_i|^p\Big)^{1/p}

    Args:
      tree: nested dicts/lists/tuples of real floating tensors.
      ord: a real ``p`` (``p < 0`` too), ``inf``, ``-inf`` or ``0``.

    Returns:
      A scalar tensor, in the promoted dtype of the leaves.

    Example:
      >>> import torch
      >>> from torch_ref.norms import global_norm
      >>> print(global_norm({"w": torch.tensor([[3.0]]), "b": torch.tensor([4.0])}).item())
      5.0
    """
    ord = _check_vector_ord(ord)
    leaves = [_numerics.as_float_array(leaf, "tree leaf") for leaf in _numerics.tree_leaves(tree)]
    if not leaves:
        return torch.zeros(())
    dtype = functools.reduce(torch.promote_types, [leaf.dtype for leaf in leaves])
    flat = torch.cat([leaf.reshape(-1).to(_numerics.compute_dtype(dtype)) for leaf in leaves])
    if flat.numel() == 0:
        # A tree without entries: 0 for every ord (jaxreg; torch raises for ±inf).
        return torch.zeros((), dtype=dtype)
    return _vector_norm(flat, ord, (0,), False).to(dtype)


# --- matrix norms ----------------------------------------------------------------


def matrix_norm(
    x: torch.Tensor,
    ord: Ord = "fro",
    axis: tuple[int, int] = (-2, -1),
    keepdims: bool = False,
) -> torch.Tensor:
    r"""Matrix norm over the two axes ``axis`` (batched over the others).

    Mirrors :func:`jaxreg.norms.matrix_norm`, built on ``torch.linalg.matrix_norm``.

    .. math::
        \|X\|_F = \sqrt{\textstyle\sum_{ij} x_{ij}^2}, \quad
        \|X\|_* = \textstyle\sum_k \sigma_k, \quad
        \|X\|_2 = \sigma_{\max}, \quad
        \|X\|_1 = \max_j \textstyle\sum_i |x_{ij}|, \quad
        \|X\|_\infty = \max_i \textstyle\sum_j |x_{ij}|

    Where raw torch differs: at an all-zero matrix torch's ``"nuc"``, ``2`` and
    ``-2`` gradients are ``U Vᵀ``-style subgradients (non-zero); here they are 0.
    ``"fro"`` goes through :func:`vector_norm`, so it does not overflow. A NaN entry
    gives NaN for every ``ord`` (torch's SVD raises for ``"nuc"``, ``2``, ``-2``); an
    infinite entry gives ``inf`` for ``"nuc"`` and ``2`` (torch: NaN). Where the norm
    is a minimum over nothing (``-2`` of an empty matrix, ``-1`` without columns,
    ``-inf`` without rows) a ``ValueError`` is raised (torch: ``IndexError``).

    Args:
      x: a real floating tensor with at least two dimensions.
      ord: ``"fro"``, ``"nuc"``, ``1``, ``-1``, ``2``, ``-2``, ``inf`` or ``-inf``.
      axis: the (row, column) axes of the matrices.
      keepdims: keep the reduced axes with size 1.

    Returns:
      The norms, shape of ``x`` without the two axes (or with size 1 there).

    Example:
      >>> import torch
      >>> from torch_ref.norms import matrix_norm
      >>> print(matrix_norm(torch.tensor([[1.0, -2.0], [3.0, 4.0]]), ord=1).item())
      6.0
    """
    x = _numerics.as_float_array(x, "x")
    if isinstance(ord, bool) or ord not in _MATRIX_ORDS:
        raise ValueError(f"`ord` must be one of {_MATRIX_ORDS} for a matrix norm, got {ord!r}.")
    if x.ndim < 2:
        raise ValueError(
            f"`matrix_norm` needs at least 2 dimensions, got shape {tuple(x.shape)}; "
            f"use `vector_norm` for vectors."
        )
    if len(axis) != 2:
        raise ValueError(f"`axis` must name two axes, got {axis}.")
    row, col = (_numerics.normalize_axis(a, x.ndim) for a in axis)
    if row == col:
        raise ValueError(f"`axis` must name two different axes, got {axis}.")
    _check_nonempty_matrix(ord, tuple(x.shape), row, col)
    if ord == "fro":
        return vector_norm(x, 2, (row, col), keepdims)
    work = _numerics.upcast(x)
    if ord not in ("nuc", 2, -2) or x.shape[row] == 0 or x.shape[col] == 0:
        return torch.linalg.matrix_norm(work, ord, dim=(row, col), keepdim=keepdims).to(x.dtype)
    # At an all-zero matrix hold x constant: value 0, gradient 0 (torch: U Vᵀ). A matrix
    # with a NaN or inf entry goes to the SVD as zeros (torch's SVD raises on NaN) and
    # its value is set afterwards: NaN (a NaN entry), inf ("nuc" and 2: σ_max >= max|x|)
    # or NaN (-2 with an inf entry).
    with torch.no_grad():
        m = torch.amax(work.abs(), dim=(row, col), keepdim=True)
        special = ~torch.isfinite(m)
        value = torch.where(torch.isinf(m), math.nan if ord == -2 else math.inf, m)
    held = (m == 0) | special
    work = torch.where(held, torch.where(special, 0.0, work).detach(), work)
    out = torch.linalg.matrix_norm(work, ord, dim=(row, col), keepdim=True)
    out = torch.where(special, value, out)
    if not keepdims:
        out = out.squeeze((row, col))
    return out.to(x.dtype)


def _check_nonempty_matrix(ord: Ord, shape: tuple[int, ...], row: int, col: int) -> None:
    """``ValueError`` where a matrix norm takes a minimum over nothing (jaxreg's message)."""
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


# --- conveniences ----------------------------------------------------------------


def l1_norm(x: torch.Tensor, axis: int | Sequence[int] | None = None) -> torch.Tensor:
    r"""``vector_norm(x, 1, axis)``: :math:`\sum_i |x_i|`, gradient ``sign(x)`` (0 at 0).

    Mirrors :func:`jaxreg.norms.l1_norm`.

    Example:
      >>> import torch
      >>> from torch_ref.norms import l1_norm
      >>> print(l1_norm(torch.tensor([3.0, -4.0])).item())
      7.0
    """
    return vector_norm(x, 1, axis)


def l2_norm(x: torch.Tensor, axis: int | Sequence[int] | None = None) -> torch.Tensor:
    r"""``vector_norm(x, 2, axis)``: :math:`\sqrt{\sum_i x_i^2}`, gradient 0 at 0.

    Mirrors :func:`jaxreg.norms.l2_norm`.

    Example:
      >>> import torch
      >>> from torch_ref.norms import l2_norm
      >>> print(l2_norm(torch.tensor([3.0, -4.0])).item())
      5.0
    """
    return vector_norm(x, 2, axis)


def frobenius_norm(x: torch.Tensor, axis: tuple[int, int] = (-2, -1)) -> torch.Tensor:
    r"""``matrix_norm(x, "fro", axis)``: :math:`\sqrt{\sum_{ij} x_{ij}^2}`.

    Mirrors :func:`jaxreg.norms.frobenius_norm`.

    Example:
      >>> import torch
      >>> from torch_ref.norms import frobenius_norm
      >>> print(frobenius_norm(torch.tensor([[1.0, 2.0], [2.0, 4.0]])).item())
      5.0
    """
    return matrix_norm(x, "fro", axis)
