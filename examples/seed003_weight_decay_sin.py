"""Seed 003: train and test loss with and without L2 (``weight_decay=0.1``) on ``y = sin(x) + ε``.

The seed's network (``30 → 20 → 10 → 30``, ReLU, MSE, plain SGD) is trained twice,
once without and once with ``weight_decay=0.1`` — here from the *same* initial
weights (the seed re-initialized between the two runs), with the train and test
losses measured at the *same* parameters (the seed took the test loss one step
later), and on two training-set sizes:

* the seed's 1000 samples: the 10-unit bottleneck cannot represent 30
  independent sines, nothing overfits, and ``weight_decay=0.1`` only costs fit;
* 30 samples: without decay the train loss keeps falling while the test loss
  stays above that of the constant predictor (the mean of the training targets);
  with ``weight_decay=0.1`` the gap closes — the decay is strong enough to shrink
  the network to (almost) that constant predictor, the best this model does here.

``--torch`` trains ``torch_ref.nn.MLP`` with ``torch.optim.SGD`` from weights copied
by ``torch_ref.bridge`` and prints the largest difference between the curves
(float64: agreement to ~1e-14).

Run: ``python -m examples.seed003_weight_decay_sin [--quick] [--torch] [--out plots]``
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

SIZES = (30, 20, 10, 30)
WEIGHT_DECAYS = (0.0, 0.1)
N_TRAIN = (1000, 30)
N_TEST = 100
LEARNING_RATE = 0.05
METRICS = ("loss", "test", "norm")


def make_data(n_train: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The seed's data: ``x ~ N(0, I₃₀)``, ``y = sin(x) + 0.1·ε`` elementwise."""

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, SIZES[0]))
        return x, np.sin(x) + 0.1 * rng.standard_normal((n, SIZES[-1]))

    return (*draw(n_train), *draw(N_TEST))


def sgd(weight_decay: jax.Array) -> optax.GradientTransformation:
    """The seed's optimizer, ``torch.optim.SGD(lr, weight_decay=...)``, torch-exact."""
    return jaxreg.sgd(LEARNING_RATE, weight_decay=weight_decay)


def train_jax(model: nnx.Module, data: tuple[np.ndarray, ...], steps: int) -> dict:
    """Full-batch SGD on the MSE for each weight decay, from the same initial weights.

    Returns:
      ``{weight_decay: curves}``, the curves (train loss, test loss, ‖θ‖₂) measured
      before each step.
    """
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)

    def loss_fn(p, _, __):
        return jaxreg.mse_loss(apply(p, x), y)

    def evaluate(p):
        return {"test": jaxreg.mse_loss(apply(p, x_test), y_test), "norm": jaxreg.global_norm(p)}

    curves = {}
    for wd in WEIGHT_DECAYS:
        desc = f"jax n={len(x)} wd={wd}"
        _, curves[wd] = _train.fit(
            loss_fn, params, sgd, steps, hyper=wd, desc=desc, evaluate=evaluate
        )
    return curves


def train_torch(model: nnx.Module, data: tuple[np.ndarray, ...], wd: float, steps: int) -> dict:
    """The twin: ``torch_ref.nn.MLP`` with the nnx weights, ``torch.optim.SGD``, float64."""
    import torch

    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.MLP(SIZES, param_dtype=torch.float64))
    x, y, x_test, y_test = (_train.to_torch(a) for a in data)
    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, weight_decay=wd)

    def evaluate():
        norm = torch.linalg.vector_norm(torch.cat([p.reshape(-1) for p in net.parameters()]))
        return {"test": torch.nn.functional.mse_loss(net(x_test), y_test), "norm": norm}

    def loss_fn(_):
        return torch.nn.functional.mse_loss(net(x), y)

    desc = f"torch n={len(x)} wd={wd}"
    return _train.torch_fit(loss_fn, optimizer, steps, desc=desc, evaluate=evaluate)


def plot(runs: dict, baselines: dict, steps: int, out) -> None:
    """Train/test curves per training-set size (with the constant predictor), and ‖θ‖₂."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = {0.0: "tab:blue", 0.1: "tab:orange"}
    for ax, n in zip(axes[:2], N_TRAIN, strict=True):
        for wd in WEIGHT_DECAYS:
            c, label = runs[n, wd], f"weight_decay={wd}"
            ax.plot(c["loss"], color=colors[wd], label=f"train, {label}")
            ax.plot(c["test"], color=colors[wd], ls="--", label=f"test, {label}")
        ax.axhline(baselines[n], color="gray", ls=":", label="test, constant predictor")
        seed = " (the seed's size)" if n == 1000 else " (few samples: overfitting)"
        ax.set(title=f"{n} training samples{seed}", xlabel="SGD step (full batch)")
        ax.set(ylabel="MSE loss")
        ax.legend(fontsize=8)
    ax = axes[2]
    for (n, wd), c in runs.items():
        style = "-" if n == 1000 else ":"
        ax.plot(c["norm"], color=colors[wd], ls=style, label=f"n={n}, weight_decay={wd}")
    ax.set(title="Parameter norm: weight_decay=0.1 shrinks the network", xlabel="SGD step")
    ax.set(ylabel=r"$\|\theta\|_2$")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Seed 003: MLP {'-'.join(map(str, SIZES))} (ReLU) on y = sin(x) + 0.1ε, SGD lr="
        f"{LEARNING_RATE}, {steps} steps, both runs from the same initial weights"
    )
    _common.save(fig, out, "seed003_weight_decay_sin")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiment; returns the largest |JAX − torch| per curve (empty without --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    steps = 60 if args.quick else 1500
    rng = np.random.default_rng(0)
    runs, twins, baselines = {}, {}, {}
    for n in N_TRAIN:
        data = make_data(n, rng)
        baselines[n] = float(np.mean((data[3] - data[1].mean(axis=0, keepdims=True)) ** 2))
        model = jaxreg.MLP(SIZES, param_dtype=dtype, rngs=nnx.Rngs(n))
        for wd, curves in train_jax(model, data, steps).items():
            runs[n, wd] = curves
            if args.torch:
                twins[n, wd] = train_torch(model, data, wd, steps)
    for (n, wd), c in runs.items():
        print(f"n={n:4d} weight_decay={wd}: train {c['loss'][-1]:.4f}, test {c['test'][-1]:.4f}")
    plot(runs, baselines, steps, args.out)
    differences = {}
    for m in METRICS if args.torch else ():
        jax_curve = np.concatenate([runs[k][m] for k in runs])
        torch_curve = np.concatenate([twins[k][m] for k in runs])
        differences[m] = _common.report_difference(f"seed003 {m}", jax_curve, torch_curve)
    return differences


if __name__ == "__main__":
    main()
