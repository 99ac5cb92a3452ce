"""Seed 004: L1 sparsity vs L2 shrinkage vs elastic net; ``(1 − ηλ)`` weight decay; parameter trees.

A sparse regression (100 samples, 40 correlated features, 5 of them in the model)
solved three ways (:mod:`jaxreg.solvers`, scikit-learn's objectives): the lasso
sets most coefficients to exactly 0, ridge shrinks all of them and sets none to
0, the elastic net sits in between (and keeps correlated features together).

Exact zeros need the proximal step. Training ``1/(2n)‖y − Xw‖² + λ‖w‖₁`` by
gradient descent on the penalty's subgradient ``λ·sign(w)`` (what adding
``λ·Σ|w|`` to the loss does in torch or JAX) leaves every weight oscillating around
0 with amplitude ``ηλ``; soft-thresholding after each step
(:func:`jaxreg.proximal.l1_proximal`, ISTA) lands on exact zeros and on the lasso
solution.

Weight decay: the L2-penalized step ``w ← w − η(∇L + λw)`` is
``w ← (1 − ηλ)·w − η∇L``, the weights shrink by a constant factor each step
(:func:`jaxreg.optim.sgd` with ``weight_decay=λ`` equals that update).

Parameter trees: flax.nnx registers sub-modules and parameters by attribute, as
``nn.Module.__setattr__`` does; the parameters form a pytree whose paths are the
torch names (``fc1.weight`` ↔ ``('fc1', 'kernel')``), which masks, penalties,
optimizers and ``torch_ref.bridge`` use.

The ridge trace and lasso path on scikit-learn's diabetes data are drawn by
:mod:`examples.solution_space`.

``--torch`` repeats the proximal (ISTA) and the weight-decay runs with
``torch.optim.SGD``, ``torch_ref.proximal.l1_proximal`` and ``torch_ref.bridge``.

Run: ``python -m examples.seed004_sparsity [--quick] [--torch] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxreg
from examples import _common, _train, solution_space

N, P, NONZERO = 100, 40, 5
ALPHA = 0.1  # the lasso's λ, and the strength of the elastic net and the ridge fits
DECAY, DECAY_LR = 0.5, 0.05


class TwoLayer(nnx.Module):
    """The seed's ``mymodule``: ``fc2(relu(fc1(x)))``, sub-modules registered by attribute."""

    def __init__(self, num_inputs: int, hidden: int, num_outputs: int, *, rngs: nnx.Rngs):
        self.fc1 = jaxreg.Linear(num_inputs, hidden, rngs=rngs)
        self.fc2 = jaxreg.Linear(hidden, num_outputs, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jaxreg.relu(self.fc1(x)))


def parameter_tree() -> list[str]:
    """The parameter paths of ``TwoLayer(784, 64, 10)``, with their torch names and shapes."""
    model = nnx.eval_shape(lambda: TwoLayer(784, 64, 10, rngs=nnx.Rngs(0)))
    lines = []
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        torch_name = ".".join(
            [*map(str, path[:-1]), "weight" if path[-1] == "kernel" else path[-1]]
        )
        decayed = "decayed" if len(leaf.shape) >= 2 else "not decayed (weights_only)"
        lines.append(f"{str(path):22s} {str(leaf.shape):10s} torch {torch_name:11s} {decayed}")
    return lines


def sparse_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``y = Xw + ε`` with 5 non-zero weights and features of correlation ``0.5^|i−j|``."""
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(P), np.arange(P)))
    x = rng.multivariate_normal(np.zeros(P), cov, size=N)
    w = np.zeros(P)
    w[rng.choice(P, NONZERO, replace=False)] = rng.choice([-1, 1], NONZERO) * rng.uniform(
        1, 3, NONZERO
    )
    return x, x @ w + 0.5 * rng.standard_normal(N), w


@_train.jit
def solve_three(x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Lasso, elastic net (``l1_ratio=0.5``) and ridge (``alpha = n·λ``, the same λ per ½‖w‖²)."""
    return {
        "lasso": jaxreg.lasso(x, y, ALPHA)[0],
        "elastic net": jaxreg.elastic_net(x, y, ALPHA, l1_ratio=0.5)[0],
        "ridge": jaxreg.ridge(x, y, N * ALPHA)[0],
    }


