"""Core math: jit'd jaxreg against the jax.nn / optax anchors and torch eager.

For each operation, the three candidates are timed interleaved in one process; the
table shows median milliseconds and the ratios ``jaxreg / anchor`` and
``jaxreg / torch`` (medians over rounds of the ratio within a round), and the
geometric mean of the anchor ratios — the number that says whether jaxreg's
safety costs speed.

    python -m benchmarks.bench_core [--quick]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F

import jaxreg
from benchmarks.common import (
    block,
    format_table,
    geometric_mean,
    medians,
    paired_ratio,
    sample_pooled,
)

#: Copies of every input (see ``benchmarks.common.sample_pooled``).
COPIES = 3


def _jit_value_and_grad(f: Callable[..., jax.Array]) -> Callable[..., Any]:
    return jax.jit(jax.value_and_grad(f))


def _torch_value_and_grad(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    cotangent: torch.Tensor | None = None,
):
    """``f(x)`` and its gradient (a scalar ``f``) or VJP with ``cotangent``, in torch eager."""

    def run():
        xx = x.detach().requires_grad_(True)
        out = f(xx)
        (g,) = torch.autograd.grad(out, xx, cotangent)
        return out, g

    return run


def cases(n: int, c: int, seed: int = 0) -> list[tuple[str, Callable, Callable, Callable]]:
    """``(name, jaxreg, anchor, torch)`` zero-argument callables on shared float32 data."""
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((n, c)).astype(np.float32) * 3
    labels_np = rng.integers(0, c, n)
    p_np = rng.dirichlet(np.ones(c), n).astype(np.float32)
    q_np = rng.dirichlet(np.ones(c), n).astype(np.float32)
    v_np = rng.standard_normal(n * c).astype(np.float32)
    tree_np = {f"w{i}": rng.standard_normal((c // 4, c // 4)).astype(np.float32) for i in range(8)}

    ct_np = rng.standard_normal((n, c)).astype(np.float32)
    x, labels = jnp.asarray(x_np), jnp.asarray(labels_np, jnp.int32)
    ct, tct = jnp.asarray(ct_np), torch.from_numpy(ct_np)
    p, q, v = jnp.asarray(p_np), jnp.asarray(q_np), jnp.asarray(v_np)
    tree = {k: jnp.asarray(a) for k, a in tree_np.items()}
    tx, tlabels = torch.from_numpy(x_np), torch.from_numpy(labels_np)
    tp, tq, tv = torch.from_numpy(p_np), torch.from_numpy(q_np), torch.from_numpy(v_np)
    ttree = {k: torch.from_numpy(a) for k, a in tree_np.items()}

    def j(f, *args):
        fn = jax.jit(f)
        return lambda: block(fn(*args))

    def jg(f, *args):
        fn = _jit_value_and_grad(f)
        return lambda: block(fn(*args))

    def jv(f, x, cotangent):
        fn = jax.jit(lambda x, ct: jax.vjp(f, x)[1](ct))
        return lambda: block(fn(x, cotangent))

    optax_ce = optax.losses.softmax_cross_entropy_with_integer_labels

    def optax_kl(p, q):
        return optax.losses.kl_divergence(jnp.log(q), p)

    def anchor_entropy(p):
        return -jnp.sum(jax.scipy.special.xlogy(p, p), axis=-1)

    return [
        (
            "logsumexp",
            j(jaxreg.logsumexp, x),
            j(lambda x: jax.nn.logsumexp(x, axis=-1), x),
            lambda: torch.logsumexp(tx, -1),
        ),
        (
            "logsumexp grad",
            jg(lambda x: jnp.sum(jaxreg.logsumexp(x)), x),
            jg(lambda x: jnp.sum(jax.nn.logsumexp(x, axis=-1)), x),
            _torch_value_and_grad(lambda t: torch.logsumexp(t, -1).sum(), tx),
        ),
        (
            "log_softmax",
            j(jaxreg.log_softmax, x),
            j(jax.nn.log_softmax, x),
            lambda: F.log_softmax(tx, -1),
        ),
        (
            "log_softmax grad",
            jv(jaxreg.log_softmax, x, ct),
            jv(jax.nn.log_softmax, x, ct),
            _torch_value_and_grad(lambda t: F.log_softmax(t, -1), tx, tct),
        ),
        (
            "softmax",
            j(jaxreg.softmax, x),
            j(jax.nn.softmax, x),
            lambda: torch.softmax(tx, -1),
        ),
        (
            "softmax grad",
            jv(jaxreg.softmax, x, ct),
            jv(jax.nn.softmax, x, ct),
            _torch_value_and_grad(lambda t: torch.softmax(t, -1), tx, tct),
        ),
        (
            "cross-entropy",
            j(jaxreg.softmax_cross_entropy, x, labels),
            j(lambda x, y: jnp.mean(optax_ce(x, y)), x, labels),
            lambda: F.cross_entropy(tx, tlabels),
        ),
        (
            "cross-entropy grad",
            jg(jaxreg.softmax_cross_entropy, x, labels),
            jg(lambda x, y: jnp.mean(optax_ce(x, y)), x, labels),
            _torch_value_and_grad(lambda t: F.cross_entropy(t, tlabels), tx),
        ),
        (
            "KL divergence",
            j(jaxreg.kl_divergence, p, q),
            j(optax_kl, p, q),
            lambda: F.kl_div(tq.log(), tp, reduction="none").sum(-1),
        ),
        (
            "KL divergence grad",
            jg(lambda q: jnp.sum(jaxreg.kl_divergence(p, q)), q),
            jg(lambda q: jnp.sum(optax_kl(p, q)), q),
            _torch_value_and_grad(lambda t: F.kl_div(t.log(), tp, reduction="sum"), tq),
        ),
        (
            "entropy",
            j(jaxreg.entropy, p),
            j(anchor_entropy, p),
            lambda: torch.special.entr(tp).sum(-1),
        ),
        (
            "vector_norm",
            j(jaxreg.vector_norm, v),
            j(jnp.linalg.norm, v),
            lambda: torch.linalg.vector_norm(tv),
        ),
        (
            "vector_norm grad",
            jg(jaxreg.vector_norm, v),
            jg(jnp.linalg.norm, v),
            _torch_value_and_grad(torch.linalg.vector_norm, tv),
        ),
        (
            "row norms (axis=-1)",
            j(lambda x: jaxreg.vector_norm(x, axis=-1), x),
            j(lambda x: jnp.linalg.norm(x, axis=-1), x),
            lambda: torch.linalg.vector_norm(tx, dim=-1),
        ),
        (
            "global_norm",
            j(jaxreg.global_norm, tree),
            j(optax.global_norm, tree),
            lambda: torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(t) for t in ttree.values()])
            ),
        ),
        (
            "global_norm grad",
            jg(jaxreg.global_norm, tree),
            jg(optax.global_norm, tree),
            None,
        ),
    ]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    args = parser.parse_args(argv)
    n, c, rounds = (256, 256, 5) if args.quick else (2048, 1024, 24)
    copies = 1 if args.quick else COPIES
    print(
        f"core math, float32 [{n}, {c}], jax {jax.__version__} on {jax.default_backend()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{copies} copies of the inputs"
    )
    rows, ratios, torch_ratios = [], [], []
    # Every case on separate copies of its inputs (same values): see sample_pooled.
    instances = [cases(n, c) for _ in range(copies)]
    for row in zip(*instances, strict=True):
        name = row[0][0]
        candidates = {"jaxreg": [r[1] for r in row], "anchor": [r[2] for r in row]}
        if row[0][3] is not None:
            candidates["torch"] = [r[3] for r in row]
        samples = sample_pooled(candidates, rounds=rounds, min_time=0.01)
        t = medians(samples)
        ratio = paired_ratio(samples, "jaxreg", "anchor")
        ratios.append(ratio)
        t_torch = t.get("torch")
        torch_ratio = None if t_torch is None else paired_ratio(samples, "jaxreg", "torch")
        if torch_ratio is not None:
            torch_ratios.append(torch_ratio)
        rows.append(
            [
                name,
                t["jaxreg"] * 1e3,
                t["anchor"] * 1e3,
                "-" if t_torch is None else t_torch * 1e3,
                ratio,
                "-" if torch_ratio is None else torch_ratio,
            ]
        )
    print(
        format_table(
            ["operation", "jaxreg ms", "anchor ms", "torch ms", "jaxreg/anchor", "jaxreg/torch"],
            rows,
        )
    )
    summary = {
        "geomean jaxreg/anchor": geometric_mean(ratios),
        "geomean jaxreg/torch": geometric_mean(torch_ratios),
    }
    for k, v in summary.items():
        print(f"{k}: {v:.3f}")
    print(
        "anchors: jax.nn.logsumexp/log_softmax/softmax, optax integer-label CE and "
        "kl_divergence, -Σ jax.scipy xlogy(p, p), jnp.linalg.norm, optax.global_norm"
    )
    return summary


if __name__ == "__main__":
    main()
