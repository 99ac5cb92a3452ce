"""Seed 001: softmax regression on scikit-learn's digits, and logistic regression.

Softmax regression ``ŷ = softmax(xW + b)`` on the 1797 8×8 digit images that ship
with scikit-learn (1297 to train, 500 to test), trained with minibatch SGD on the
cross-entropy ``log Σ exp(o) − o_y`` computed from the logits
(:func:`jaxreg.softmax_cross_entropy`: no overflow for large ``o``, no
``log 0`` — the seed's ``-log(ŷ[y])`` of a softmax output has both). Each class's
weights form an 8×8 template of the digit.

Logistic regression ``p(y=1|x) = σ(wᵀx + b)`` on two Gaussian classes in 2-D,
trained on the binary cross-entropy computed from the logit
(:func:`jaxreg.binary_cross_entropy_with_logits`, ``log(1 − σ(z)) = log σ(−z)``);
its decision boundary is the line ``wᵀx + b = 0``.

``--torch`` trains both with ``torch_ref.nn.Linear`` from the same weights
(``torch_ref.bridge``), ``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits``
and ``torch.optim.SGD`` on the same batches.

Run: ``python -m examples.seed001_classification [--quick] [--torch] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxreg
from examples import _common, _train

N_TEST, BATCH = 500, 64
SOFTMAX_LR, LOGISTIC_LR = 0.5, 0.5


def digits(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The digits, pixels scaled to [0, 1], shuffled and split into train and test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = rng.permutation(len(y))
    x, y = x[order] / 16.0, y[order]
    return x[N_TEST:], y[N_TEST:], x[:N_TEST], y[:N_TEST]


def two_classes(rng: np.random.Generator, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian classes in 2-D, labels 0/1."""
    y = rng.integers(0, 2, n)
    centers = np.array([[-1.0, -0.5], [1.0, 0.8]])
    return centers[y] + rng.standard_normal((n, 2)), y.astype(np.float64)


def batch_order(n: int, epochs: int, rng: np.random.Generator) -> np.ndarray:
    """Minibatch indices ``[steps, BATCH]``: a fresh shuffle each epoch (the remainder dropped)."""
    per_epoch = n // BATCH
    return np.concatenate(
        [rng.permutation(n)[: per_epoch * BATCH].reshape(per_epoch, BATCH) for _ in range(epochs)]
    )


def accuracy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """The fraction of ``argmax(logits) == labels`` (or ``logit > 0`` for a binary logit)."""
    pred = jnp.argmax(logits, axis=-1) if logits.shape[-1] > 1 else (logits[:, 0] > 0)
    return jnp.mean((pred.astype(labels.dtype) == labels).astype(logits.dtype))


def train_softmax(model: nnx.Module, data, batches: np.ndarray) -> dict[str, np.ndarray]:
    """Minibatch SGD on the cross-entropy; train/test loss and accuracy before each step."""
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)

    def loss_fn(p, idx, _):
        return jaxreg.softmax_cross_entropy(apply(p, x[idx]), y[idx])

    def evaluate(p):
        logits, test_logits = apply(p, x), apply(p, x_test)
        return {
            "train": jaxreg.softmax_cross_entropy(logits, y),
            "test": jaxreg.softmax_cross_entropy(test_logits, y_test),
            "train_acc": accuracy(logits, y),
            "test_acc": accuracy(test_logits, y_test),
        }

    optimizer = jaxreg.sgd(SOFTMAX_LR)
    xs = jnp.asarray(batches)
    return _train.fit(
        loss_fn, params, optimizer, len(batches), desc="softmax", xs=xs, evaluate=evaluate
    )


def train_logistic(model: nnx.Module, data, steps: int) -> dict[str, np.ndarray]:
    """Full-batch SGD on the binary cross-entropy from the logit."""
    x, y = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)

    def loss_fn(p, _, __):
        return jaxreg.binary_cross_entropy_with_logits(apply(p, x)[:, 0], y)

    def evaluate(p):
        return {"accuracy": accuracy(apply(p, x), y)}

    optimizer = jaxreg.sgd(LOGISTIC_LR)
    return _train.fit(loss_fn, params, optimizer, steps, desc="logistic", evaluate=evaluate)


def torch_twins(models, digits_data, batches, blobs, steps) -> dict[str, np.ndarray]:
    """Both models again in torch; returns the softmax and logistic loss curves."""
    import torch
    import torch.nn.functional as F

    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    softmax_net = from_nnx(models[0], torch_ref.nn.Linear(64, 10, param_dtype=torch.float64))
    x, y = _train.to_torch(digits_data[0]), _train.to_torch(digits_data[1])
    optimizer = torch.optim.SGD(softmax_net.parameters(), lr=SOFTMAX_LR)
    softmax = _train.torch_fit(
        lambda idx: F.cross_entropy(softmax_net(x[idx]), y[idx]),
        optimizer,
        len(batches),
        desc="torch softmax",
        xs=_train.to_torch(batches),
    )
    logistic_net = from_nnx(models[1], torch_ref.nn.Linear(2, 1, param_dtype=torch.float64))
    xb, yb = _train.to_torch(blobs[0]), _train.to_torch(blobs[1])
    optimizer = torch.optim.SGD(logistic_net.parameters(), lr=LOGISTIC_LR)
    logistic = _train.torch_fit(
        lambda _: F.binary_cross_entropy_with_logits(logistic_net(xb)[:, 0], yb),
        optimizer,
        steps,
        desc="torch logistic",
    )
    return {"softmax": softmax["loss"], "logistic": logistic["loss"]}