def l1_training(model: nnx.Module, x, y, steps: int) -> dict[str, dict]:
    """GD on ``1/(2n)‖y − Xw − b‖² + λ‖w‖₁``: the subgradient penalty vs the proximal step."""
    xj, yj = jnp.asarray(x), jnp.asarray(y)[:, None]
    apply, params = _train.split_model(model)
    lr = float(N / np.linalg.norm(x - x.mean(0), 2) ** 2)  # 1/L of the data term

    def data_loss(p):
        return 0.5 * jaxreg.mse_loss(apply(p, xj), yj)

    def subgradient_loss(p, _, __):
        return data_loss(p) + ALPHA * jaxreg.l1_penalty(p, mask=jaxreg.weights_only)

    def proximal_loss(p, _, __):
        return data_loss(p)

    def evaluate(p):
        w = p["kernel"][...]
        return {
            "objective": data_loss(p) + ALPHA * jaxreg.l1_penalty(w),
            "zeros": jnp.sum((w == 0).astype(w.dtype)),
        }

    proximal = optax.chain(jaxreg.sgd(lr), jaxreg.l1_proximal(ALPHA, lr, mask=jaxreg.weights_only))
    runs = {}
    for name, loss_fn, optimizer in (
        ("subgradient", subgradient_loss, jaxreg.sgd(lr)),
        ("proximal", proximal_loss, proximal),
    ):
        final, curves = _train.fit(loss_fn, params, optimizer, steps, desc=name, evaluate=evaluate)
        runs[name] = {**curves, "w": np.asarray(final["kernel"][...])[:, 0], "lr": lr}
    return runs


def decay_equivalence(model: nnx.Module, x, y, steps: int) -> dict[str, np.ndarray]:
    """``sgd(weight_decay=λ)`` against the explicit update ``w ← (1 − ηλ)w − η∇L``."""
    xj, yj = jnp.asarray(x), jnp.asarray(y)[:, None]
    apply, params = _train.split_model(model)

    def loss(p):
        return jaxreg.mse_loss(apply(p, xj), yj)

    optimizer = jaxreg.sgd(DECAY_LR, weight_decay=DECAY, mask=jaxreg.weights_only)
    shrink = 1.0 - DECAY_LR * DECAY

    def explicit(w, g, decayed):
        return (shrink * w if decayed else w) - DECAY_LR * g

    def step(carry, _):
        p, state, manual = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimizer.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        mask = jaxreg.weights_only(manual)
        manual = jax.tree.map(explicit, manual, jax.grad(loss)(manual), mask)
        kernel = p["kernel"][...]
        diff = jaxreg.vector_norm(kernel - manual["kernel"][...], ord=jnp.inf)
        return (p, state, manual), {
            "loss": value,
            "norm": jaxreg.l2_norm(kernel),
            "difference": diff,
        }

    carry = (params, optimizer.init(params), params)
    return _train.scan_loop(step, carry, steps, desc="(1 − ηλ) decay")[1]


def torch_twins(model: nnx.Module, x, y, steps: int, lr: float) -> dict[str, np.ndarray]:
    """ISTA with ``torch_ref.proximal.l1_proximal``, and ``torch.optim.SGD(weight_decay=λ)``."""
    import torch
    import torch.nn.functional as F

    import torch_ref.nn
    import torch_ref.proximal
    from torch_ref.bridge import from_nnx

    xt, yt = _train.to_torch(x), _train.to_torch(y)[:, None]
    net = from_nnx(model, torch_ref.nn.Linear(P, 1, param_dtype=torch.float64))
    sgd = torch.optim.SGD(net.parameters(), lr=lr)
    prox = torch_ref.proximal.l1_proximal([net.weight], ALPHA, lr)

    class Ista:
        """``torch.optim.SGD`` followed by the soft-thresholding step."""

        def zero_grad(self):
            sgd.zero_grad()

        def step(self):
            sgd.step()
            prox.step()

    def objective():
        return {"objective": 0.5 * F.mse_loss(net(xt), yt) + ALPHA * net.weight.abs().sum()}

    ista = _train.torch_fit(
        lambda _: 0.5 * F.mse_loss(net(xt), yt),
        Ista(),
        steps,
        desc="torch ISTA",
        evaluate=objective,
    )
    net = from_nnx(model, torch_ref.nn.Linear(P, 1, param_dtype=torch.float64))
    groups = [{"params": [net.weight], "weight_decay": DECAY}, {"params": [net.bias]}]
    decay = _train.torch_fit(
        lambda _: F.mse_loss(net(xt), yt),
        torch.optim.SGD(groups, lr=DECAY_LR),
        steps,
        desc="torch weight decay",
    )
    return {"objective": ista["objective"], "decay": decay["loss"]}


