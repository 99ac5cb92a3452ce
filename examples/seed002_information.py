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


P0 = 0.3  # the fixed Bernoulli P of the cross-entropy picture


def random_pairs(rng: np.random.Generator, n: int, classes: int = 5) -> tuple[np.ndarray, ...]:
    """``n`` random pairs of distributions; a third of the ``P`` have zero probabilities."""
    p = rng.dirichlet(np.ones(classes), size=n)
    q = rng.dirichlet(np.ones(classes), size=n)
    p[::3, : classes // 2] = 0.0  # 0·log 0 = 0
    return p / p.sum(axis=-1, keepdims=True), q


@_train.jit
def information(p: jax.Array, q: jax.Array) -> dict[str, jax.Array]:
    """The identity check on the pairs ``(p, q)``, and the curves of the first figure."""
    h_p = jaxreg.entropy(p)
    curves = {"gap": jaxreg.cross_entropy(p, q) - h_p, "kl": jaxreg.kl_divergence(p, q), "h_p": h_p}
    prob = jnp.linspace(1e-3, 1.0, 400, dtype=p.dtype)
    curves["prob"], curves["self_information"] = prob, jaxreg.self_information(prob, base=2)
    grid = jnp.linspace(0.01, 0.99, 300, dtype=p.dtype)
    bern = jnp.stack([grid, 1.0 - grid], axis=-1)
    fixed = jnp.broadcast_to(jnp.asarray([P0, 1.0 - P0], p.dtype), bern.shape)
    curves["q"], curves["h_q"] = grid, jaxreg.entropy(bern, base=2)
    curves["h_pq"] = jaxreg.cross_entropy(fixed, bern, base=2)
    curves["kl_pq"] = jaxreg.kl_divergence(fixed, bern, base=2)
    curves["h_p0"] = jaxreg.entropy(fixed[0], base=2)
    curves["certain_fair"] = jaxreg.entropy(jnp.asarray([[1.0, 0.0], [0.5, 0.5]], p.dtype))
    return curves


@_train.jit
def swiglu_block(x: jax.Array) -> jax.Array:
    """A freshly initialized ``SwiGLUFeedForward(64, multiple_of=32)`` applied to ``x``."""
    ff = jaxreg.SwiGLUFeedForward(64, multiple_of=32, param_dtype=x.dtype, rngs=nnx.Rngs(0))
    return ff(x)


@_train.jit
def activations(x: jax.Array, a: jax.Array, b: jax.Array) -> dict[str, jax.Array]:
    """Every activation and its derivative on ``x``; GLU and SwiGLU on the grid ``(a, b)``."""
    table = {name: (f(x), jax.vmap(jax.grad(f))(x)) for name, f in ACTIVATIONS.items()}
    ab = jnp.stack([a, b], axis=-1)
    table["GLU: a·σ(b)"] = jaxreg.glu(ab)[..., 0]
    table["SwiGLU: silu(a)·b"] = jaxreg.swiglu(ab)[..., 0]
    return table


def plot_information(c: dict[str, np.ndarray], out) -> None:
    """Self-information, the Bernoulli H / H(p, q) / KL picture, and the identity check."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    axes[0].plot(c["prob"], c["self_information"])
    axes[0].set(title="Self-information I(x) = −log₂ P(x)", xlabel="P(x)", ylabel="bits")
    axes[0].set_ylim(0, 10)
    ax = axes[1]
    q, h_p = c["q"], float(c["h_p0"])
    ax.plot(q, c["h_q"], color="gray", label="H(Q): entropy of Bernoulli(q)")
    ax.plot(q, c["h_pq"], color="tab:blue", label=f"H(P, Q), P = Bernoulli({P0})")
    ax.axhline(h_p, color="tab:green", ls="--", label=f"H(P) = {h_p:.3f} bits")
    gap = "KL(P‖Q) = H(P, Q) − H(P)"
    ax.fill_between(q, h_p, c["h_pq"], color="tab:orange", alpha=0.3, label=gap)
    ax.plot(q, c["kl_pq"], color="tab:orange")
    ax.axvline(P0, color="k", lw=0.5)
    ax.set(title="Cross-entropy ≥ entropy; the gap is the KL", xlabel="q", ylabel="bits")
    ax.set_ylim(0, 3)
    ax.legend(fontsize=8)
    ax = axes[2]
    err = float(np.max(np.abs(c["gap"] - c["kl"])))
    ax.scatter(c["gap"], c["kl"], s=8, c=c["h_p"], cmap="viridis")
    top = float(c["kl"].max())
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set(
        title=f"KL = H(P,Q) − H(P) on {len(c['kl'])} random pairs\n"
        f"(max |difference| {err:.1e}; colour: H(P))",
        xlabel="H(P, Q) − H(P)  [nats]",
        ylabel="KL(P‖Q)  [nats]",
    )
    fig.suptitle("Seed 002: self-information, entropy, cross-entropy and KL divergence")
    _common.save(fig, out, "seed002_information")


def plot_activations(dtype, out, *, quick: bool = False) -> None:
    """Each activation with its derivative (``jax.grad``); the GLU and SwiGLU surfaces."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 5, figsize=(19, 7.5))
    x = np.linspace(-5.0, 5.0, 201 if quick else 501)
    a, b = np.meshgrid(*[np.linspace(-3, 3, 41 if quick else 121)] * 2)
    table = jax.tree.map(np.asarray, activations(*(jnp.asarray(v, dtype) for v in (x, a, b))))
    for ax, name in zip(axes.ravel(), ACTIVATIONS, strict=False):
        f, df = table[name]
        ax.plot(x, f, label="f(x)")
        ax.plot(x, df, ls="--", label="f'(x)")
        ax.axhline(0, color="k", lw=0.4)
        ax.axvline(0, color="k", lw=0.4)
        ax.set(title=name, xlabel="x", ylim=(-1.5, 3))
        ax.legend(fontsize=8)
    for ax, name in zip(axes[1, 3:], ("GLU: a·σ(b)", "SwiGLU: silu(a)·b"), strict=True):
        im = ax.contourf(a, b, table[name], levels=21, cmap="RdBu_r")
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
    p, q = random_pairs(np.random.default_rng(0), 60 if args.quick else 600)
    curves = jax.tree.map(np.asarray, information(jnp.asarray(p, dtype), jnp.asarray(q, dtype)))
    err = np.max(np.abs(curves["gap"] - curves["kl"]))
    print(f"max |H(P,Q) − H(P) − KL(P‖Q)| over {len(p)} pairs: {err:.2e}")
    print(f"min KL: {curves['kl'].min():.2e} (≥ 0)")
    h = curves["certain_fair"]
    print(f"H([1, 0]) = {h[0]:.4f}, H([½, ½]) = {h[1]:.4f} = log 2")
    plot_information(curves, args.out)
    plot_activations(dtype, args.out, quick=args.quick)
    dims = 2 ** np.arange(7, 11 if args.quick else 14)
    y = swiglu_block(jnp.asarray(np.random.default_rng(0).standard_normal((4, 64)), dtype))
    hidden = llama_sizes([64], 32)[0]
    print(f"SwiGLUFeedForward(64, multiple_of=32): hidden {hidden}, output {y.shape}")
    plot_swiglu(dims, args.out)


if __name__ == "__main__":
    main()
