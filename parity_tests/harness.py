"""The parity harness: run a jaxreg function and its torch twin on the same
NumPy inputs, in float32 and float64, on every available device, and compare
values and gradients.

Every parity test and the parity report go through :func:`compare` (one pair of
functions, one dtype, one device) or :func:`run_case` (a registered
:class:`ParityCase`). Gradients are vector-Jacobian products with the same
random cotangent on both sides, so non-scalar outputs are compared too.

Errors are measured norm-wise: ``abs = max|jax - torch|`` over finite entries,
``rel = abs / max|torch|``; a comparison passes when ``abs <= max(rtol * max|torch|,
atol)`` with the one per-dtype table :data:`TOLERANCES`, non-finite entries sit
at the same places with the same values (``inf`` only where the math is
infinite), and no NaN appears anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import torch

DTYPES: tuple[str, ...] = ("float32", "float64")


@contextlib.contextmanager
def parity_settings() -> Iterator[None]:
    """The settings a comparison runs under, for its duration only.

    float64 enabled in JAX, matmuls at full precision in JAX, and no TF32 in torch's
    matmuls and convolutions on GPU; the caller's settings are restored afterwards
    (importing this module changes nothing).
    """
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with jax.enable_x64(True), jax.default_matmul_precision("highest"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Norm-wise tolerance: pass when ``max|a-b| <= max(rtol * max|b|, atol)``."""

    rtol: float
    atol: float


#: The one tolerance table, per dtype, for values and gradients alike.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
    "float64": Tolerance(rtol=1e-12, atol=1e-14),
}


@dataclasses.dataclass(frozen=True)
class Device:
    """A device on which both frameworks run: its name, the jax and torch devices."""

    name: str
    jax_device: Any
    torch_device: torch.device


@functools.cache
def available_devices() -> tuple[Device, ...]:
    """The CPU, plus the first GPU when both JAX and torch can see one."""
    devices = [Device("cpu", jax.devices("cpu")[0], torch.device("cpu"))]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if gpus and torch.cuda.is_available():
        devices.append(Device("gpu", gpus[0], torch.device("cuda:0")))
    return tuple(devices)


def get_device(name: str) -> Device:
    for device in available_devices():
        if device.name == name:
            return device
    raise ValueError(
        f"device {name!r} is not available; have {[d.name for d in available_devices()]}"
    )


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """The outcome of one comparison (one function, dtype, device)."""

    name: str
    reference: str
    dtype: str
    device: str
    value_abs: float
    value_rel: float
    grad_abs: float
    grad_rel: float
    tolerance: Tolerance
    passed: bool
    problems: tuple[str, ...] = ()

    def __str__(self) -> str:
        status = "ok" if self.passed else "FAIL: " + "; ".join(self.problems)
        return (
            f"{self.name} vs {self.reference} [{self.dtype}, {self.device}]: "
            f"value abs {self.value_abs:.2e} rel {self.value_rel:.2e}, "
            f"grad abs {self.grad_abs:.2e} rel {self.grad_rel:.2e} "
            f"(rtol {self.tolerance.rtol:g}) {status}"
        )


@dataclasses.dataclass(frozen=True)
class ParityCase:
    """A registered comparison, collected by the report from ``parity_tests.test_*``.

    Attributes:
      name: the jaxreg function, as ``module.function`` (plus a short variant tag).
      jax_fn: takes the inputs as JAX arrays; hyperparameters are bound in a closure.
      torch_fn: takes the same inputs as torch tensors.
      inputs: ``rng -> tuple of NumPy arrays``; floating arrays are cast to the
        dtype under test, integer and boolean arrays are passed unchanged.
      grad_argnums: the inputs to differentiate with respect to (floating only).
      reference: what ``torch_fn`` is: ``"torch_ref"`` or ``"torch"`` (a raw torch
        function, compared only where it is finite).
      dtypes: the dtypes to run.
    """

    name: str
    jax_fn: Callable[..., Any]
    torch_fn: Callable[..., Any]
    inputs: Callable[[np.random.Generator], Sequence[Any]]
    grad_argnums: Sequence[int] = (0,)
    reference: str = "torch_ref"
    dtypes: Sequence[str] = DTYPES


