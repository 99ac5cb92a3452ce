"""Seed 001: weight decay on a high-dimensional, few-sample regression, and K-fold CV to choose λ.

The seed's setting: 200 features, 20 training samples, 100 test samples, ``y = 0.05
+ Σᵢ 0.01·xᵢ + ε`` with ``ε ~ N(0, 0.01²)``. A linear model ``jaxreg.Linear(200, 1)``
is trained with minibatch SGD (batch 5, lr 0.003) on the MSE with
``weight_decay=λ`` on the weight only (the bias is not decayed:
``mask=jaxreg.weights_only``, a torch parameter group with ``weight_decay=0``).
Each step multiplies the weight by ``(1 − ηλ)`` before the gradient step. Without
decay the model interpolates the 20 points, and the random initial weights in the
180 directions the data never sees stay as they are: the test loss stays high.
With ``λ = 3`` those weights decay away, and the test loss falls 50-fold.

Five-fold cross-validation chooses λ without looking at the test set: the same
training (full batch, from the same weights, same number of steps) is run for
every (λ, fold) pair at once — ``jax.vmap`` over both — and scored on the
held-out fold.

``--torch`` trains ``torch_ref.nn.Linear(200, 1)`` from the same weights
(``torch_ref.bridge``) with ``torch.optim.SGD`` and the seed's parameter groups.

Run: ``python -m examples.seed001_weight_decay [--quick] [--torch] [--out plots]``
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

N_TRAIN, N_TEST, DIM = 20, 100, 200
BATCH, LEARNING_RATE = 5, 0.003
WEIGHT_DECAYS = (0.0, 3.0)
FOLDS = 5


def make_data(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``y = 0.05 + Σ 0.01·x + ε``, 20 training and 100 test samples of 200 features."""

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, DIM))
        return x, 0.05 + x @ np.full((DIM, 1), 0.01) + 0.01 * rng.standard_normal((n, 1))

    return (*draw(N_TRAIN), *draw(N_TEST))


def sgd(weight_decay: jax.Array) -> optax.GradientTransformation:
    """SGD with weight decay on the weights only (the seed's two parameter groups)."""
    return jaxreg.sgd(LEARNING_RATE, weight_decay=weight_decay, mask=jaxreg.weights_only)


def train_jax(model: nnx.Module, data, batches: np.ndarray) -> dict[float, dict]:
    """Minibatch SGD for each weight decay; train/test MSE and ‖w‖ before each step."""
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)

    def loss_fn(p, idx, _):
        return jaxreg.mse_loss(apply(p, x[idx]), y[idx])

    def evaluate(p):
        return {
            "train": jaxreg.mse_loss(apply(p, x), y),
            "test": jaxreg.mse_loss(apply(p, x_test), y_test),
            "norm": jaxreg.l2_norm(p["kernel"][...]),
        }

    xs = jnp.asarray(batches)
    return {
        wd: _train.fit(
            loss_fn,
            params,
            sgd,
            len(batches),
            hyper=wd,
            xs=xs,
            desc=f"jax λ={wd}",
            evaluate=evaluate,
        )[1]
        for wd in WEIGHT_DECAYS
    }


def train_torch(model: nnx.Module, data, batches: np.ndarray, wd: float) -> dict:
    """The twin: the seed's ``torch.optim.SGD([{weight, weight_decay}, {bias}])``."""
    import torch
    import torch.nn.functional as F

    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.Linear(DIM, 1, param_dtype=torch.float64))
    x, y, x_test, y_test = (_train.to_torch(a) for a in data)
    groups = [{"params": [net.weight], "weight_decay": wd}, {"params": [net.bias]}]
    optimizer = torch.optim.SGD(groups, lr=LEARNING_RATE)

    def evaluate():
        return {"train": F.mse_loss(net(x), y), "test": F.mse_loss(net(x_test), y_test)}

    return _train.torch_fit(
        lambda idx: F.mse_loss(net(x[idx]), y[idx]),
        optimizer,
        len(batches),
        desc=f"torch λ={wd}",
        xs=_train.to_torch(batches),
        evaluate=evaluate,
    )


