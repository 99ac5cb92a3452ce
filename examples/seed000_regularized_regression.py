"""Seed 000: linear regression ``y = 2x`` with L1 / L2 penalties, norm convergence, solution space.

The seed fits ``nn.Linear(1, 1)`` to ``x = 1, 2, 3, 4``, ``y = 2x`` with SGD and adds
a penalty on the weight. It called ``torch.norm(w, 2)`` the L2 penalty — for a
scalar weight that is ``|w|``, the L1 penalty again. Here the three objectives are

* none: ``MSE(w, b)``,
* L1: ``MSE + λ·|w|`` (:func:`jaxreg.l1_penalty`, gradient ``λ·sign(w)``),
* L2: ``MSE + λ·½w²`` (:func:`jaxreg.l2_penalty`, gradient ``λ·w``, torch's
  ``weight_decay=λ``),

the bias unpenalized (``mask=jaxreg.weights_only``). Each has a closed-form optimum
(centre the data; the weight solves a 1-D problem): L2 shrinks the weight by a
factor, ``w* = 2S_xy / (2S_xx + λ)``, L1 subtracts a constant, ``w* = (2S_xy − λ) / 2S_xx``.
Plain gradient descent converges to it *linearly*: ``‖θ_t − θ*‖`` falls on a
straight line in log scale, at a rate set by the smallest curvature.

The second figure is the solution space (:mod:`examples.solution_space`): the L1
diamond and the L2 ball against the loss contours, touching them at the
regularized optimum.

``--torch`` trains ``torch_ref.nn.Linear`` with the same initial weights (copied by
``torch_ref.bridge``) and ``torch.optim.SGD`` on the same objectives.

Run: ``python -m examples.seed000_regularized_regression [--quick] [--torch] [--out plots]``
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

X = np.array([[1.0], [2.0], [3.0], [4.0]])
Y = 2.0 * X
LAMBDA = 1.0
LEARNING_RATE = 0.1
PENALTIES = ("none", "L1", "L2")
COLORS = {"none": "tab:gray", "L1": "tab:red", "L2": "tab:blue"}


def closed_form(penalty: str, lam: float = LAMBDA) -> tuple[float, float]:
    """The optimum ``(w*, b*)`` of ``MSE + λ·penalty(w)`` for the seed's data."""
    x, y = X[:, 0], Y[:, 0]
    sxx = np.mean((x - x.mean()) ** 2)
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    if penalty == "none":
        w = sxy / sxx
    elif penalty == "L2":  # d/dw: 2(w·Sxx − Sxy) + λw = 0
        w = 2 * sxy / (2 * sxx + lam)
    else:  # soft-thresholding of the unpenalized solution
        w = np.sign(sxy) * max(2 * abs(sxy) - lam, 0.0) / (2 * sxx)
    return float(w), float(y.mean() - w * x.mean())


def strengths(penalty: str) -> dict[str, float]:
    """The coefficients ``(l1, l2)`` of ``MSE + l1·|w| + l2·½w²`` for one objective."""
    return {"l1": LAMBDA if penalty == "L1" else 0.0, "l2": LAMBDA if penalty == "L2" else 0.0}


def train_jax(model: nnx.Module, steps: int) -> dict[str, dict[str, np.ndarray]]:
    """Full-batch gradient descent for each objective, from the model's initial weights.

    Returns:
      ``{penalty: curves}`` with the objective, ``w``, ``b``, ``‖θ_t − θ*‖₂`` and the
      step norm ``‖θ_{t+1} − θ_t‖₂`` (:mod:`jaxreg.convergence`).
    """
    apply, params = _train.split_model(model)
    x, y = jnp.asarray(X), jnp.asarray(Y)
    optimizer = jaxreg.sgd(LEARNING_RATE)

    def objective(params, hyper):
        weights = jaxreg.weights_only  # the bias is never penalized
        return (
            jaxreg.mse_loss(apply(params, x), y)
            + hyper["l1"] * jaxreg.l1_penalty(params, mask=weights)
            + hyper["l2"] * jaxreg.l2_penalty(params, mask=weights)
        )

    def step(carry, _):
        params, state, conv, hyper = carry
        loss, grads = jax.value_and_grad(objective)(params, hyper)
        theta = jnp.stack([params["kernel"][0, 0], params["bias"][0]])
        error = jaxreg.vector_norm(theta - hyper["optimum"])
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        conv = jaxreg.convergence_update(conv, params, grads)
        metrics = {"loss": loss, "w": theta[0], "b": theta[1], "error": error}
        return (params, state, conv, hyper), {**metrics, "step": conv.step_norm}

    runs = {}
    for penalty in PENALTIES:
        hyper = {**strengths(penalty), "optimum": np.array(closed_form(penalty))}
        hyper = jax.tree.map(jnp.asarray, hyper)
        conv = jaxreg.convergence_init(params)
        carry = (params, optimizer.init(params), conv, hyper)
        runs[penalty] = _train.scan_loop(step, carry, steps, desc=f"jax {penalty}")[1]
    return runs


