"""Fused linear cross-entropy against the unfused loss and torch: time and memory.

Every candidate computes the loss and its gradients with respect to ``hidden`` and the
weight:

* ``naive``: ``jaxreg.softmax_cross_entropy(hidden @ weight, labels)`` under ``jax.jit``
  (XLA's own fusion, the ``[N, V]`` logits in memory);
* ``fused``: ``jaxreg.fused_linear_cross_entropy`` (default chunk; on a CPU also 4x it);
* ``... every option``: class weights, token weights, label smoothing 0.1, z-loss 1e-4,
  soft-capping at 30, a vocabulary padded by 128 columns and the aux outputs (float32
  loss); the naive one is the same formula written out on the full logits;
* ``torch ...``: torch's own ``F.linear_cross_entropy`` (weight ``(V, D)``) on the
  reference path (``options=None``: full logits) and the chunked path
  (``options=LinearCrossEntropyOptions()``: batch chunks), with class weights for
  ``every option`` (torch has none of the other options; with label smoothing its
  chunked path falls back to the full logits).

Times are medians over rounds of interleaved calls in one process, in a balanced order
(:mod:`benchmarks.common`); ratios are medians of per-round ratios. Peak memory is that
of one call at the timing shape, each candidate in a subprocess of its own: on a CPU the
growth of the resident set, sampled every 0.2 ms (glibc is told to map every block of
64 KiB or more on its own, so freed memory leaves the resident set); on a GPU the
allocators' peaks (``memory_stats()``, ``torch.cuda.max_memory_allocated``). The last
table compiles the JAX programs at ``N=8192, D=4096, V=128256`` without running them and
reads XLA's ``memory_analysis()`` (``temp``: the scratch memory beyond inputs and outputs).

    python -m benchmarks.bench_fused [--quick]

On a CPU the timing shape is ``N=1024, D=256, V=16384`` (``--quick``: ``256, 128, 4096``);
on a GPU it is the memory shape, in float32 and bfloat16.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import jaxreg
from benchmarks.common import block, format_table, medians, paired_ratio, sample_interleaved
from jaxreg._fused_kernel import default_chunk_size

BIG = (8192, 4096, 128256)  # tokens, model width, LLaMA-3 vocabulary
MiB = 2**20
PADDING, SOFTCAP, Z_LOSS, SMOOTHING = 128, 30.0, 1e-4, 0.1


def make_inputs(n: int, d: int, v: int, dtype: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Hidden states, a weight scaled so the logits have unit spread, labels below the
    ``v - PADDING`` classes (5% ignored), class and token weights (NumPy, float32)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, v - PADDING, n)
    labels[rng.random(n) < 0.05] = -100
    return {
        "hidden": rng.standard_normal((n, d), np.float32),
        "weight": rng.standard_normal((d, v), np.float32) / np.float32(np.sqrt(d)),
        "labels": labels.astype(np.int32),
        "class_weight": rng.uniform(0.5, 1.5, v - PADDING).astype(np.float32),
        "token_weight": rng.uniform(0.0, 2.0, n).astype(np.float32),
        "dtype": np.dtype(jnp.dtype(dtype)),
    }


# --------------------------------------------------------------------------- JAX


def naive(hidden: jax.Array, weight: jax.Array, labels: jax.Array) -> jax.Array:
    """The unfused loss: the full logits, then softmax cross-entropy."""
    return jaxreg.softmax_cross_entropy(hidden @ weight, labels)


def naive_every_option(hidden, weight, labels, class_weight, token_weight):
    """Every option written out on the full logits (float32 reductions)."""
    z = (hidden @ weight).astype(jnp.float32)
    z = (SOFTCAP * jnp.tanh(z / SOFTCAP))[:, : class_weight.shape[0]]
    lse = jax.nn.logsumexp(z, axis=-1)
    rows = jaxreg.softmax_cross_entropy(
        z, labels, weight=class_weight, label_smoothing=SMOOTHING, reduction="none"
    )
    valid = (labels != -100) & (token_weight != 0)
    picked_weight = class_weight[jnp.where(valid, labels, 0)]
    tokens = jnp.sum(jnp.where(valid, token_weight, 0.0))
    loss = jnp.sum(token_weight * rows) / jnp.sum(
        jnp.where(valid, token_weight * picked_weight, 0.0)
    )
    z_term = Z_LOSS * jnp.sum(jnp.where(valid, token_weight * lse * lse, 0.0)) / tokens
    correct = jnp.sum(valid & (jnp.argmax(z, axis=-1) == labels))
    return loss + z_term, (lse, correct)


def fused(hidden, weight, labels, chunk_size=None):
    return jaxreg.fused_linear_cross_entropy(hidden, weight, labels, chunk_size=chunk_size)


def fused_every_option(hidden, weight, labels, class_weight, token_weight):
    loss, aux = jaxreg.fused_linear_cross_entropy(
        hidden,
        weight,
        labels,
        weight=class_weight,
        token_weight=token_weight,
        label_smoothing=SMOOTHING,
        z_loss=Z_LOSS,
        softcap=SOFTCAP,
        num_valid_classes=class_weight.shape[0],
        return_aux=True,
        out_dtype=jnp.float32,
    )
    return loss, (aux.logsumexp, aux.num_correct)


def _jax_call(fn: Callable, data: dict, every: bool) -> Callable[[], Any]:
    dtype = data["dtype"]
    args = [jnp.asarray(data["hidden"], dtype), jnp.asarray(data["weight"], dtype), data["labels"]]
    if every:
        args += [jnp.asarray(data["class_weight"]), jnp.asarray(data["token_weight"])]
    step = jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=every))
    args = [jax.device_put(a) for a in args]
    compiled = {}

    def call():
        return block(compiled.get("step", step)(*args))

    def prepare():
        # Compiled ahead of time, not run: a first run would leave buffers behind.
        compiled["step"] = step.lower(*args).compile()

    call.prepare = prepare  # type: ignore[attr-defined]
    return call


# --------------------------------------------------------------------------- torch


def _torch_call(chunked: bool, data: dict, every: bool) -> Callable[[], Any]:
    """torch's ``F.linear_cross_entropy`` (weight ``(V, D)``), loss + gradients."""
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[data["dtype"].name]
    hidden = torch.from_numpy(data["hidden"]).to(device, dtype).requires_grad_()
    weight = torch.from_numpy(data["weight"].T.copy()).to(device, dtype).requires_grad_()
    labels = torch.from_numpy(data["labels"]).to(device, torch.int64)
    class_weight = None
    if every:
        padded = np.concatenate([data["class_weight"], np.zeros(PADDING, np.float32)])
        class_weight = torch.from_numpy(padded).to(device, dtype)
    options = torch.nn.LinearCrossEntropyOptions() if chunked else None

    def call():
        loss = F.linear_cross_entropy(hidden, weight, labels, weight=class_weight, options=options)
        grads = torch.autograd.grad(loss, (hidden, weight))
        if device == "cuda":
            torch.cuda.synchronize()
        return loss, grads

    call.prepare = call  # type: ignore[attr-defined]  # (a first call: torch's thread pools)
    return call


