"""Shared assertions for the jaxreg test-suite: finiteness, edge-case rules, low precision.

Compilation is what these tests spend their time on, so the functions here that evaluate several
quantities (value, gradient, Hessian of many functions) build one jitted program for all of
them and report every failing entry by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

#: One bf16 ulp, relative (8 significand bits): a correctly rounded float32 result is within it.
BF16_RTOL = 2.0**-8
#: One fp16 ulp, relative (11 significand bits).
FP16_RTOL = 2.0**-10
#: dtype, relative tolerance (one ulp), absolute tolerance (the subnormal spacing).
LOW_PRECISION = {
    "bfloat16": (jnp.bfloat16, BF16_RTOL, 0.0),
    "float16": (jnp.float16, FP16_RTOL, 2.0**-24),
}


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


def assert_each(checks: Mapping[Any, Callable[[], None]]) -> None:
    """Runs every check and fails once, naming every key whose check failed."""
    failures = []
    for key, check in checks.items():
        try:
            check()
        except AssertionError as error:
            failures.append(f"[{key}] {error}")
    assert not failures, "\n".join(failures)


def value_grad_hessian(
    fns: Mapping[Any, Callable[..., jax.Array]], args: Sequence[Any]
) -> dict[Any, tuple[jax.Array, Any, Any]]:
    """Value, gradient and Hessian of ``sum(fn(*args))`` w.r.t. ``args[0]``, for every ``fn``.

    One jitted program for all of them (Hessian: forward over reverse).
    """

    def all_of(*a: Any) -> dict[Any, tuple[jax.Array, Any, Any]]:
        out = {}
        for key, fn in fns.items():

            def scalar(*b: Any, fn: Callable = fn) -> jax.Array:
                return jnp.sum(fn(*b))

            grad = jax.grad(scalar)
            out[key] = (scalar(*a), grad(*a), jax.jacfwd(grad)(*a))
        return out

    return jax.jit(all_of)(*args)


def assert_edge_rules(
    fns: Mapping[Any, Callable[..., jax.Array]],
    args: Sequence[Any],
    *,
    value: float,
    grad: Any | None,
    hessian: bool = True,
) -> None:
    """At an edge point, for every ``fn``: the value and gradient of ``sum(fn(*args))`` equal the
    convention and the Hessian is finite.

    Pass ``grad=None`` to assert only that the gradient has no NaN (where the math is infinite).
    """

    def check(got: tuple[jax.Array, Any, Any]) -> Callable[[], None]:
        def run() -> None:
            got_value, got_grad, got_hessian = got
            np.testing.assert_array_equal(np.asarray(got_value, dtype=np.float64), value)
            if grad is None:
                assert_no_nan(got_grad)
            else:
                assert_finite(got_grad)
                assert_tree_close(got_grad, grad, rtol=0, atol=1e-15)
            if hessian:
                assert_finite(got_hessian)

        return run

    results = value_grad_hessian(fns, args)
    assert_each({key: check(got) for key, got in results.items()})


def is_floating(tree: Any) -> bool:
    """Whether every leaf of ``tree`` is a floating-point array."""
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(x), jnp.floating) for x in leaves)


def check_grads64(
    fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    order: int = 2,
    modes: Sequence[str] = ("fwd", "rev"),
    jit: bool = False,
) -> None:
    """``jax.test_util.check_grads`` in float64 w.r.t. the floating arguments (arrays or pytrees).

    ``jit=True`` checks ``jax.jit(fn)``: cheaper where eager calls are costly (``lax.cond``).
    """
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
    f = jax.jit(on_floats) if jit else on_floats
    # First order in every mode; higher orders through reverse mode (the rule that users'
    # Hessians and gradients-of-gradients go through), which halves the compilations.
    check_grads(f, float_args, order=1, modes=modes)
    if order > 1:
        check_grads(f, float_args, order=order, modes=["rev"])


def generic_point(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitudes in [0.5, 2] with random signs: away from the zeros and (almost surely) from
    the ties where norms have kinks and finite differences are not derivatives."""
    return rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def assert_low_precision(
    cases: Mapping[str, tuple[Callable[[jax.Array], Any], np.ndarray, np.ndarray]],
    dtype_name: str,
    *,
    atol: float = 0.0,
) -> None:
    """Each ``fn`` on its ``x`` cast to bf16/fp16 returns that dtype and rounds the exact result.

    ``cases`` maps a name to ``(fn, x, expected64)``, ``expected64`` being the float64 oracle on
    the *rounded* inputs (see :func:`rounded`); all run in one jitted program. ``atol`` allows
    for float32 cancellation where an exact result is near 0.
    """
    dtype, rtol, subnormal = LOW_PRECISION[dtype_name]
    inputs = {key: jnp.asarray(x, dtype=dtype) for key, (_, x, _) in cases.items()}

    def run_all(xs: dict[str, jax.Array]) -> dict[str, Any]:
        return {key: cases[key][0](x) for key, x in xs.items()}

    outs = jax.jit(run_all)(inputs)

    def check(key: str) -> None:
        out = outs[key]
        assert out.dtype == dtype, f"expected {dtype_name} output, got {out.dtype}"
        np.testing.assert_allclose(
            np.asarray(out, dtype=np.float64), cases[key][2], rtol=rtol, atol=max(atol, subnormal)
        )

    assert_each({key: functools.partial(check, key) for key in cases})


def rounded(x: np.ndarray, dtype_name: str) -> np.ndarray:
    """``x`` rounded to bf16/fp16 and back to float64, the inputs a low-precision call sees."""
    dtype = LOW_PRECISION[dtype_name][0]
    return np.asarray(jnp.asarray(x, dtype=dtype), dtype=np.float64)
