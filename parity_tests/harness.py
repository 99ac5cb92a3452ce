"""The parity harness: run a JAX function and its torch twin on the same NumPy
inputs, in float32 and float64 (bfloat16 and float16 on request), on every available
device, and compare values and gradients.

Every parity test and the parity report go through :func:`compare` (one pair of
functions, one dtype, one device) or :func:`run_case` (a registered
:class:`ParityCase`); :func:`assert_close_parity` is the one-line pytest form.
Gradients are vector-Jacobian products with the same random cotangent on both
sides, so non-scalar outputs are compared too. Whole models and training runs are
compared by :mod:`parity_tests.models` and :mod:`parity_tests.training`.

Errors are measured per leaf, named by its pytree path (:mod:`parity_tests.errors`):
``abs = max|jax - torch|`` over finite entries, ``rel = abs / max|torch|``; a leaf
passes when ``abs <= max(rtol * max|torch|, atol)`` with the one per-dtype table
:data:`TOLERANCES`, its non-finite entries sit at the same places with the same
values (``inf`` only where the math is infinite), and no NaN appears anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import ml_dtypes
import numpy as np
import torch

from parity_tests._sides import run_jax, run_torch, to_numpy, to_torch
from parity_tests.errors import (
    DTYPES,
    LOW_PRECISION_DTYPES,
    TOLERANCES,
    LeafError,
    Tolerance,
    is_floating,
    leaf_error,
    numpy_dtype,
    worst,
)

__all__ = [
    "DTYPES",
    "LOW_PRECISION_DTYPES",
    "TOLERANCES",
    "Device",
    "LeafError",
    "ParityCase",
    "ParityResult",
    "Tolerance",
    "assert_close_parity",
    "assert_parity",
    "available_devices",
    "cast_input",
    "case_rng",
    "check_case",
    "compare",
    "get_device",
    "parity_settings",
    "register",
    "registered_cases",
    "run_case",
    "to_numpy",
    "to_torch",
    "torch_dtype",
]


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
    """The outcome of one comparison (one function, dtype, device).

    ``value_abs``/``value_rel`` (and ``grad_*``) are the largest errors over all output
    (gradient) leaves, relative to the largest reference entry, as the report prints
    them; ``leaves`` holds each leaf's own error, named by its path (``value``,
    ``value[0]``, ``value['loss']``, ``grad[2]`` for the input at index 2), and a leaf
    passes against its own scale. :attr:`worst` is the leaf furthest over tolerance.
    """

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
    leaves: tuple[LeafError, ...] = ()

    @property
    def worst(self) -> LeafError | None:
        """The leaf with the largest error relative to what it is allowed."""
        return worst(self.leaves)

    def __str__(self) -> str:
        status = "ok" if self.passed else "FAIL: " + "; ".join(self.problems)
        text = (
            f"{self.name} vs {self.reference} [{self.dtype}, {self.device}]: "
            f"value abs {self.value_abs:.2e} rel {self.value_rel:.2e}, "
            f"grad abs {self.grad_abs:.2e} rel {self.grad_rel:.2e} "
            f"(rtol {self.tolerance.rtol:g}) {status}"
        )
        leaf = self.worst
        if not self.passed and leaf is not None and not leaf.passed:
            text += f"\n  worst leaf {leaf.describe()}"
        return text


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


#: (the registering module's name, case), in order.
_REGISTERED: list[tuple[str, ParityCase]] = []


def register(*cases: ParityCase) -> None:
    """Adds cases to the parity report, for ``python -m parity_tests --cases MODULE``.

    The report collects, from each module it is given, the cases that module
    registered, its ``CASES`` list, and any other module-level :class:`ParityCase`;
    call this where cases are built in a loop or a function.

    Example:
      >>> import jaxreg, torch_ref
      >>> register(ParityCase("mine.logsumexp", jaxreg.logsumexp, torch_ref.logsumexp,
      ...                     lambda rng: (rng.standard_normal((3, 4)),)))
      >>> registered_cases()[-1].name
      'mine.logsumexp'
    """
    frame = inspect.currentframe()
    caller = frame.f_back.f_globals.get("__name__", "") if frame and frame.f_back else ""
    for case in cases:
        if not isinstance(case, ParityCase):
            raise TypeError(f"register takes ParityCase instances, got {type(case).__name__}")
        _REGISTERED.append((caller, case))


def registered_cases(module: str | None = None) -> tuple[ParityCase, ...]:
    """The cases given to :func:`register` (by the module named ``module``, if given)."""
    return tuple(case for name, case in _REGISTERED if module in (None, name))


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


def cast_input(x: Any, dtype: str) -> np.ndarray:
    """Floating inputs in ``dtype``, with the entries that are subnormal there set to 0.

    XLA:CPU flushes subnormal numbers to zero in some operations and not in others
    (``relu(1e-45)`` is 0 in float32, torch keeps it), so a subnormal input would
    compare the platforms' flushing, not the functions: both sides get 0 instead.
    """
    x = np.asarray(x)
    if is_floating(x.dtype):
        x = x.astype(numpy_dtype(dtype))
        tiny = ml_dtypes.finfo(x.dtype).tiny
        return np.where(np.abs(x) < tiny, np.zeros_like(x), x)
    return x


_TORCH_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a dtype name of the tolerance table."""
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {list(_TORCH_DTYPES)}, got {dtype!r}")
    return _TORCH_DTYPES[dtype]


