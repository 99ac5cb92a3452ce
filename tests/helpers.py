"""Shared assertions for the jaxreg test-suite: finiteness, edge-case rules, low precision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

#: One bf16 ulp, relative (8 significand bits): a correctly rounded float32 result is within it.
BF16_RTOL = 2.0**-8
#: One fp16 ulp, relative (11 significand bits).
FP16_RTOL = 2.0**-10
LOW_PRECISION = {"bfloat16": (jnp.bfloat16, BF16_RTOL), "float16": (jnp.float16, FP16_RTOL)}


def leaves64(tree: Any) -> list[np.ndarray]:
    """The leaves of ``tree`` as float64 NumPy arrays."""
    return [np.asarray(leaf, dtype=np.float64) for leaf in jax.tree.leaves(tree)]


def assert_finite(*trees: Any) -> None:
    """Every leaf of every tree is finite (no NaN, no inf)."""
    for leaf in leaves64(trees):
        assert np.all(np.isfinite(leaf)), f"non-finite entries in {leaf}"


def assert_no_nan(*trees: Any) -> None:
    """No leaf of any tree holds a NaN (infinities allowed where the math is infinite)."""
    for leaf in leaves64(trees):
        assert not np.any(np.isnan(leaf)), f"NaN in {leaf}"


def assert_tree_close(actual: Any, expected: Any, *, rtol: float = 1e-12, atol: float = 1e-14):
    """Same tree structure, leaves equal within tolerance (infinities must match exactly)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(leaves64(actual), leaves64(expected), strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def grad_and_hessian(fn: Callable[..., jax.Array], args: Sequence[Any], argnums: int = 0):
    """Value, gradient and Hessian (forward-over-reverse) of ``sum(fn(*args))``."""

    def scalar(*a: Any) -> jax.Array:
        return jnp.sum(fn(*a))

    value = scalar(*args)
    grad = jax.grad(scalar, argnums)(*args)
    hessian = jax.jacfwd(jax.grad(scalar, argnums), argnums)(*args)
    return value, grad, hessian


def assert_edge_rule(
    fn: Callable[..., jax.Array],
    args: Sequence[Any],
    *,
    value: Any,
    grad: Any | None,
    argnums: int = 0,
    hessian: bool = True,
) -> None:
    """At an edge point: value and gradient equal the convention, the Hessian is finite.

    Pass ``grad=None`` to assert only that the gradient has no NaN (infinite math).
    """
    got_value, got_grad, got_hessian = grad_and_hessian(fn, args, argnums)
    np.testing.assert_array_equal(np.asarray(got_value, dtype=np.float64), value)
    if grad is None:
        assert_no_nan(got_grad)
    else:
        assert_finite(got_grad)
        np.testing.assert_allclose(np.asarray(got_grad, dtype=np.float64), grad, atol=1e-15)
    if hessian:
        assert_finite(got_hessian)


def is_floating(tree: Any) -> bool:
    """Whether every leaf of ``tree`` is a floating-point array."""
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(
        jnp.issubdtype(jnp.result_type(leaf), jnp.floating) for leaf in leaves
    )


def check_grads64(
    fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    order: int = 2,
    modes: Sequence[str] = ("fwd", "rev"),
) -> None:
    """``jax.test_util.check_grads`` in float64 w.r.t. the floating arguments (arrays or pytrees)."""
    args = tuple(args)
    floating = [i for i, a in enumerate(args) if is_floating(a)]

    def on_floats(*float_args: Any) -> Any:
        full = list(args)
        for i, a in zip(floating, float_args, strict=True):
            full[i] = a
        return fn(*full)

    float_args = tuple(
        jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype=jnp.float64), args[i]) for i in floating
    )
    check_grads(on_floats, float_args, order=order, modes=modes)


def assert_low_precision(
    fn: Callable[[jax.Array], jax.Array],
    x: np.ndarray,
    expected64: np.ndarray,
    dtype_name: str,
    *,
    atol: float = 0.0,
) -> jax.Array:
    """``fn`` on ``x`` cast to bf16/fp16 is returned in that dtype and rounds the exact result.

    ``expected64`` is the float64 oracle evaluated on the *rounded* inputs; ``atol`` allows for
    float32 cancellation where the exact result is near 0. Returns the output.
    """
    dtype, rtol = LOW_PRECISION[dtype_name]
    out = fn(jnp.asarray(x, dtype=dtype))
    assert out.dtype == dtype, f"expected {dtype_name} output, got {out.dtype}"
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), expected64, rtol=rtol, atol=atol)
    return out


def rounded(x: np.ndarray, dtype_name: str) -> np.ndarray:
    """``x`` rounded to bf16/fp16 and back to float64, the inputs a low-precision call sees."""
    dtype, _ = LOW_PRECISION[dtype_name]
    return np.asarray(jnp.asarray(x, dtype=dtype), dtype=np.float64)