def plot(w_true, solutions, runs, decay, out) -> None:
    """Coefficients by method; subgradient vs proximal magnitudes; the (1 − ηλ) check."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    idx = np.arange(P)
    ax.stem(idx, w_true, linefmt="k-", markerfmt="ko", basefmt=" ", label="truth (5 non-zero)")
    styles = (("o", "tab:red"), ("s", "tab:purple"), ("^", "tab:blue"))
    for (name, w), (marker, color) in zip(solutions.items(), styles, strict=True):
        zeros = int(np.sum(w == 0))
        ax.plot(idx, w, marker, color=color, ms=5, mfc="none", label=f"{name}: {zeros} exact zeros")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(title=f"Sparse regression, λ = {ALPHA}: L1 sets to 0, L2 shrinks", xlabel="feature j")
    ax.set(ylabel="coefficient $w_j$")
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, color in (("subgradient", "tab:orange"), ("proximal", "tab:green")):
        w = np.sort(np.abs(runs[name]["w"]))[::-1]
        zeros = int(np.sum(w == 0))
        shown = np.where(w == 0, 1e-18, w)
        ax.semilogy(idx, shown, "o-", color=color, ms=3, label=f"{name}: {zeros} exact zeros")
    lr = runs["proximal"]["lr"]
    ax.axhline(lr * ALPHA, color="gray", ls=":", label=f"ηλ = {lr * ALPHA:.1e}")
    ax.set(
        title="GD on the L1 objective: |w| sorted (exact 0 drawn at 1e-18)",
        xlabel="rank",
        ylabel="|w_j| (log scale)",
        ylim=(1e-19, 10),
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(decay["norm"], color="tab:blue", label="‖w_t‖₂, sgd(weight_decay=λ)")
    ax.set(title=f"w ← (1 − ηλ)·w − η∇L, η = {DECAY_LR}, λ = {DECAY}", xlabel="step")
    ax.set(ylabel="‖w‖₂")
    twin = ax.twinx()
    twin.semilogy(
        np.maximum(decay["difference"], 1e-20),
        color="tab:red",
        lw=0.8,
        label="max |w_sgd − w_explicit| (right)",
    )
    twin.set(ylabel="difference (log scale)", ylim=(1e-20, 1e-10))
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    fig.suptitle(
        "Seed 004: L1 sparsity vs L2 shrinkage vs elastic net; the proximal step; "
        "weight decay as (1 − ηλ) shrinkage"
    )
    _common.save(fig, out, "seed004_sparsity")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiments; returns the largest |JAX − torch| differences (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    print("parameter tree of the seed's two-layer module:")
    print("\n".join(parameter_tree()))
    rng = np.random.default_rng(0)
    x, y, w_true = sparse_data(rng)
    solutions = jax.tree.map(np.asarray, solve_three(jnp.asarray(x), jnp.asarray(y)))
    steps = 50 if args.quick else 1000
    model = jaxreg.Linear(P, 1, param_dtype=dtype, rngs=nnx.Rngs(0))
    runs = l1_training(model, x, y, steps)
    gap = np.max(np.abs(runs["proximal"]["w"] - solutions["lasso"]))
    print(
        f"exact zeros: lasso {np.sum(solutions['lasso'] == 0)}, elastic net "
        f"{np.sum(solutions['elastic net'] == 0)}, ridge {np.sum(solutions['ridge'] == 0)}; "
        f"subgradient GD {np.sum(runs['subgradient']['w'] == 0)}, proximal GD "
        f"{np.sum(runs['proximal']['w'] == 0)} (max |w − w_lasso| = {gap:.1e})"
    )
    decay = decay_equivalence(model, x, y, steps)
    print(f"sgd(weight_decay) vs (1 − ηλ) update: max difference {decay['difference'].max():.1e}")
    plot(w_true, solutions, runs, decay, args.out)
    solution_space.plot_paths(args.out, quick=args.quick)
    if not args.torch:
        return {}
    twins = torch_twins(model, x, y, steps, runs["proximal"]["lr"])
    return {
        "ista": _common.report_difference(
            "ISTA objective", runs["proximal"]["objective"], twins["objective"]
        ),
        "decay": _common.report_difference("weight decay loss", decay["loss"], twins["decay"]),
    }


if __name__ == "__main__":
    main()