def train_torch(model: nnx.Module, penalty: str, steps: int) -> dict[str, np.ndarray]:
    """The twin: ``torch_ref.nn.Linear`` with the nnx weights, ``torch.optim.SGD``."""
    import torch

    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.Linear(1, 1, param_dtype=torch.float64))
    x, y = _train.to_torch(X), _train.to_torch(Y)

    def loss_fn(_):
        c = strengths(penalty)
        mse = torch.nn.functional.mse_loss(net(x), y)
        return mse + c["l1"] * net.weight.abs().sum() + c["l2"] * 0.5 * net.weight.pow(2).sum()

    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    return _train.torch_fit(loss_fn, optimizer, steps, desc=f"torch {penalty}")


def plot(runs: dict[str, dict[str, np.ndarray]], out) -> None:
    """The fitted lines, the weight over training, and ‖θ_t − θ*‖ in log scale."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    ax.scatter(X[:, 0], Y[:, 0], color="k", zorder=3, label="data  y = 2x")
    grid = np.linspace(0, 5, 2)
    for p in PENALTIES:
        w, b = closed_form(p)
        ax.plot(grid, w * grid + b, color=COLORS[p], label=f"{p}: ŷ = {w:.3f}x {b:+.3f}")
    ax.set(title=f"Fitted lines (λ = {LAMBDA}, bias not penalized)", xlabel="x", ylabel="y")
    ax.legend(fontsize=8)
    ax = axes[1]
    for p in PENALTIES:
        ax.plot(runs[p]["w"], color=COLORS[p], label=f"{p}")
        ax.axhline(closed_form(p)[0], color=COLORS[p], ls=":", lw=1)
    ax.set(title="Weight during training (dotted: closed-form optimum)", xlabel="SGD step")
    ax.set(ylabel="w")
    ax.legend(fontsize=8)
    ax = axes[2]
    for p in PENALTIES:
        ax.semilogy(runs[p]["error"], color=COLORS[p], label=rf"{p}: $\|\theta_t-\theta^*\|_2$")
        ax.semilogy(
            runs[p]["step"], color=COLORS[p], ls="--", lw=1, label=rf"{p}: $\|\Delta\theta_t\|_2$"
        )
    ax.set(title="Norm convergence: linear rate (straight in log scale)", xlabel="SGD step")
    ax.set(ylabel="norm (log scale)")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Seed 000: ŷ = wx + b on y = 2x, full-batch SGD lr={LEARNING_RATE}, "
        "objective MSE + λ·penalty(w)"
    )
    _common.save(fig, out, "seed000_regularized_regression")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiment; returns the largest |JAX − torch| loss difference (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    steps = 50 if args.quick else 400
    model = jaxreg.Linear(1, 1, param_dtype=dtype, rngs=nnx.Rngs(0))
    runs = train_jax(model, steps)
    for p, c in runs.items():
        w, b = closed_form(p)
        print(f"{p:4s}: w = {c['w'][-1]:.6f} (closed form {w:.6f}), b = {c['b'][-1]:.6f} ({b:.6f})")
    plot(runs, args.out)
    solution_space.plot_solution_space(args.out, quick=args.quick)
    if not args.torch:
        return {}
    twins = {p: train_torch(model, p, steps) for p in PENALTIES}
    jax_curve = np.concatenate([runs[p]["loss"] for p in PENALTIES])
    torch_curve = np.concatenate([twins[p]["loss"] for p in PENALTIES])
    return {"loss": _common.report_difference("seed000 objective", jax_curve, torch_curve)}


if __name__ == "__main__":
    main()