def case_rng(name: str) -> np.random.Generator:
    """A generator seeded from a case name, the same in every process."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def run_case(case: ParityCase, dtype: str, device: str = "cpu") -> ParityResult:
    """Runs one registered case in one dtype on one device."""
    return compare(
        case.jax_fn,
        case.torch_fn,
        case.inputs(case_rng(case.name)),
        dtype=dtype,
        device=device,
        grad_argnums=case.grad_argnums,
        name=case.name,
        reference=case.reference,
    )


def _cast(x: Any, dtype: str) -> np.ndarray:
    """Floating inputs in ``dtype``, with the entries that are subnormal there set to 0.

    XLA:CPU flushes subnormal numbers to zero in some operations and not in others
    (``relu(1e-45)`` is 0 in float32, torch keeps it), so a subnormal input would
    compare the platforms' flushing, not the functions: both sides get 0 instead.
    """
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(dtype)
        return np.where(np.abs(x) < np.finfo(x.dtype).tiny, np.zeros_like(x), x)
    return x


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _errors(
    got: Sequence[np.ndarray], want: Sequence[np.ndarray], tol: Tolerance, what: str
) -> tuple[float, float, list[str]]:
    """Norm-wise absolute and relative error over a list of arrays, plus problems."""
    problems: list[str] = []
    max_err, max_ref = 0.0, 0.0
    if len(got) != len(want):
        return np.inf, np.inf, [f"{what}: {len(got)} jax outputs vs {len(want)} torch outputs"]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            problems.append(f"{what}[{i}]: shape {g.shape} vs torch {w.shape}")
            continue
        if np.isnan(g).any():
            problems.append(f"{what}[{i}]: jax has NaN")
        if np.isnan(w).any():
            problems.append(f"{what}[{i}]: torch has NaN")
        finite = np.isfinite(g) & np.isfinite(w)
        if not np.array_equal(g[~finite], w[~finite], equal_nan=True):
            problems.append(f"{what}[{i}]: non-finite entries differ")
        if finite.any():
            max_err = max(max_err, float(np.max(np.abs(g[finite] - w[finite]))))
            max_ref = max(max_ref, float(np.max(np.abs(w[finite]))))
    rel = max_err / max_ref if max_ref > 0 else (0.0 if max_err == 0 else np.inf)
    if max_err > max(tol.rtol * max_ref, tol.atol):
        problems.append(f"{what}: error {max_err:.3e} (rel {rel:.3e}) over tolerance")
    return max_err, rel, problems


@functools.lru_cache(maxsize=512)
def _jax_value_and_vjp(jax_fn: Callable[..., Any], grad_argnums: tuple[int, ...]):
    """``jit((args, cotangents) -> (value, VJP w.r.t. grad_argnums))``, cached per function."""

    @jax.jit
    def run(args, cotangents):
        if not grad_argnums:
            return jax_fn(*args), []

        def partial_fn(*diff):
            full = list(args)
            for i, d in zip(grad_argnums, diff, strict=True):
                full[i] = d
            return jax_fn(*full)

        out, pullback = jax.vjp(partial_fn, *[args[i] for i in grad_argnums])
        treedef = jax.tree_util.tree_structure(out)
        return out, list(pullback(jax.tree_util.tree_unflatten(treedef, cotangents)))

    return run


def compare(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    dtype: str = "float64",
    device: str = "cpu",
    grad_argnums: Sequence[int] = (0,),
    name: str = "",
    reference: str = "torch_ref",
    tolerance: Tolerance | None = None,
    seed: int = 0,
) -> ParityResult:
    """Runs ``jax_fn`` (jitted) and ``torch_fn`` on the same inputs; compares values and VJPs.

    Args:
      jax_fn: a function of JAX arrays returning an array or a pytree of arrays.
      torch_fn: its torch twin, returning a tensor or the same structure of tensors.
      inputs: NumPy arrays (or scalars); floating ones are cast to ``dtype``.
      dtype: ``"float32"`` or ``"float64"``.
      device: ``"cpu"`` or ``"gpu"`` (see :func:`available_devices`).
      grad_argnums: indices of the (floating) inputs to differentiate; ``()`` for none.
      name, reference: labels for the result.
      tolerance: overrides the dtype's row of :data:`TOLERANCES` (use sparingly, say why).
      seed: seeds the random cotangent.

    Returns:
      A :class:`ParityResult` with the largest value and gradient errors.
    """
    with parity_settings():
        return _compare(
            jax_fn,
            torch_fn,
            inputs,
            dtype=dtype,
            device=device,
            grad_argnums=grad_argnums,
            name=name,
            reference=reference,
            tolerance=tolerance,
            seed=seed,
        )


def _compare(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    dtype: str,
    device: str,
    grad_argnums: Sequence[int],
    name: str,
    reference: str,
    tolerance: Tolerance | None,
    seed: int,
) -> ParityResult:
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be one of {list(TOLERANCES)}, got {dtype!r}")
    tol = tolerance or TOLERANCES[dtype]
    dev = get_device(device)
    args = [_cast(x, dtype) for x in inputs]
    grad_argnums = tuple(grad_argnums)
    for i in grad_argnums:
        if not np.issubdtype(args[i].dtype, np.floating):
            raise TypeError(f"grad_argnums includes input {i} of dtype {args[i].dtype}")

    # --- JAX: the value and the VJP in one compiled call; the cotangent's shapes come
    # from tracing alone (eval_shape), so nothing is compiled twice.
    jargs = [jax.device_put(a, dev.jax_device) for a in args]
    out_shapes = jax.tree_util.tree_leaves(jax.eval_shape(jax_fn, *jargs))
    rng = np.random.default_rng(seed)
    cotangents = [
        rng.standard_normal(leaf.shape).astype(leaf.dtype)
        if np.issubdtype(leaf.dtype, np.inexact)
        else np.zeros(leaf.shape, leaf.dtype)
        for leaf in out_shapes
    ]
    jax_out, jax_grads_raw = _jax_value_and_vjp(jax_fn, grad_argnums)(
        jargs, [jax.device_put(c, dev.jax_device) for c in cotangents]
    )
    jax_leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax_out)]
    jax_grads = [np.asarray(g) for g in jax_grads_raw]
    # Where the value is infinite its derivative is not compared: zero the cotangent
    # there and recompute (rare: only the edge cases with infinite values).
    finite = [np.isfinite(leaf) | ~np.issubdtype(leaf.dtype, np.inexact) for leaf in jax_leaves]
    if grad_argnums and not all(f.all() for f in finite):
        cotangents = [
            np.where(f, c, 0).astype(c.dtype) for f, c in zip(finite, cotangents, strict=True)
        ]
        _, jax_grads_raw = _jax_value_and_vjp(jax_fn, grad_argnums)(
            jargs, [jax.device_put(c, dev.jax_device) for c in cotangents]
        )
        jax_grads = [np.asarray(g) for g in jax_grads_raw]

    # --- torch: the same inputs, cotangents and devices.
    targs = []
    for i, a in enumerate(args):
        t = torch.from_numpy(np.array(a)).to(dev.torch_device)
        if i in grad_argnums:
            t.requires_grad_(True)
        targs.append(t)
    torch_out = torch_fn(*targs)
    torch_leaves = jax.tree_util.tree_leaves(torch_out)
    torch_values = [_to_numpy(t) for t in torch_leaves]
    torch_grads: list[np.ndarray] = []
    if grad_argnums:
        pairs = [
            (t, torch.from_numpy(c).to(dev.torch_device))
            for t, c in zip(torch_leaves, cotangents, strict=False)
            if isinstance(t, torch.Tensor) and t.requires_grad
        ]
        wrt = [targs[i] for i in grad_argnums]
        if pairs:
            grads = torch.autograd.grad(
                [p[0] for p in pairs], wrt, grad_outputs=[p[1] for p in pairs], allow_unused=True
            )
        else:
            grads = [None] * len(wrt)
        torch_grads = [
            np.zeros(w.shape, dtype=args[i].dtype) if g is None else _to_numpy(g)
            for g, w, i in zip(grads, wrt, grad_argnums, strict=True)
        ]

    value_abs, value_rel, problems = _errors(jax_leaves, torch_values, tol, "value")
    grad_abs, grad_rel, grad_problems = _errors(jax_grads, torch_grads, tol, "grad")
    problems += grad_problems
    for leaf in jax_leaves:
        if leaf.dtype != np.dtype(dtype) and np.issubdtype(leaf.dtype, np.floating):
            problems.append(f"jax returned {leaf.dtype} for {dtype} inputs")
    return ParityResult(
        name=name or getattr(jax_fn, "__name__", "fn"),
        reference=reference,
        dtype=dtype,
        device=device,
        value_abs=value_abs,
        value_rel=value_rel,
        grad_abs=grad_abs,
        grad_rel=grad_rel,
        tolerance=tol,
        passed=not problems,
        problems=tuple(problems),
    )


def assert_parity(result: ParityResult) -> None:
    """Fails the calling test with the full result when it did not pass."""
    assert result.passed, str(result)


def check_case(case: ParityCase) -> None:
    """Runs a case in every dtype on every available device and asserts parity."""
    for device in available_devices():
        for dtype in case.dtypes:
            assert_parity(run_case(case, dtype, device.name))
