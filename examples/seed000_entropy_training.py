"""Seed 000: a softmax classifier with L2, trained to maximize or to minimize its output entropy.

The seed trained ``softmax(Linear(x))`` with ``nn.CrossEntropyLoss`` (which applies
``log_softmax`` itself: the seed softmaxed twice), added ``Σ‖θ‖₂`` (not squared) as
"L2", fitted random labels (nothing to learn), and took ``Σ p·log p`` of the
probabilities (``0·log 0 = NaN`` once a probability underflows). Here, on three
overlapping Gaussian classes in 2-D, one linear classifier (``jaxreg.Linear(2, 3)``)
is trained from the same initial weights on six objectives, all built from
:func:`jaxreg.softmax_cross_entropy`, :func:`jaxreg.l2_penalty` and the mean
output entropy ``H`` (:func:`jaxreg.output_entropy`, stable for any logits):

* ``CE``; ``CE + λ·½‖W‖²`` (L2 keeps the logits, hence the confidence, small);
* ``CE − β·H`` (the confidence penalty, :func:`jaxreg.confidence_penalty`:
  maximizes the entropy) and ``CE + β·H`` (entropy minimization);
* the seed's objectives without labels, ``−H`` and ``+H``: maximizing the entropy
  alone drives the predictions to uniform, minimizing it alone makes them
  confident without making them right — entropy carries no label information.

``--torch`` runs the same six objectives on ``torch_ref.nn.Linear`` with
``F.cross_entropy`` and ``torch.optim.SGD`` from the same weights (``torch_ref.bridge``).

Run: ``python -m examples.seed000_entropy_training [--quick] [--torch] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxreg
from examples import _common, _train

CENTERS = np.array([[0.0, 1.2], [-1.1, -0.6], [1.1, -0.6]])
LEARNING_RATE = 0.5
LAMBDA, BETA = 0.1, 0.5
#: name -> (cross-entropy weight, L2 strength, entropy weight); the loss adds ``h·H``.
OBJECTIVES = {
    "CE": (1.0, 0.0, 0.0),
    f"CE + {LAMBDA}·½‖W‖²": (1.0, LAMBDA, 0.0),
    f"CE − {BETA}·H (max entropy)": (1.0, 0.0, -BETA),
    f"CE + {BETA}·H (min entropy)": (1.0, 0.0, BETA),
    "−H only (seed: maximize)": (0.0, 0.0, -1.0),
    "+H only (seed: minimize)": (0.0, 0.0, 1.0),
}
STYLES = ["k", "tab:blue", "tab:green", "tab:red", "tab:green", "tab:red"]


def blobs(n_per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping Gaussian classes (unit variance) around ``CENTERS``."""
    labels = np.repeat(np.arange(len(CENTERS)), n_per_class)
    return CENTERS[labels] + rng.standard_normal((len(labels), 2)), labels


def hyper(name: str) -> dict[str, float]:
    """The traced coefficients of one objective."""
    ce, l2, h = OBJECTIVES[name]
    return {"ce": ce, "l2": l2, "h": h}


def sgd(_: dict) -> optax.GradientTransformation:
    """Plain SGD, the same for every objective."""
    return jaxreg.sgd(LEARNING_RATE)


def train_jax(model: nnx.Module, data: tuple[np.ndarray, ...], steps: int) -> dict:
    """Full-batch SGD on each objective; curves of the objective, entropy, test CE and accuracy."""
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)

    def loss_fn(p, _, h):
        logits = apply(p, x)
        return (
            h["ce"] * jaxreg.softmax_cross_entropy(logits, y)
            + h["l2"] * jaxreg.l2_penalty(p, mask=jaxreg.weights_only)
            + h["h"] * jaxreg.output_entropy(logits)
        )

    def evaluate(p):
        logits, test_logits = apply(p, x), apply(p, x_test)
        accuracy = jnp.mean((jnp.argmax(test_logits, axis=-1) == y_test).astype(x.dtype))
        return {
            "entropy": jaxreg.output_entropy(logits),
            "test_ce": jaxreg.softmax_cross_entropy(test_logits, y_test),
            "accuracy": accuracy,
        }

    runs, final = {}, {}
    for name in OBJECTIVES:
        final[name], runs[name] = _train.fit(
            loss_fn, params, sgd, steps, hyper=hyper(name), desc=f"jax {name}", evaluate=evaluate
        )

    @_train.jit
    def confidence_maps(grid, finals):
        """The max class probability on ``grid``, and the mean entropy there, per run."""
        logits = {name: apply(p, grid) for name, p in finals.items()}
        return {
            name: (jnp.max(jaxreg.softmax(z), axis=-1), jaxreg.output_entropy(z))
            for name, z in logits.items()
        }

    g = np.linspace(-3.5, 3.5, 140)
    grid = jnp.asarray(np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2))
    return runs, jax.tree.map(np.asarray, confidence_maps(grid, final))


