"""Seed 001: the norms of ``[3, −4]``, and minibatch SGD linear regression on ``y = Xw + b + ε``.

The norms: ``‖u‖₂ = 5``, ``‖u‖₁ = 7``, ``‖u‖∞ = 4`` for ``u = [3, −4]``
(:func:`jaxreg.vector_norm`), drawn as the spheres ``{x : ‖x‖_p = ‖u‖_p}`` that
pass through ``u``.

The regression is the seed's: 1000 samples ``x ~ N(0, I₂)``, ``y = 2x₁ − 3.4x₂ + 4.2
+ ε`` with ``ε ~ N(0, 0.01²)`` (Gaussian noise makes the squared loss the negative
log-likelihood), the loss ``½(ŷ − y)²`` (:func:`jaxreg.squared_loss`) averaged
over minibatches of 10, and SGD ``(w, b) ← (w, b) − η/|B|·Σ ∂l`` with ``η = 0.03``
for 3 epochs, over a fixed shuffled batch order.

``--torch`` trains ``torch_ref.nn.Linear(2, 1)`` from the same weights
(``torch_ref.bridge``) with ``torch.optim.SGD`` on the same batches.

Run: ``python -m examples.seed001_linear_regression [--quick] [--torch] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxreg
from examples import _common, _train

U = np.array([3.0, -4.0])
TRUE_W, TRUE_B = np.array([2.0, -3.4]), 4.2
N, BATCH, LEARNING_RATE = 1000, 10, 0.03


def norms_of_u() -> dict[str, float]:
    """``‖u‖_p`` for p = 1, 2, ∞ and the Frobenius norm of ``ones(4, 9)`` (the seed's)."""
    u = jnp.asarray(U)
    values = {f"‖u‖_{p}": float(jaxreg.vector_norm(u, ord=p)) for p in (1, 2)}
    values["‖u‖_∞"] = float(jaxreg.vector_norm(u, ord=jnp.inf))
    values["‖ones(4, 9)‖_F"] = float(jaxreg.frobenius_norm(jnp.ones((4, 9))))
    return values


def synthetic_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``y = Xw + b + ε``, ``ε ~ N(0, 0.01²)``."""
    x = rng.standard_normal((N, 2))
    return x, (x @ TRUE_W + TRUE_B + 0.01 * rng.standard_normal(N))[:, None]


def batch_order(epochs: int, rng: np.random.Generator) -> np.ndarray:
    """Minibatch indices ``[steps, BATCH]``: a fresh shuffle each epoch."""
    return np.concatenate([rng.permutation(N).reshape(-1, BATCH) for _ in range(epochs)])


def train_jax(model: nnx.Module, data, batches: np.ndarray) -> dict[str, np.ndarray]:
    """Minibatch SGD; the full-data loss and the parameters before each step."""
    x, y = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)

    def loss_fn(p, idx, _):
        return jnp.mean(jaxreg.squared_loss(apply(p, x[idx]), y[idx]))

    def evaluate(p):
        return {
            "full": jnp.mean(jaxreg.squared_loss(apply(p, x), y)),
            "w1": p["kernel"][0, 0],
            "w2": p["kernel"][1, 0],
            "b": p["bias"][0],
        }

    optimizer = jaxreg.sgd(LEARNING_RATE)
    xs = jnp.asarray(batches)
    return _train.fit(
        loss_fn, params, optimizer, len(batches), desc="jax", xs=xs, evaluate=evaluate
    )[1]


def train_torch(model: nnx.Module, data, batches: np.ndarray) -> dict[str, np.ndarray]:
    """The twin: ``torch_ref.nn.Linear(2, 1)``, ``torch.optim.SGD``, the same batches."""
    import torch

    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.Linear(2, 1, param_dtype=torch.float64))
    x, y = (_train.to_torch(a) for a in data)

    def loss_fn(idx):
        return (0.5 * (net(x[idx]) - y[idx]) ** 2).mean()

    def evaluate():
        return {"full": (0.5 * (net(x) - y) ** 2).mean()}

    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    xs = _train.to_torch(batches)
    return _train.torch_fit(
        loss_fn, optimizer, len(batches), desc="torch", xs=xs, evaluate=evaluate
    )


def plot(norms: dict[str, float], curves: dict[str, np.ndarray], out) -> None:
    """The p-spheres through ``u``; the loss; the parameters converging to the truth."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    t = np.linspace(0, 2 * np.pi, 721)
    circle = np.stack([np.cos(t), np.sin(t)], axis=-1)
    for p, color in ((1, "tab:red"), (2, "tab:blue"), (np.inf, "tab:green")):
        r = float(jaxreg.vector_norm(jnp.asarray(U), ord=p))
        unit = circle / np.linalg.norm(circle, ord=p, axis=-1, keepdims=True)
        name = "∞" if p == np.inf else str(p)
        ax.plot(r * unit[:, 0], r * unit[:, 1], color=color, label=f"‖x‖_{name} = {r:g}")
    ax.plot(*U, "ko", label="u = (3, −4)")
    ax.set(title="Norms of u = [3, −4]: the p-spheres through u", xlabel="x₁", ylabel="x₂")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1]
    ax.semilogy(curves["full"], label="½·mean (ŷ − y)² on all 1000 samples")
    ax.semilogy(curves["loss"], alpha=0.4, lw=0.8, label="minibatch loss (the SGD objective)")
    ax.axhline(0.5 * 0.01**2, color="gray", ls=":", label="noise floor ½σ² = 5e-5")
    ax.set(title=f"Minibatch SGD (batch {BATCH}, lr {LEARNING_RATE})", xlabel="step")
    ax.set(ylabel="squared loss (log scale)")
    ax.legend(fontsize=8)
    ax = axes[2]
    for key, truth, color in (
        ("w1", 2.0, "tab:blue"),
        ("w2", -3.4, "tab:orange"),
        ("b", TRUE_B, "tab:green"),
    ):
        ax.plot(curves[key], color=color, label=f"{key} → {curves[key][-1]:.4f}")
        ax.axhline(truth, color=color, ls=":", lw=1)
    ax.set(title="Parameters (dotted: the truth 2, −3.4, 4.2)", xlabel="step", ylabel="value")
    ax.legend(fontsize=8)
    fig.suptitle(
        "Seed 001: "
        + ", ".join(f"{k} = {v:g}" for k, v in norms.items())
        + f";  linear regression y = 2x₁ − 3.4x₂ + 4.2 + ε, {N} samples"
    )
    _common.save(fig, out, "seed001_linear_regression")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiment; returns the largest |JAX − torch| loss difference (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    norms = norms_of_u()
    print(", ".join(f"{k} = {v:g}" for k, v in norms.items()))
    rng = np.random.default_rng(0)
    data = synthetic_data(rng)
    batches = batch_order(3, rng)[: 25 if args.quick else None]
    model = jaxreg.Linear(2, 1, param_dtype=dtype, rngs=nnx.Rngs(0))
    curves = train_jax(model, data, batches)
    print(f"w = ({curves['w1'][-1]:.4f}, {curves['w2'][-1]:.4f}), b = {curves['b'][-1]:.4f}")
    plot(norms, curves, args.out)
    if not args.torch:
        return {}
    twin = train_torch(model, data, batches)
    return {"loss": _common.report_difference("seed001 loss", curves["full"], twin["full"])}


if __name__ == "__main__":
    main()
