"""Seed 002: entropy, cross-entropy and KL; activations and their derivatives; the SwiGLU block.

Information (:mod:`jaxreg.information`, nats unless ``base=2``):

* self-information ``I(x) = −log P(x)``: rare events carry more information;
* entropy ``H(P) = E[I] = −Σ P log P``, the optimal mean code length;
* cross-entropy ``H(P, Q) = −Σ P log Q``, the mean code length of ``P``'s symbols
  coded for ``Q``; it is at least ``H(P)``, and the excess is the KL divergence,
  ``KL(P‖Q) = H(P, Q) − H(P) ≥ 0``. With ``P`` fixed (the data), minimizing the
  KL, the cross-entropy and the negative log-likelihood are the same problem.

The identities are checked on random distributions, including ones with zero
probabilities (``0·log 0 = 0``: finite, where the seed's ``Σ p·log p`` is NaN).

Activations (:mod:`jaxreg.activations`) and their derivatives by ``jax.grad``:
sigmoid (``σ' ≤ 1/4``: gradients vanish through many layers), tanh, ReLU, leaky
ReLU, ELU, swish/SiLU ``x·σ(βx)``, and the gated units GLU ``a·σ(b)`` and SwiGLU
``silu(a)·b``.

SwiGLU feed-forward (:class:`jaxreg.SwiGLUFeedForward`, LLaMA's ``w2(silu(w1 x) ⊙
w3 x)``): three matrices instead of two, so the hidden size is ``2/3·4·dim``,
rounded up to a multiple of ``multiple_of``, to keep the parameter count of a
``4·dim`` two-matrix block (LLaMA-7B: ``dim = 4096 → 11008``).

Run: ``python -m examples.seed002_information [--quick] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxreg
from examples import _common, _train

ACTIVATIONS = {
    "sigmoid": jaxreg.sigmoid,
    "tanh": jaxreg.tanh,
    "ReLU": jaxreg.relu,
    "leaky ReLU (slope 0.1)": lambda x: jaxreg.leaky_relu(x, 0.1),
    "ELU (α = 1)": jaxreg.elu,
    "swish x·σ(βx), β = 1 (SiLU)": jaxreg.silu,
    "swish, β = 0.5": lambda x: jaxreg.swish(x, 0.5),
    "swish, β = 4": lambda x: jaxreg.swish(x, 4.0),
}


def check_identities(rng: np.random.Generator, n: int, classes: int = 5) -> dict[str, np.ndarray]:
    """``H(P, Q) − H(P)`` and ``KL(P‖Q)`` for ``n`` random pairs, a third of ``P`` with zeros."""
    p = rng.dirichlet(np.ones(classes), size=n)
    q = rng.dirichlet(np.ones(classes), size=n)
    p[::3, : classes // 2] = 0.0  # some zero probabilities: 0·log 0 = 0
    p /= p.sum(axis=-1, keepdims=True)
    p, q = jnp.asarray(p), jnp.asarray(q)
    h_p, h_pq = jaxreg.entropy(p), jaxreg.cross_entropy(p, q)
    return {
        "gap": np.asarray(h_pq - h_p),
        "kl": np.asarray(jaxreg.kl_divergence(p, q)),
        "h_p": np.asarray(h_p),
    }


def plot_information(checks: dict[str, np.ndarray], out) -> None:
    """Self-information, the Bernoulli H / H(p, q) / KL picture, and the identity check."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    p = jnp.linspace(1e-3, 1.0, 400)
    axes[0].plot(p, jaxreg.self_information(p, base=2))
    axes[0].set(title="Self-information I(x) = −log₂ P(x)", xlabel="P(x)", ylabel="bits")
    axes[0].set_ylim(0, 10)
    ax = axes[1]
    p0 = 0.3
    q = jnp.linspace(0.01, 0.99, 300)
    two = lambda a: jnp.stack([a, 1.0 - a], axis=-1)  # noqa: E731
    pp = jnp.broadcast_to(two(jnp.asarray(p0)), (len(q), 2))
    h_p = float(jaxreg.entropy(two(jnp.asarray(p0)), base=2))
    h_pq = jaxreg.cross_entropy(pp, two(q), base=2)
    kl = jaxreg.kl_divergence(pp, two(q), base=2)
    ax.plot(q, jaxreg.entropy(two(q), base=2), color="gray", label="H(Q): entropy of Bernoulli(q)")
    ax.plot(q, h_pq, color="tab:blue", label=f"H(P, Q), P = Bernoulli({p0})")
    ax.axhline(h_p, color="tab:green", ls="--", label=f"H(P) = {h_p:.3f} bits")
    ax.fill_between(q, h_p, h_pq, color="tab:orange", alpha=0.3, label="KL(P‖Q) = H(P, Q) − H(P)")
    ax.plot(q, kl, color="tab:orange")
    ax.axvline(p0, color="k", lw=0.5)
    ax.set(title="Cross-entropy ≥ entropy; the gap is the KL", xlabel="q", ylabel="bits")
    ax.set_ylim(0, 3)
    ax.legend(fontsize=8)
    ax = axes[2]
    err = float(np.max(np.abs(checks["gap"] - checks["kl"])))
    ax.scatter(checks["gap"], checks["kl"], s=8, c=checks["h_p"], cmap="viridis")
    top = float(checks["kl"].max())
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set(
        title=f"KL = H(P,Q) − H(P) on {len(checks['kl'])} random pairs\n"
        f"(max |difference| {err:.1e}; colour: H(P))",
        xlabel="H(P, Q) − H(P)  [nats]",
        ylabel="KL(P‖Q)  [nats]",
    )
    fig.suptitle("Seed 002: self-information, entropy, cross-entropy and KL divergence")
    _common.save(fig, out, "seed002_information")