def cross_validate(model: nnx.Module, data, lams: np.ndarray, steps: int) -> dict[str, np.ndarray]:
    """K-fold CV of weight-decay training: one run per (λ, fold), all vmapped in one scan.

    Each run is full-batch gradient descent from the model's initial weights on the
    fold's 16 training samples, for ``steps`` steps; it is scored on the 4 held-out
    samples (and, for reference only, on the test set).
    """
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model)
    folds = np.arange(N_TRAIN).reshape(FOLDS, -1)
    train_idx = jnp.asarray([np.setdiff1d(np.arange(N_TRAIN), f) for f in folds])
    held_idx = jnp.asarray(folds)

    def one_step(p, state, lam, tr, held):
        grads = jax.grad(lambda q: jaxreg.mse_loss(apply(q, x[tr]), y[tr]))(p)
        updates, state = sgd(lam).update(grads, state, p)
        errors = {
            "cv": jaxreg.mse_loss(apply(p, x[held]), y[held]),
            "test": jaxreg.mse_loss(apply(p, x_test), y_test),
        }
        return optax.apply_updates(p, updates), state, errors

    # runs[λ, fold]: the folds share λ, the λs share the folds' data.
    runs = jax.vmap(jax.vmap(one_step, (0, 0, None, 0, 0)), (0, 0, 0, None, None))
    lam = jnp.asarray(lams)

    def step(carry, _):
        p, state, errors = runs(*carry, lam, train_idx, held_idx)
        return (p, state), errors

    def tile(tree):
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (len(lams), FOLDS, *a.shape)), tree)

    carry = (tile(params), tile(sgd(0.0).init(params)))
    _, curves = _train.scan_loop(step, carry, steps, desc="cross-validation")
    return {
        "cv": curves["cv"][-1].mean(-1),
        "cv_std": curves["cv"][-1].std(-1),
        "test": curves["test"][-1].mean(-1),
    }


def plot(runs: dict, cv: dict, lams: np.ndarray, out) -> float:
    """Train/test curves with and without decay; the CV curve and the chosen λ."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    colors = {WEIGHT_DECAYS[0]: "tab:blue", WEIGHT_DECAYS[1]: "tab:orange"}
    for wd, c in runs.items():
        axes[0].semilogy(c["train"], color=colors[wd], label=f"train, weight_decay={wd}")
        axes[0].semilogy(c["test"], color=colors[wd], ls="--", label=f"test, weight_decay={wd}")
        axes[1].plot(c["norm"], color=colors[wd], label=f"weight_decay={wd}")
    axes[0].set(title=f"{N_TRAIN} samples, {DIM} features: MSE", xlabel="SGD step (batch 5)")
    axes[0].set(ylabel="MSE (log scale)")
    axes[0].legend(fontsize=8)
    axes[1].set(title="‖w‖₂: each step multiplies w by (1 − ηλ)", xlabel="SGD step")
    axes[1].set(ylabel="‖w‖₂")
    axes[1].legend(fontsize=8)
    ax = axes[2]
    best = float(lams[np.argmin(cv["cv"])])
    ax.loglog(lams, cv["cv"], color="k", label=f"{FOLDS}-fold CV error (mean ± std)")
    ax.fill_between(
        lams,
        np.maximum(cv["cv"] - cv["cv_std"], 1e-6),
        cv["cv"] + cv["cv_std"],
        color="gray",
        alpha=0.25,
    )
    ax.loglog(lams, cv["test"], color="tab:red", ls="--", label="test error (not used to choose)")
    for wd in WEIGHT_DECAYS[1:]:
        ax.plot(wd, runs[wd]["test"][-1], "o", color="tab:orange", label=f"SGD run, λ={wd}: test")
    ax.axvline(best, color="k", ls=":", label=f"chosen λ = {best:.3g}")
    ax.set(title=f"Choosing λ: {FOLDS}-fold CV of the same training", xlabel="weight decay λ")
    ax.set(ylabel="MSE")
    ax.legend(fontsize=8)
    fig.suptitle(
        "Seed 001: weight decay on y = 0.05 + Σ 0.01·xᵢ + ε with more features than samples "
        f"(linear model, SGD lr={LEARNING_RATE})"
    )
    _common.save(fig, out, "seed001_weight_decay")
    return best


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiment; returns the largest |JAX − torch| train/test gaps (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    rng = np.random.default_rng(0)
    data = make_data(rng)
    epochs = 5 if args.quick else 100
    batches = np.concatenate([rng.permutation(N_TRAIN).reshape(-1, BATCH) for _ in range(epochs)])
    model = jaxreg.Linear(DIM, 1, param_dtype=dtype, rngs=nnx.Rngs(0))
    runs = train_jax(model, data, batches)
    lams = np.geomspace(1e-2, 1e2, 9 if args.quick else 41)
    cv = cross_validate(model, data, lams, len(batches))
    best = plot(runs, cv, lams, args.out)
    for wd, c in runs.items():
        print(f"weight_decay={wd}: train {c['train'][-1]:.2e}, test {c['test'][-1]:.2e}")
    print(f"{FOLDS}-fold CV chooses λ = {best:.3g}")
    if not args.torch:
        return {}
    differences = {}
    twins = {wd: train_torch(model, data, batches, wd) for wd in WEIGHT_DECAYS}
    for key in ("train", "test"):
        jax_curve = np.concatenate([runs[wd][key] for wd in WEIGHT_DECAYS])
        torch_curve = np.concatenate([twins[wd][key] for wd in WEIGHT_DECAYS])
        differences[key] = _common.report_difference(f"seed001 {key}", jax_curve, torch_curve)
    return differences


if __name__ == "__main__":
    main()