def _leaf_errors(
    names: Sequence[str],
    got: Sequence[np.ndarray],
    want: Sequence[np.ndarray],
    tol: Tolerance,
    what: str,
) -> tuple[float, float, list[str], list[LeafError]]:
    """Per-leaf errors, plus the norm-wise error over all leaves and every problem."""
    if len(got) != len(want):
        problem = f"{what}: {len(got)} jax outputs vs {len(want)} torch outputs"
        return np.inf, np.inf, [problem], []
    leaves = [leaf_error(n, g, w, tol) for n, g, w in zip(names, got, want, strict=True)]
    compared = [leaf for leaf in leaves if leaf.index is not None]
    max_err = max((leaf.abs for leaf in compared), default=0.0)
    max_ref = max((leaf.scale for leaf in compared), default=0.0)
    rel = max_err / max_ref if max_ref > 0 else (0.0 if max_err == 0 else np.inf)
    return max_err, rel, [p for leaf in leaves for p in leaf.problems], leaves


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
      dtype: a row of :data:`TOLERANCES`: ``"float32"``, ``"float64"``, ``"bfloat16"``
        or ``"float16"``.
      device: ``"cpu"`` or ``"gpu"`` (see :func:`available_devices`).
      grad_argnums: indices of the (floating) inputs to differentiate; ``()`` for none.
      name, reference: labels for the result.
      tolerance: overrides the dtype's row of :data:`TOLERANCES` (use sparingly, say why).
      seed: seeds the random cotangent.

    Returns:
      A :class:`ParityResult`: the largest value and gradient errors, and each leaf's
      error named by its path (``value``, ``value[0]``, ``grad[i]`` for input ``i``).
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
    args = [cast_input(x, dtype) for x in inputs]
    grad_argnums = tuple(grad_argnums)
    for i in grad_argnums:
        if not is_floating(args[i].dtype):
            raise TypeError(f"grad_argnums includes input {i} of dtype {args[i].dtype}")

    jax_side = run_jax(jax_fn, args, grad_argnums, dev.jax_device, seed)
    torch_values, torch_grads = run_torch(
        torch_fn, args, grad_argnums, jax_side.cotangents, dev.torch_device
    )
    jax_leaves, jax_grads = jax_side.values, jax_side.grads

    value_names = ["value" + jax.tree_util.keystr(p) for p in jax_side.paths]
    value_abs, value_rel, problems, leaves = _leaf_errors(
        value_names, jax_leaves, torch_values, tol, "value"
    )
    grad_names = [f"grad[{i}]" for i in grad_argnums]
    grad_abs, grad_rel, grad_problems, grad_leaves = _leaf_errors(
        grad_names, jax_grads, torch_grads, tol, "grad"
    )
    problems += grad_problems
    for leaf in jax_leaves:
        if leaf.dtype != numpy_dtype(dtype) and is_floating(leaf.dtype):
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
        leaves=(*leaves, *grad_leaves),
    )


def _failure_message(result: ParityResult) -> str:
    """The result, then every leaf over tolerance, worst first (as torch.testing does)."""
    bad = sorted((leaf for leaf in result.leaves if not leaf.passed), key=lambda x: -x.ratio)
    lines = [str(result).split("\n")[0]]
    lines += ["  " + leaf.describe() for leaf in bad]
    return "\n".join(lines)


def assert_parity(result: ParityResult) -> None:
    """Fails the calling test when ``result`` did not pass.

    The message is the result, then each leaf over tolerance (worst first) with its
    path, the index of its largest difference and both values there, e.g.::

        grad[1]: 3 / 12 entries over tolerance; greatest difference 2.000e-03 (rel 1.0e-03,
        allowed 2.0e-12) at index (2, 0): jax 1.002, torch 1.0
    """
    if not result.passed:
        raise AssertionError(_failure_message(result))


def assert_close_parity(
    jax_fn: Callable[..., Any],
    torch_fn: Callable[..., Any],
    inputs: Sequence[Any],
    **kwargs: Any,
) -> ParityResult:
    """:func:`compare`, then :func:`assert_parity`: one line in a pytest test.

    Args:
      jax_fn, torch_fn, inputs: as for :func:`compare`.
      **kwargs: the keyword arguments of :func:`compare` (``dtype``, ``grad_argnums``,
        ``tolerance``, ...).

    Returns:
      The :class:`ParityResult`, when it passed.

    Raises:
      AssertionError: naming the worst leaf, its index and both values.

    Example:
      >>> import jaxreg, torch_ref
      >>> x = np.linspace(-2.0, 2.0, 6).reshape(2, 3)
      >>> assert_close_parity(jaxreg.logsumexp, torch_ref.logsumexp, [x]).passed
      True
    """
    result = compare(jax_fn, torch_fn, inputs, **kwargs)
    assert_parity(result)
    return result


def check_case(case: ParityCase) -> None:
    """Runs a case in every dtype on every available device and asserts parity."""
    for device in available_devices():
        for dtype in case.dtypes:
            assert_parity(run_case(case, dtype, device.name))
