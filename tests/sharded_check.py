"""Multi-device checks, run by ``tests/test_sharded.py`` in a process of its own with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the flag must be set before JAX
starts, and must not leak into the other tests).

* ``vocab_parallel_cross_entropy`` under ``jax.shard_map`` with the classes split over 8
  devices equals ``softmax_cross_entropy`` of the whole logits, value and gradient;
* ``vocab_parallel_fused_linear_cross_entropy`` with the weight's columns split over 8
  devices equals ``fused_linear_cross_entropy`` on one device (hidden, weight, bias
  gradients), also on a 2 x 4 mesh with the rows split over ``"data"``;
* both vocab-parallel losses with every option (a padded vocabulary whose last shards
  hold no class, probability targets sharded like the weight) equal the one-device loss;
* a vocabulary that the mesh axis does not divide is refused with an error naming it;
* ``examples.data_parallel --check --quick`` gives the single-device parameters.

Prints one line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxreg
from examples import data_parallel

DEVICES = 8
N, D, V = 12, 6, 40  # V / 8 = 5 columns per device, chunks of 3 overlap at the end


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


def assert_close(name: str, got, want, tol: float = 1e-12) -> None:
    errors = [
        rel_err(g, w) for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    ]
    print(f"{name}: max relative error {max(errors):.1e}")
    assert max(errors) <= tol, (name, errors)


def check_vocab_parallel_cross_entropy(mesh: Mesh, z, y) -> None:
    options = [{}, {"reduction": "none", "label_smoothing": 0.2}, {"reduction": "sum"}]

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
    def sharded(z, y):
        return [jaxreg.vocab_parallel_cross_entropy(z, y, axis_name="vocab", **o) for o in options]

    def whole(z, y):
        return [jaxreg.softmax_cross_entropy(z, y, **o) for o in options]

    def value_and_vjp(fn):
        value, pullback = jax.vjp(lambda z: fn(z, y), z)
        return value, pullback([jnp.ones_like(v) for v in value])

    assert_close(
        "vocab_parallel_cross_entropy",
        *jax.jit(lambda z: (value_and_vjp(sharded), value_and_vjp(whole)))(z),
    )


def check_vocab_parallel_fused(mesh: Mesh, h, w, b, y) -> None:
    kwargs = {"label_smoothing": 0.1, "chunk_size": 3}
    specs = (P(), P(None, "vocab"), P("vocab"))

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=specs, out_specs=P())
    def sharded(h, w, b):
        return jaxreg.vocab_parallel_fused_linear_cross_entropy(
            h, w, y, axis_name="vocab", bias_shard=b, **kwargs
        )

    def whole(h, w, b):
        return jaxreg.fused_linear_cross_entropy(h, w, y, bias=b, **kwargs)

    grads = [jax.value_and_grad(fn, argnums=(0, 1, 2)) for fn in (sharded, whole)]
    assert_close(
        "vocab_parallel_fused_linear_cross_entropy",
        *jax.jit(lambda *a: [g(*a) for g in grads])(h, w, b),
    )


def check_every_option(mesh: Mesh, h, w, b, y, rng) -> None:
    """Both vocab-parallel losses with every option under ``shard_map`` (class and token
    weights, smoothing, z-loss, soft-capping, 17 classes of 40 so that the last shards
    hold only padding, the aux outputs; integer and probability targets) equal the
    single-device fused loss, values and gradients (hidden, weight, bias, probabilities)."""
    t = rng.uniform(0, 1, (N, V))
    t /= t.sum(-1, keepdims=True)
    yc = np.where(y >= 17, 3, y)
    options = {
        "weight": np.linspace(0.5, 1.5, 17),
        "token_weight": rng.uniform(0, 2, N),
        "label_smoothing": 0.1,
        "z_loss": 0.05,
        "softcap": 3.0,
        "num_valid_classes": 17,
        "return_aux": True,
    }

    def scalar(out):
        loss, aux = out
        return jnp.sum(loss) + 0.3 * jnp.sum(aux.logsumexp), aux.num_correct

    for name, labels, label_spec in (("labels", yc, P()), ("probabilities", t, P(None, "vocab"))):
        specs = (P(), P(None, "vocab"), P("vocab"), label_spec)

        @functools.partial(jax.shard_map, mesh=mesh, in_specs=specs, out_specs=(P(), P()))
        def fused(h, w, b, labels):
            return scalar(
                jaxreg.vocab_parallel_fused_linear_cross_entropy(
                    h, w, labels, axis_name="vocab", bias_shard=b, chunk_size=3, **options
                )
            )

        @functools.partial(jax.shard_map, mesh=mesh, in_specs=specs, out_specs=(P(), P()))
        def logits(h, w, b, labels):
            z = h @ w + b[None, :]
            return scalar(
                jaxreg.vocab_parallel_cross_entropy(z, labels, axis_name="vocab", **options)
            )

        def whole(h, w, b, labels):
            return scalar(jaxreg.fused_linear_cross_entropy(h, w, labels, bias=b, **options))

        argnums = (0, 1, 2, 3) if labels.dtype.kind == "f" else (0, 1, 2)
        grads = [
            jax.value_and_grad(fn, argnums=argnums, has_aux=True) for fn in (fused, logits, whole)
        ]
        got_fused, got_logits, want = jax.jit(lambda *a, gs=grads: [g(*a) for g in gs])(
            h, w, b, labels
        )
        assert_close(f"every option, {name}, fused", got_fused, want)
        assert_close(f"every option, {name}, logits", got_logits, want)


def check_data_and_vocab_parallel(h, w, y) -> None:
    """Rows split over "data" (2), columns over "vocab" (4): per-device sums, then a psum."""
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "vocab"))

    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P("data"), P(None, "vocab"), P("data")), out_specs=P()
    )
    def sharded(h, w, y):
        loss = jaxreg.vocab_parallel_fused_linear_cross_entropy(
            h, w, y, axis_name="vocab", reduction="sum", chunk_size=4
        )
        return jax.lax.psum(loss, "data")

    def whole(h, w, y):
        return jaxreg.fused_linear_cross_entropy(h, w, y, reduction="sum")

    grads = [jax.value_and_grad(fn, argnums=(0, 1)) for fn in (sharded, whole)]
    assert_close("data x vocab parallel", *jax.jit(lambda *a: [g(*a) for g in grads])(h, w, y))


def check_indivisible_vocab_is_refused(mesh: Mesh, z, y) -> None:
    fn = jax.shard_map(
        lambda z, y: jaxreg.vocab_parallel_cross_entropy(z, y, axis_name="vocab"),
        mesh=mesh,
        in_specs=(P(None, "vocab"), P()),
        out_specs=P(),
    )
    try:
        fn(z[:, :-4], y)
    except ValueError as e:
        assert "divide" in str(e), e
        print(
            f"vocabulary of {V - 4} over {DEVICES} devices: ValueError ({str(e).splitlines()[0]})"
        )
    else:
        raise AssertionError("an indivisible vocabulary was not refused")


def main() -> None:
    assert jax.device_count() == DEVICES, f"expected {DEVICES} devices, got {jax.devices()}"
    difference = data_parallel.main(["--check", "--quick"])
    print(f"data_parallel: largest parameter difference {difference:.1e}")
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    rng = np.random.default_rng(0)
    mesh = Mesh(np.array(jax.devices()), ("vocab",))
    y = rng.integers(0, V, N)
    y[:2] = -100, V - 1
    h, w, b = rng.standard_normal((N, D)), rng.standard_normal((D, V)), rng.standard_normal(V)
    check_vocab_parallel_cross_entropy(mesh, h @ w, y)
    check_vocab_parallel_fused(mesh, h, w, b, y)
    check_data_and_vocab_parallel(h, w, y)
    check_every_option(mesh, h, w, b, y, rng)
    check_indivisible_vocab_is_refused(mesh, h @ w, y)
    print("all sharded checks passed")


if __name__ == "__main__":
    main()