def plot_activations(out) -> None:
    """Each activation with its derivative (``jax.grad``); the SwiGLU surface."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 5, figsize=(19, 7.5))
    x = jnp.linspace(-5.0, 5.0, 501)
    for ax, (name, f) in zip(axes.ravel(), ACTIVATIONS.items(), strict=False):
        ax.plot(x, f(x), label="f(x)")
        ax.plot(x, jax.vmap(jax.grad(f))(x), ls="--", label="f'(x)")
        ax.axhline(0, color="k", lw=0.4)
        ax.axvline(0, color="k", lw=0.4)
        ax.set(title=name, xlabel="x", ylim=(-1.5, 3))
        ax.legend(fontsize=8)
    a, b = jnp.meshgrid(jnp.linspace(-3, 3, 121), jnp.linspace(-3, 3, 121))
    gated = (("GLU: a·σ(b)", jaxreg.glu), ("SwiGLU: silu(a)·b", jaxreg.swiglu))
    for ax, (name, f) in zip(axes[1, 3:], gated, strict=True):
        z = f(jnp.stack([a, b], axis=-1))[..., 0]
        im = ax.contourf(a, b, z, levels=21, cmap="RdBu_r")
        ax.set(title=name, xlabel="a (first half)", ylabel="b (second half)", aspect="equal")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(
        "Seed 002: activations f (solid) and their derivatives f' (dashed, by jax.grad); "
        "the gated units over their two inputs"
    )
    _common.save(fig, out, "seed002_activations")


def llama_sizes(dims: Sequence[int], multiple_of: int) -> np.ndarray:
    """The hidden size of :class:`jaxreg.SwiGLUFeedForward` for each ``dim`` (no allocation)."""
    return np.array(
        [
            nnx.eval_shape(
                lambda d=d: jaxreg.SwiGLUFeedForward(d, multiple_of=multiple_of, rngs=nnx.Rngs(0))
            ).hidden_dim
            for d in dims
        ]
    )


def plot_swiglu(dims: np.ndarray, out) -> None:
    """LLaMA's hidden-size rule, and the parameter count against a 4·dim ReLU block."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for multiple_of, color in ((256, "tab:blue"), (64, "tab:green")):
        hidden = llama_sizes(dims, multiple_of)
        axes[0].plot(
            dims, hidden / dims, "o-", color=color, ms=3, label=f"multiple_of={multiple_of}"
        )
        axes[1].plot(
            dims,
            3 * dims * hidden / (8.0 * dims**2),
            "o-",
            color=color,
            ms=3,
            label=f"multiple_of={multiple_of}",
        )
    axes[0].axhline(8 / 3, color="k", ls="--", label="8/3 (= 2/3 · 4)")
    axes[0].annotate(
        "LLaMA-7B: 4096 → 11008", (4096, 11008 / 4096), (1500, 3.3), arrowprops={"arrowstyle": "->"}
    )
    axes[0].set(title="Hidden size / dim: int(2·4·dim/3), rounded up", xlabel="dim")
    axes[0].set(ylabel="hidden_dim / dim")
    axes[1].axhline(1.0, color="k", ls="--")
    axes[1].set(title="Parameters: 3·dim·hidden  vs  2·dim·4dim (ReLU FFN)", xlabel="dim")
    axes[1].set(ylabel="ratio")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    fig.suptitle("Seed 002: the SwiGLU feed-forward w2(silu(w1 x) ⊙ w3 x) and LLaMA's hidden size")
    _common.save(fig, out, "seed002_swiglu")


def main(argv: Sequence[str] | None = None) -> None:
    """Checks the identities, prints a few values and writes three figures."""
    args = _common.parser(__doc__.splitlines()[0], trains=False).parse_args(argv)
    dtype = _train.use_float64()
    rng = np.random.default_rng(0)
    checks = check_identities(rng, 60 if args.quick else 600)
    err = np.max(np.abs(checks["gap"] - checks["kl"]))
    print(f"max |H(P,Q) − H(P) − KL(P‖Q)| over {len(checks['kl'])} pairs: {err:.2e}")
    print(f"min KL: {checks['kl'].min():.2e} (≥ 0)")
    certain, fair = jnp.asarray([1.0, 0.0]), jnp.asarray([0.5, 0.5])
    print(
        f"H([1, 0]) = {float(jaxreg.entropy(certain)):.4f}, "
        f"H([½, ½]) = {float(jaxreg.entropy(fair)):.4f} = log 2"
    )
    plot_information(checks, args.out)
    plot_activations(args.out)
    dims = 2 ** np.arange(7, 11 if args.quick else 14)
    ff = jaxreg.SwiGLUFeedForward(64, multiple_of=32, param_dtype=dtype, rngs=nnx.Rngs(0))
    y = ff(jax.random.normal(jax.random.key(0), (4, 64), dtype))
    print(f"SwiGLUFeedForward(64, multiple_of=32): hidden {ff.hidden_dim}, output {y.shape}")
    plot_swiglu(dims, args.out)


if __name__ == "__main__":
    main()