def candidates(data: dict, backend: str) -> dict[str, Callable[[], Callable[[], Any]]]:
    """name -> a builder of the zero-argument call that runs loss + gradients."""
    n, v = data["hidden"].shape[0], data["weight"].shape[1]
    out = {
        "naive": lambda: _jax_call(naive, data, False),
        "fused": lambda: _jax_call(fused, data, False),
    }
    chunk = 4 * default_chunk_size(n, v)
    if backend == "cpu" and chunk < v:
        out[f"fused chunk={chunk}"] = lambda: _jax_call(
            functools.partial(fused, chunk_size=chunk), data, False
        )
    out.update(
        {
            "naive, every option": lambda: _jax_call(naive_every_option, data, True),
            "fused, every option": lambda: _jax_call(fused_every_option, data, True),
            "torch reference": lambda: _torch_call(False, data, False),
            "torch chunked": lambda: _torch_call(True, data, False),
            "torch chunked, class weights": lambda: _torch_call(True, data, True),
        }
    )
    return out


# --------------------------------------------------------------------------- tables


def time_table(shape: tuple[int, int, int], dtype: Any, rounds: int) -> tuple[list, dict]:
    """Rows ``[candidate, ms, / naive, / naive every option, / torch chunked]``."""
    data = make_inputs(*shape, dtype)
    calls = {name: build() for name, build in candidates(data, jax.default_backend()).items()}
    samples = sample_interleaved(calls, rounds=rounds, min_time=0.0, warmup=1)
    t = medians(samples)
    rows = [
        [
            name,
            t[name] * 1e3,
            paired_ratio(samples, name, "naive"),
            paired_ratio(samples, name, "naive, every option"),
            paired_ratio(samples, name, "torch chunked"),
        ]
        for name in calls
    ]
    return rows, samples


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_of_one_call(name: str, shape: tuple[int, int, int], dtype_name: str) -> float:
    """MiB of memory one call of ``name`` needs beyond its inputs (see the module doc)."""
    data = make_inputs(*shape, jnp.dtype(dtype_name))
    backend = jax.default_backend()
    call = candidates(data, backend)[name]()
    call.prepare()  # type: ignore[attr-defined]
    if backend != "cpu":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated(), jax.devices()[0].memory_stats()["bytes_in_use"]
        call()
        torch_peak = torch.cuda.max_memory_allocated() - before[0]
        jax_peak = jax.devices()[0].memory_stats()["peak_bytes_in_use"] - before[1]
        return (torch_peak if name.startswith("torch") else jax_peak) / MiB
    baseline, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(2e-4)

    sampler = threading.Thread(target=sample)
    sampler.start()
    call()
    done.set()
    sampler.join()
    return max(peak[0] - baseline, 0) / MiB


