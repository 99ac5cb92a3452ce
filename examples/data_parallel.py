"""Data-parallel training on a ``jax.sharding.Mesh``: the same parameters as on one device.

A small MLP regression (``y = sin(x·u) + ε``, 16 → 64 → 1, tanh) is trained with
``jaxreg.optim.adamw`` (weight decay on the weight matrices only, via
``jaxreg.weights_only``) twice from the same initial parameters and minibatches:

* on one device;
* on a mesh of every device with one axis ``"data"``: each minibatch is placed with
  ``NamedSharding(mesh, P("data"))`` (split by rows across the devices) and the
  parameters and optimizer state with ``NamedSharding(mesh, P())`` (replicated).

The training step is the same jitted function in both runs; XLA partitions it from the
shardings of its inputs, so the loss (a mean over the batch) becomes per-device partial
sums and one all-reduce, and every device applies the same update. The runs differ only
in the order of the float32 sums, and the parameters agree to float32 rounding.

Run with 8 simulated CPU devices (the flag must be set before JAX starts)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m examples.data_parallel

``--check`` exits with status 1 unless the parameters agree to ``1e-6``; ``--quick`` trains
a few steps.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxreg
import jaxreg.optim
from examples._common import progress

FEATURES, HIDDEN = 16, 64
BATCH = 64  # rows per step, split evenly over up to 64 devices
TOLERANCE = 1e-6

Params = dict[str, jax.Array]


def make_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``x ~ N(0, I)`` and ``y = sin(x·u) + 0.1 ε``, float32."""
    u = rng.standard_normal(FEATURES) / np.sqrt(FEATURES)
    x = rng.standard_normal((n, FEATURES))
    y = np.sin(x @ u) + 0.1 * rng.standard_normal(n)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def init_params(key: jax.Array) -> Params:
    """Xavier-uniform weights (``jaxreg.xavier_uniform``), zero biases."""
    k1, k2 = jax.random.split(key)
    init = jaxreg.xavier_uniform()
    return {
        "w1": init(k1, (FEATURES, HIDDEN), jnp.float32),
        "b1": jnp.zeros((HIDDEN,), jnp.float32),
        "w2": init(k2, (HIDDEN, 1), jnp.float32),
        "b2": jnp.zeros((1,), jnp.float32),
    }


def predict(params: Params, x: jax.Array) -> jax.Array:
    hidden = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    return hidden @ params["w2"] + params["b2"][None, :]


def loss_fn(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jaxreg.mse_loss(predict(params, x), y)


def make_step(optimizer: optax.GradientTransformation):
    """One jitted training step; where it runs follows from its inputs' shardings."""

    @jax.jit
    def step(params: Params, opt_state: Any, x: jax.Array, y: jax.Array):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train(
    params: Params,
    data: tuple[np.ndarray, np.ndarray],
    steps: int,
    *,
    mesh: Mesh | None,
    desc: str,
) -> tuple[Params, float]:
    """``steps`` of AdamW on consecutive minibatches; with a ``mesh``, data parallel."""
    optimizer = jaxreg.optim.adamw(1e-2, weight_decay=1e-2, mask=jaxreg.weights_only)
    step = make_step(optimizer)
    x_all, y_all = data
    if mesh is None:
        device = jax.devices()[0]
        replicated = batch = device
    else:
        replicated = NamedSharding(mesh, P())
        batch = NamedSharding(mesh, P("data"))
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(optimizer.init(params), replicated)
    loss = jnp.zeros(())
    for i in progress(steps, desc):
        rows = slice((i * BATCH) % len(x_all), (i * BATCH) % len(x_all) + BATCH)
        x, y = jax.device_put((x_all[rows], y_all[rows]), batch)
        params, opt_state, loss = step(params, opt_state, x, y)
    return params, float(loss)


def max_difference(a: Params, b: Params) -> float:
    """The largest ``|a - b|`` over every parameter."""
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def main(argv: Sequence[str] | None = None) -> float:
    """Trains on one device and on all of them; returns the largest parameter difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, for smoke tests")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 unless the runs agree to {TOLERANCE:g}"
    )
    args = parser.parse_args(argv)
    devices = jax.devices()
    if BATCH % len(devices):
        raise SystemExit(f"the batch of {BATCH} rows does not split over {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("data",))
    steps = 20 if args.quick else 300
    data = make_data(np.random.default_rng(0), 16 * BATCH)
    params = init_params(jax.random.key(0))
    single, single_loss = train(params, data, steps, mesh=None, desc="1 device")
    sharded, sharded_loss = train(params, data, steps, mesh=mesh, desc=f"{len(devices)} devices")
    assert sharded["w1"].sharding.is_equivalent_to(NamedSharding(mesh, P()), 2)
    difference = max_difference(single, sharded)
    print(
        f"{steps} AdamW steps, batch {BATCH}: loss {single_loss:.5f} on 1 device, "
        f"{sharded_loss:.5f} on {len(devices)} ({devices[0].platform}); "
        f"largest parameter difference {difference:.2e}"
    )
    if args.check and not difference <= TOLERANCE:
        raise SystemExit(f"data-parallel parameters differ by {difference:.2e} > {TOLERANCE:g}")
    return difference


if __name__ == "__main__":
    main()