def plot(softmax, weights, logistic, predict, blobs, out) -> None:
    """Softmax regression curves and templates; the logistic regression boundary."""
    plt = _common.pyplot()
    fig = plt.figure(figsize=(16, 8))
    grid = fig.add_gridspec(2, 4)
    ax = fig.add_subplot(grid[0, 0])
    ax.plot(softmax["train"], label="train")
    ax.plot(softmax["test"], label="test")
    ax.set(title="Softmax regression: cross-entropy", xlabel="SGD step (batch 64)", ylabel="nats")
    ax.set_yscale("log")
    ax.legend()
    ax = fig.add_subplot(grid[0, 1])
    ax.plot(softmax["train_acc"], label=f"train → {softmax['train_acc'][-1]:.1%}")
    ax.plot(softmax["test_acc"], label=f"test → {softmax['test_acc'][-1]:.1%}")
    ax.set(title="Softmax regression: accuracy", xlabel="SGD step", ylim=(0, 1.02))
    ax.legend()
    templates = grid[1, :2].subgridspec(2, 5)
    for k in range(10):
        ax = fig.add_subplot(templates[k // 5, k % 5])
        limit = np.abs(weights[:, k]).max()
        ax.imshow(weights[:, k].reshape(8, 8), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set(title=f"weights of {k}", xticks=[], yticks=[])
    ax = fig.add_subplot(grid[:, 2:])
    g1, g2 = np.meshgrid(np.linspace(-4, 4, 200), np.linspace(-4, 4, 200))
    prob = predict(np.stack([g1.ravel(), g2.ravel()], axis=-1)).reshape(g1.shape)
    im = ax.contourf(g1, g2, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(g1, g2, prob, levels=[0.5], colors="k", linewidths=2)
    x, y = blobs
    for label, color, marker in ((0, "white", "o"), (1, "yellow", "^")):
        ax.scatter(
            *x[y == label].T,
            color=color,
            marker=marker,
            edgecolors="k",
            s=22,
            label=f"class {label}",
        )
    final = f"BCE {logistic['loss'][-1]:.3f}, accuracy {logistic['accuracy'][-1]:.1%}"
    ax.set(title=f"Logistic regression: σ(wᵀx + b), boundary wᵀx + b = 0 ({final})")
    ax.set(xlabel="x₁", ylabel="x₂", aspect="equal")
    ax.legend(loc="upper left")
    fig.colorbar(im, ax=ax, shrink=0.7, label="p(class 1 | x)")
    fig.suptitle(
        "Seed 001: softmax regression on scikit-learn's digits (1297 train / 500 test, 8×8 "
        "templates below), logistic regression on two Gaussian classes"
    )
    _common.save(fig, out, "seed001_classification")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs both experiments; returns the largest |JAX − torch| loss differences (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    rng = np.random.default_rng(0)
    digits_data = digits(rng)
    batches = batch_order(len(digits_data[1]), 1 if args.quick else 10, rng)
    blobs = two_classes(rng)
    steps = 20 if args.quick else 200
    models = (
        jaxreg.Linear(64, 10, param_dtype=dtype, rngs=nnx.Rngs(0)),
        jaxreg.Linear(2, 1, param_dtype=dtype, rngs=nnx.Rngs(1)),
    )
    trained, softmax = train_softmax(models[0], digits_data, batches)
    fitted, logistic = train_logistic(models[1], blobs, steps)
    print(f"softmax regression: test accuracy {softmax['test_acc'][-1]:.3f}")
    print(f"logistic regression: accuracy {logistic['accuracy'][-1]:.3f}")
    apply = _train.split_model(models[1])[0]
    probability = _train.jit(lambda p, points: jaxreg.sigmoid(apply(p, points)[:, 0]))

    def predict(points):
        return np.asarray(probability(fitted, jnp.asarray(points)))

    plot(softmax, np.asarray(trained["kernel"][...]), logistic, predict, blobs, args.out)
    if not args.torch:
        return {}
    twins = torch_twins(models, digits_data, batches, blobs, steps)
    return {
        "softmax": _common.report_difference("softmax loss", softmax["loss"], twins["softmax"]),
        "logistic": _common.report_difference("logistic loss", logistic["loss"], twins["logistic"]),
    }


if __name__ == "__main__":
    main()