def memory_rows(shape: tuple[int, int, int], dtype: Any, names: list[str]) -> list[list]:
    """Rows ``[candidate, peak MiB]``, each measured in a fresh subprocess."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    rows = []
    for name in names:
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench_fused",
            "--peak",
            name,
            "--shape",
            ",".join(map(str, shape)),
            "--dtype",
            jnp.dtype(dtype).name,
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        rows.append([name, float(done.stdout.strip().splitlines()[-1])])
    return rows


def compiled_memory_table(shape: tuple[int, int, int], dtypes: list[Any]) -> list[list]:
    """Rows ``[dtype, candidate, temp MiB, output MiB, temp ratio, has an [N, V] array]``."""
    n, d, v = shape
    rows = []
    for dtype in dtypes:
        spec = jax.ShapeDtypeStruct
        args = (spec((n, d), dtype), spec((d, v), dtype), spec((n,), jnp.int32))
        every = (*args, spec((v - PADDING,), jnp.float32), spec((n,), jnp.float32))
        temps = {}
        for name, fn, a in (
            ("naive", naive, args),
            ("fused", fused, args),
            ("naive, every option", naive_every_option, every),
            ("fused, every option", fused_every_option, every),
        ):
            has_aux = len(a) == 5
            compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=has_aux))
            compiled = compiled.lower(*a).compile()
            memory = compiled.memory_analysis()
            temps[name] = memory.temp_size_in_bytes
            base = temps["naive, every option" if has_aux else "naive"]
            rows.append(
                [
                    jnp.dtype(dtype).name,
                    name,
                    round(memory.temp_size_in_bytes / MiB),
                    round(memory.output_size_in_bytes / MiB),
                    memory.temp_size_in_bytes / base,
                    "yes" if f"{n},{v}]" in compiled.as_text() else "no",
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    parser.add_argument("--peak", help=argparse.SUPPRESS)  # one candidate's peak (subprocess)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak:
        shape = tuple(int(s) for s in args.shape.split(","))
        print(peak_of_one_call(args.peak, shape, args.dtype))  # type: ignore[arg-type]
        return {}
    backend = jax.default_backend()
    if backend == "cpu":
        shape = (256, 128, 4096) if args.quick else (1024, 256, 16384)
        dtypes, rounds = [jnp.float32], 3 if args.quick else 6
    else:
        shape, dtypes, rounds = BIG, [jnp.float32, jnp.bfloat16], 3 if args.quick else 12
    device = jax.devices()[0]
    print(
        f"fused linear cross-entropy, jax {jax.__version__} on {backend} ({device.device_kind}), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    summary: dict[str, float] = {}
    for dtype in dtypes:
        rows, _ = time_table(shape, dtype, rounds)
        name = jnp.dtype(dtype).name
        peaks = dict(memory_rows(shape, dtype, [row[0] for row in rows]))
        table = [[*row, peaks[row[0]]] for row in rows]
        print(
            f"\nloss + grad (hidden, weight) at N x D x V = {shape}, {name}: median ms, "
            f"ratios of per-round times, peak MiB of one call beyond the inputs"
        )
        header = ["candidate", "ms", "/ naive", "/ naive every", "/ torch chunked", "peak MiB"]
        print(format_table(header, table))
        by = {row[0]: row for row in table}
        summary[f"time fused/naive {name}"] = by["fused"][2]
        summary[f"time fused every/naive every {name}"] = by["fused, every option"][3]
        summary[f"time fused every/torch chunked {name}"] = by["fused, every option"][4]
    memory = compiled_memory_table(BIG, [jnp.float32, jnp.bfloat16])
    print(f"\nXLA compiled memory of loss + grad at N x D x V = {BIG} ({backend}, not run)")
    header = ["dtype", "candidate", "temp MiB", "output MiB", "temp / naive", "[N, V] array"]
    print(format_table(header, memory))
    for row in memory:
        summary[f"temp MiB {row[1]} {row[0]}"] = float(row[2])
    return summary


if __name__ == "__main__":
    main()
