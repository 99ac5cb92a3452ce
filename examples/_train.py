"""Training loops shared by the examples: float64 mode, a scanned JAX loop, nnx <-> pure functions.

The examples compute in float64 so that a JAX run and its torch twin, started from
the same weights, can be compared to rounding error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from examples._common import progress

Metrics = Mapping[str, Any]

#: The examples' programs are small and short-running: compiling them dominates, and
#: XLA's backend optimizations roughly double the compile time for little gain.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jit(fun: Callable | None = None, **kwargs: Any) -> Callable:
    """``jax.jit`` with :data:`FAST_COMPILE` (usable as a decorator, with or without arguments)."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    return jax.jit(fun, compiler_options=FAST_COMPILE, **kwargs)


def use_float64() -> Any:
    """Enables JAX's float64 mode and returns ``jnp.float64``."""
    jax.config.update("jax_enable_x64", True)
    return jnp.float64


def stack(records: Iterable[Metrics]) -> dict[str, np.ndarray]:
    """A list of per-step metric dicts as one dict of float64 NumPy curves."""
    records = list(records)
    if not records:
        return {}
    return {k: np.asarray([float(r[k]) for r in records], np.float64) for k in records[0]}


def _chunk_size(steps: int, chunks: int) -> int:
    """The largest divisor of ``steps`` that gives at most ``chunks`` chunks (one compilation)."""
    return min(d for d in range(1, steps + 1) if steps % d == 0 and steps // d <= chunks)


def scan_loop(
    step: Callable[[Any, Any], tuple[Any, Metrics]],
    carry: Any,
    steps: int,
    *,
    desc: str,
    xs: Any = None,
    chunks: int = 25,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Runs ``carry, metrics = step(carry, x)`` ``steps`` times, jitted in ``lax.scan`` chunks.

    Args:
      step: one training step; ``x`` is the step's slice of ``xs`` (or None).
      carry: the initial state (parameters, optimizer state, ...).
      steps: number of steps.
      desc: the progress bar's label.
      xs: optional per-step inputs, a pytree of arrays with leading axis ``steps``.
      chunks: at most this many chunks (progress bar updates).

    Returns:
      The final carry and the metrics as float64 NumPy curves of length ``steps``.
    """
    return _scan_loop(_scanner(step), carry, steps, desc=desc, xs=xs, chunks=chunks)


@functools.lru_cache(maxsize=16)
def _scanner(step: Callable) -> Callable:
    """``jit(scan(step))``, cached per step function so that repeated runs compile once."""
    return jit(lambda c, x, n: jax.lax.scan(step, c, x, length=n), static_argnums=2)


def _scan_loop(run, carry, steps, *, desc, xs, chunks):
    size = _chunk_size(steps, chunks)
    parts = []
    bar = progress(steps, desc)
    for start in range(0, steps, size):
        x = None if xs is None else jax.tree.map(lambda a: a[start : start + size], xs)  # noqa: B023
        carry, metrics = run(carry, x, size)
        parts.append(jax.tree.map(np.asarray, metrics))
        bar.update(size)
    bar.close()
    curves = {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in parts[0]}
    return carry, curves


@functools.lru_cache(maxsize=16)
def _fit_step(loss_fn: Callable, optimizer: Any, evaluate: Callable | None) -> Callable:
    """The :func:`fit` step for one (loss, optimizer, evaluate) triple, built once."""

    def step(carry, x):
        params, state, hyper = carry
        opt = optimizer(hyper) if hyper is not None else optimizer
        loss, grads = jax.value_and_grad(loss_fn)(params, x, hyper)
        metrics = {"loss": loss, **(evaluate(params) if evaluate else {})}
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state, hyper), metrics

    return step


def fit(
    loss_fn: Callable[[Any, Any, Any], jax.Array],
    params: Any,
    optimizer: optax.GradientTransformation | Callable[[Any], optax.GradientTransformation],
    steps: int,
    *,
    desc: str,
    hyper: Any = None,
    xs: Any = None,
    evaluate: Callable[[Any], Metrics] | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Trains ``params`` on ``loss_fn(params, x, hyper)``; returns the params and the curves.

    The curves hold ``loss`` and whatever ``evaluate(params)`` returns, all measured at
    the parameters *before* each update (so train and test losses are comparable).
    Hyperparameters passed as ``hyper`` (a pytree of arrays) are traced, so runs that
    differ only in them share one compilation; ``optimizer`` is then a function of them.

    Args:
      loss_fn: ``(params, x, hyper) -> scalar``, ``x`` the step's slice of ``xs``.
      params: the initial parameter pytree.
      optimizer: an optax transform, or ``hyper -> transform`` when ``hyper`` is given.
      steps: number of updates.
      desc: the progress bar's label.
      hyper: traced hyperparameters, or None.
      xs: per-step inputs (e.g. minibatch indices) with leading axis ``steps``.
      evaluate: ``params -> dict of scalars`` recorded every step.

    Returns:
      The trained params and a dict of float64 curves of length ``steps``.
    """
    opt = optimizer(hyper) if hyper is not None else optimizer
    hyper = None if hyper is None else jax.tree.map(jnp.asarray, hyper)
    carry = (params, opt.init(params), hyper)
    step = _fit_step(loss_fn, optimizer, evaluate)
    (params, _, _), curves = scan_loop(step, carry, steps, desc=desc, xs=xs)
    return params, curves


def torch_fit(
    loss_fn: Callable[[Any], Any],
    optimizer: Any,
    steps: int,
    *,
    desc: str,
    xs: Any = None,
    evaluate: Callable[[], Metrics] | None = None,
) -> dict[str, np.ndarray]:
    """The torch twin of :func:`fit`: ``loss_fn(x)`` and ``evaluate()`` recorded before each step.

    Runs on one thread: for the examples' tiny tensors, more threads only wait on each other.
    """
    import torch

    records = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in progress(steps, desc):
            x = None if xs is None else jax.tree.map(lambda a: a[i], xs)  # noqa: B023
            loss = loss_fn(x)
            optimizer.zero_grad()
            loss.backward()
            with torch.no_grad():
                records.append({"loss": loss.item(), **(evaluate() if evaluate else {})})
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return stack(records)


def split_model(
    model: Any, call: Callable[[Any, jax.Array], Any] | None = None
) -> tuple[Callable[[Any, jax.Array], Any], Any]:
    """An nnx module as a pure function ``apply(params, x)`` and its ``nnx.Param`` state.

    ``apply`` runs ``call(module, x)`` (default ``module(x)``) on the module rebuilt
    from ``params``, so it can be differentiated and jitted with respect to them.
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    call = call or (lambda module, x: module(x))

    def apply(p: Any, x: jax.Array) -> Any:
        return call(nnx.merge(graphdef, p, rest), x)

    return apply, params


def to_torch(x: Any) -> Any:
    """A NumPy/JAX array as a torch tensor: floating arrays as float64, others as they are."""
    import torch

    a = np.array(x, copy=True)
    return torch.from_numpy(a.astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a)