def train_torch(model: nnx.Module, data: tuple[np.ndarray, ...], name: str, steps: int) -> dict:
    """The twin of one run: ``torch_ref.nn.Linear``, ``F.cross_entropy``, ``torch.optim.SGD``."""
    import torch
    import torch.nn.functional as F

    import torch_ref.diagnostics
    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.Linear(2, 3, param_dtype=torch.float64))
    x, y = _train.to_torch(data[0]), _train.to_torch(data[1])
    h = hyper(name)

    def loss_fn(_):
        logits = net(x)
        l2 = 0.5 * net.weight.pow(2).sum()
        entropy = torch_ref.diagnostics.output_entropy(logits)
        return h["ce"] * F.cross_entropy(logits, y) + h["l2"] * l2 + h["h"] * entropy

    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    return _train.torch_fit(loss_fn, optimizer, steps, desc=f"torch {name}")


def plot(runs: dict, maps: dict, data: tuple[np.ndarray, ...], steps: int, out) -> None:
    """Entropy, test cross-entropy and accuracy over training; confidence maps of three runs."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    for (name, c), color in zip(runs.items(), STYLES, strict=True):
        ls = ":" if "only" in name else "-"
        axes[0, 0].plot(c["entropy"], color=color, ls=ls, label=name)
        axes[0, 1].plot(c["test_ce"], color=color, ls=ls, label=name)
        axes[0, 2].plot(c["accuracy"], color=color, ls=ls, label=name)
    axes[0, 0].axhline(np.log(3), color="gray", lw=0.5)
    axes[0, 0].set(title="Output entropy H (train; max log 3 = 1.10)", ylabel="nats")
    axes[0, 1].set(title="Test cross-entropy", ylabel="nats", ylim=(0, 3))
    axes[0, 2].set(title="Test accuracy", ylabel="fraction correct", ylim=(0, 1))
    for ax in axes[0]:
        ax.set_xlabel("SGD step (full batch)")
    axes[0, 2].legend(fontsize=8)
    g1, g2 = np.meshgrid(np.linspace(-3.5, 3.5, 140), np.linspace(-3.5, 3.5, 140))
    x, y = data[0], data[1]
    shown = [list(OBJECTIVES)[i] for i in (2, 0, 3)]
    for ax, name in zip(axes[1], shown, strict=True):
        confidence, h = maps[name]
        confidence = confidence.reshape(g1.shape)
        im = ax.contourf(g1, g2, confidence, levels=np.linspace(1 / 3, 1, 13), cmap="viridis")
        for k, color in enumerate(["tab:red", "tab:orange", "white"]):
            ax.scatter(*x[y == k].T, color=color, s=10, edgecolors="k", linewidths=0.3)
        ax.set(title=f"{name}\nmax probability; mean entropy on the grid {float(h):.2f}")
        ax.set(xlabel="$x_1$", ylabel="$x_2$", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal")
    fig.colorbar(im, ax=axes[1, 2], shrink=0.8, label="max class probability", format="%.2f")
    fig.suptitle(
        f"Seed 000: linear softmax classifier on 3 Gaussian classes, SGD lr={LEARNING_RATE}, "
        f"{steps} steps, same initial weights; H = mean entropy of softmax(logits)"
    )
    _common.save(fig, out, "seed000_entropy_training")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiment; returns the largest |JAX − torch| objective gap (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    steps = 50 if args.quick else 400
    rng = np.random.default_rng(0)
    data = (*blobs(50, rng), *blobs(300, rng))
    model = jaxreg.Linear(2, 3, param_dtype=dtype, rngs=nnx.Rngs(0))
    runs, maps = train_jax(model, data, steps)
    for name, c in runs.items():
        print(
            f"{name:28s} entropy {c['entropy'][-1]:.3f}  test CE {c['test_ce'][-1]:.3f}  "
            f"accuracy {c['accuracy'][-1]:.3f}"
        )
    plot(runs, maps, data, steps, args.out)
    if not args.torch:
        return {}
    twins = {name: train_torch(model, data, name, steps) for name in OBJECTIVES}
    jax_curve = np.concatenate([runs[k]["loss"] for k in OBJECTIVES])
    torch_curve = np.concatenate([twins[k]["loss"] for k in OBJECTIVES])
    return {"loss": _common.report_difference("seed000 objectives", jax_curve, torch_curve)}


if __name__ == "__main__":
    main()
