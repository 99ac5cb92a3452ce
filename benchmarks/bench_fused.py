"""Fused linear cross-entropy against the unfused loss: time and compiled memory.

The anchor ("naive") is ``jaxreg.softmax_cross_entropy(hidden @ weight, labels)``
under ``jax.jit``: XLA's own fusion, with the ``[N, V]`` logits in memory. Both are
timed as loss + gradients with respect to ``hidden`` and ``weight``, interleaved in
one process (medians over rounds). The memory table compiles the same programs at
``N=8192, D=4096, V=128256`` for the default backend without running them and reads
XLA's ``memory_analysis()``: ``temp`` is the scratch memory beyond the inputs and
outputs, the part that the fused loss keeps small.

    python -m benchmarks.bench_fused [--quick]

On a CPU the timing shape is small (``N=1024, D=256, V=16384``; ``--quick``:
``256, 128, 4096``); on a GPU it is the memory shape, in float32 and bfloat16.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxreg
from benchmarks.common import block, format_table, medians, paired_ratio, sample_interleaved

BIG = (8192, 4096, 128256)  # tokens, model width, LLaMA-3 vocabulary
MiB = 2**20


def naive(hidden: jax.Array, weight: jax.Array, labels: jax.Array) -> jax.Array:
    """The unfused loss: the full logits, then softmax cross-entropy."""
    return jaxreg.softmax_cross_entropy(hidden @ weight, labels)


def fused(hidden: jax.Array, weight: jax.Array, labels: jax.Array, chunk_size=None) -> jax.Array:
    return jaxreg.fused_linear_cross_entropy(hidden, weight, labels, chunk_size=chunk_size)


def loss_and_grad(fn: Callable[..., jax.Array]) -> Callable[..., Any]:
    """``jit(value_and_grad)`` with respect to hidden and weight."""
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))


def make_inputs(n: int, d: int, v: int, dtype: Any, seed: int = 0) -> tuple[jax.Array, ...]:
    """Hidden states and a weight scaled so the logits have unit spread; random labels."""
    key_h, key_w, key_y = jax.random.split(jax.random.key(seed), 3)
    hidden = jax.random.normal(key_h, (n, d), jnp.float32).astype(dtype)
    weight = (jax.random.normal(key_w, (d, v), jnp.float32) / np.sqrt(d)).astype(dtype)
    labels = jax.random.randint(key_y, (n,), 0, v, jnp.int32)
    return hidden, weight, labels


def time_table(shapes: list[tuple[int, int, int]], dtypes: list[Any], rounds: int) -> list[list]:
    """Rows ``[shape, dtype, candidate, ms, ratio to naive, |loss - naive loss|]``."""
    rows = []
    for n, d, v in shapes:
        for dtype in dtypes:
            args = make_inputs(n, d, v, dtype)
            candidates = {"naive": loss_and_grad(naive), "fused": loss_and_grad(fused)}
            if jax.default_backend() == "cpu":
                # A chunk 4x the default: fewer, larger matmuls.
                chunk = 4 * jaxreg.fused._default_chunk_size(n, v)
                if chunk < v:
                    candidates[f"fused chunk={chunk}"] = loss_and_grad(
                        functools.partial(fused, chunk_size=chunk)
                    )
            losses = {k: float(fn(*args)[0]) for k, fn in candidates.items()}
            samples = sample_interleaved(
                {k: (lambda fn=fn, args=args: block(fn(*args))) for k, fn in candidates.items()},
                rounds=rounds,
                min_time=0.0,
                warmup=1,
            )
            t = medians(samples)
            for k in candidates:
                rows.append(
                    [
                        f"{n}x{d}x{v}",
                        jnp.dtype(dtype).name,
                        k,
                        t[k] * 1e3,
                        paired_ratio(samples, k, "naive"),
                        f"{abs(losses[k] - losses['naive']):.1e}",
                    ]
                )
    return rows


def memory_table(shape: tuple[int, int, int], dtypes: list[Any]) -> list[list]:
    """Rows ``[dtype, candidate, temp MiB, output MiB, temp ratio, has an [N, V] array]``."""
    n, d, v = shape
    rows = []
    for dtype in dtypes:
        spec = (
            jax.ShapeDtypeStruct((n, d), dtype),
            jax.ShapeDtypeStruct((d, v), dtype),
            jax.ShapeDtypeStruct((n,), jnp.int32),
        )
        temps = {}
        for name, fn in (("naive", naive), ("fused", fused)):
            compiled = loss_and_grad(fn).lower(*spec).compile()
            memory = compiled.memory_analysis()
            temps[name] = memory.temp_size_in_bytes
            has_nv = f"{n},{v}]" in compiled.as_text()
            rows.append(
                [
                    jnp.dtype(dtype).name,
                    name,
                    round(memory.temp_size_in_bytes / MiB),
                    round(memory.output_size_in_bytes / MiB),
                    temps[name] / temps["naive"],
                    "yes" if has_nv else "no",
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    args = parser.parse_args(argv)
    backend = jax.default_backend()
    if backend == "cpu":
        shapes = [(256, 128, 4096)] if args.quick else [(1024, 256, 16384)]
        dtypes, rounds = [jnp.float32], 3 if args.quick else 6
    else:
        shapes, dtypes, rounds = [BIG], [jnp.float32, jnp.bfloat16], 3 if args.quick else 12
    device = jax.devices()[0]
    print(f"fused linear cross-entropy, jax {jax.__version__} on {backend} ({device.device_kind})")
    time_rows = time_table(shapes, dtypes, rounds)
    print(
        "\nloss + grad (hidden, weight), median ms; naive = softmax_cross_entropy(hidden @ weight)"
    )
    print(format_table(["N x D x V", "dtype", "candidate", "ms", "/ naive", "|Δ loss|"], time_rows))
    memory_rows = memory_table(BIG, [jnp.float32, jnp.bfloat16])
    print(f"\nXLA compiled memory of loss + grad at N x D x V = {BIG} ({backend}, not run)")
    print(
        format_table(
            ["dtype", "candidate", "temp MiB", "output MiB", "temp / naive", "[N, V] array"],
            memory_rows,
        )
    )
    summary = {f"time fused/naive {row[1]}": row[4] for row in time_rows if row[2] == "fused"}
    for row in memory_rows:
        summary[f"temp MiB {row[1]} {row[0]}"] = float(row[2])
    return summary


if __name__ == "__main__":
    main()
