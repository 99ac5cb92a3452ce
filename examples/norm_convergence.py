"""Norm convergence: ‖w_t − w*‖ over the steps, for ridge (linear rate) and lasso (ISTA vs FISTA).

On scikit-learn's diabetes data (features standardized, intercept fitted and never
penalized), with the data term ``f(w, b) = 1/(2n)‖y − Xw − b‖²``:

* ridge, ``f + λ·½‖w‖²``, by gradient descent with step ``1/L``: the objective is
  ``μ``-strongly convex, so ``‖θ_t − θ*‖ ≤ (1 − μ/L)^t ‖θ_0 − θ*‖`` — a straight
  line in log scale (linear convergence), whose slope is set by the condition
  number ``L/μ`` of ``XᵀX/n + λI``. The run stops by itself when the relative step
  ``‖Δθ‖/max(‖θ‖, 1)`` falls below a tolerance (:func:`jaxreg.convergence.minimize`);
* lasso, ``f + α‖w‖₁``, by ISTA (gradient step, then soft-thresholding:
  :func:`jaxreg.proximal.proximal_sgd`) and by FISTA (the same step at an
  extrapolated point, Beck & Teboulle 2009). FISTA's momentum makes it faster at
  first (worst case ``1/t²`` against ISTA's ``1/t`` for the objective), but once
  the zero pattern is found the problem is locally strongly convex, ISTA converges
  linearly, and FISTA's momentum overshoots: it oscillates and falls behind.
  Restarting the momentum whenever the objective rises (O'Donoghue & Candès 2015,
  what :mod:`jaxreg.solvers` does) keeps the best of both.

``θ*`` comes from :mod:`jaxreg.solvers` (ridge in closed form, lasso by FISTA with
restarts down to a tiny duality gap).

``--torch`` repeats the ridge run with ``torch.optim.SGD(weight_decay=λ)`` on the
weights and ISTA with ``torch_ref.proximal.proximal_sgd``, from the same start.

Run: ``python -m examples.norm_convergence [--quick] [--torch] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg
from examples import _common, _train

RIDGE_LAMBDA, LASSO_ALPHA = 0.1, 2.0
LASSO_RUNS = (("ISTA", "tab:orange"), ("FISTA", "tab:green"), ("FISTA, restarted", "tab:red"))
#: Only the weights are penalized, never the intercept.
MASK = {"w": True, "b": False}


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes data with unit-variance features."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return (x - x.mean(0)) / x.std(0), y


def objectives(x: jax.Array, y: jax.Array):
    """The data term ``f(θ)`` and the two penalized objectives, on ``θ = {"w", "b"}``."""

    def data(theta):
        return 0.5 * jnp.mean((x @ theta["w"] + theta["b"] - y) ** 2)

    def ridge(theta):
        return data(theta) + RIDGE_LAMBDA * jaxreg.l2_penalty(theta, mask=MASK)

    def lasso(theta):
        return data(theta) + LASSO_ALPHA * jaxreg.l1_penalty(theta, mask=MASK)

    return data, ridge, lasso


@_train.jit
def optima(x: jax.Array, y: jax.Array) -> tuple[dict, dict, jax.Array]:
    """The optima θ* of ridge (closed form) and lasso (tiny duality gap); the lasso's F*."""
    coef, intercept = jaxreg.ridge(x, y, x.shape[0] * RIDGE_LAMBDA)
    ridge_star = {"w": coef, "b": intercept}
    coef, intercept = jaxreg.lasso(x, y, LASSO_ALPHA, tol=1e-14, max_iter=200_000)
    lasso_star = {"w": coef, "b": intercept}
    return ridge_star, lasso_star, objectives(x, y)[2](lasso_star)


def distance(theta, target) -> jax.Array:
    """``‖θ − θ*‖₂`` over the whole parameter tree."""
    return jaxreg.global_norm(jax.tree.map(jnp.subtract, theta, target))


def run_gd(data, objective, theta0, optimizer, target, steps: int, desc: str) -> dict:
    """An optax optimizer on the data term ``data`` (its regularizer is in the optimizer).

    Returns the curves ``distance`` ‖θ_t − θ*‖, ``objective``, ``data`` (before each
    step) and ``step`` ‖θ_{t+1} − θ_t‖ (:mod:`jaxreg.convergence`).
    """

    def step(carry, _):
        theta, state, conv = carry
        value, grads = jax.value_and_grad(data)(theta)
        metrics = {
            "distance": distance(theta, target),
            "objective": objective(theta),
            "data": value,
        }
        updates, state = optimizer.update(grads, state, theta)
        theta = optax.apply_updates(theta, updates)
        conv = jaxreg.convergence_update(conv, theta, grads)
        return (theta, state, conv), {**metrics, "step": conv.step_norm}

    carry = (theta0, optimizer.init(theta0), jaxreg.convergence_init(theta0))
    return _train.scan_loop(step, carry, steps, desc=desc)[1]


def run_fista(data, objective, theta0, lr: float, target, steps: int) -> dict[str, dict]:
    """FISTA: ISTA's step taken at ``θ_t + (s_t − 1)/s_{t+1}·(θ_t − θ_{t−1})``.

    Run twice: plain, and restarted — the momentum reset whenever the objective goes
    up (O'Donoghue & Candès' function restart).
    """
    ista = jaxreg.proximal_sgd(lr, l1=LASSO_ALPHA, mask=MASK)

    def step(carry, _):
        theta, previous, s, state, restart = carry
        s_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * s * s))
        momentum = (s - 1.0) / s_next
        point = jax.tree.map(lambda a, b: a + momentum * (a - b), theta, previous)
        updates, state = ista.update(jax.grad(data)(point), state, point)
        new = optax.apply_updates(point, updates)
        value = objective(theta)
        s_next = jnp.where(restart & (objective(new) > value), jnp.ones_like(s_next), s_next)
        metrics = {"distance": distance(theta, target), "objective": value}
        return (new, theta, s_next, state, restart), metrics

    one = jnp.ones((), theta0["b"].dtype)
    runs = {}
    for name, restart in (("FISTA", False), ("FISTA, restarted", True)):
        carry = (theta0, theta0, one, ista.init(theta0), jnp.asarray(restart))
        runs[name] = _train.scan_loop(step, carry, steps, desc=name)[1]
    return runs


def torch_twins(x, y, lrs: dict[str, float], steps: int) -> dict[str, np.ndarray]:
    """Ridge by ``torch.optim.SGD(weight_decay)``, lasso by ``torch_ref.proximal.proximal_sgd``."""
    import torch

    import torch_ref.proximal

    xt, yt = _train.to_torch(x), _train.to_torch(y)
    curves = {}
    for name in ("ridge", "ISTA"):
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        if name == "ridge":
            groups = [{"params": [w], "weight_decay": RIDGE_LAMBDA}, {"params": [b]}]
            optimizer = torch.optim.SGD(groups, lr=lrs[name])
        else:
            optimizer = torch_ref.proximal.proximal_sgd(
                {"w": w, "b": b}, lrs[name], l1=LASSO_ALPHA, mask=MASK
            )
        curves[name] = _train.torch_fit(
            lambda _, w=w, b=b: 0.5 * ((xt @ w + b - yt) ** 2).mean(),
            optimizer,
            steps,
            desc=f"torch {name}",
        )["loss"]
    return curves


def plot(runs: dict, rates: dict, stopped: int, steps: int, out) -> None:
    """‖θ_t − θ*‖ for ridge (with its bound) and for the lasso; the lasso objective gap."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    t = np.arange(steps)
    ax = axes[0]
    ridge = runs["ridge"]
    ax.semilogy(ridge["distance"], color="tab:blue", label="‖θ_t − θ*‖₂, gradient descent")
    ax.semilogy(ridge["step"], color="tab:blue", ls=":", label="‖θ_{t+1} − θ_t‖₂")
    bound = ridge["distance"][0] * (1.0 - rates["ridge"]) ** t
    ax.semilogy(
        bound, "k--", lw=1, label=f"bound (1 − μ/L)^t ‖θ₀ − θ*‖, μ/L = {rates['ridge']:.3f}"
    )
    if stopped < steps:
        ax.axvline(stopped, color="gray", lw=1, label=f"minimize(tol=1e-10) stops: step {stopped}")
    ax.set(title=f"Ridge (λ = {RIDGE_LAMBDA}): linear convergence", xlabel="step")
    ax.set(ylabel="norm (log scale)", ylim=(1e-14, None))
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, color in LASSO_RUNS:
        ax.semilogy(runs[name]["distance"], color=color, label=f"{name}: ‖θ_t − θ*‖₂")
    ax.set(title=f"Lasso (α = {LASSO_ALPHA}): ISTA vs FISTA", xlabel="step")
    ax.set(ylabel="‖θ_t − θ*‖₂ (log scale)", ylim=(1e-14, None))
    ax.legend(fontsize=8)
    ax = axes[2]
    best = rates["lasso_objective"]
    for name, color in LASSO_RUNS:
        gap = np.maximum((runs[name]["objective"] - best) / best, 1e-16)
        ax.loglog(t + 1, gap, color=color, label=f"{name}")
    first = (runs["ISTA"]["objective"][0] - best) / best
    ax.loglog(t + 1, first / (t + 1), "k:", lw=1, label="∝ 1/t (ISTA's bound)")
    ax.loglog(t + 1, first / (t + 1) ** 2, "k--", lw=1, label="∝ 1/t² (FISTA's bound)")
    ax.set(title="Lasso: relative objective gap (F(θ_t) − F*) / F*", xlabel="step (log scale)")
    ax.set(ylabel="relative gap", ylim=(1e-14, None))
    ax.legend(fontsize=8)
    fig.suptitle(
        "Norm convergence on scikit-learn's diabetes data (442 × 10, standardized): "
        "gradient descent and proximal gradient with step 1/L"
    )
    _common.save(fig, out, "norm_convergence")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the three solvers; returns the largest |JAX − torch| differences (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    x_np, y_np = diabetes()
    x, y = jnp.asarray(x_np, dtype), jnp.asarray(y_np, dtype)
    eigenvalues = np.linalg.eigvalsh(x_np.T @ x_np / len(y_np))
    lipschitz = {"ridge": eigenvalues[-1] + RIDGE_LAMBDA, "lasso": eigenvalues[-1]}
    lrs = {"ridge": 1.0 / lipschitz["ridge"], "ISTA": 1.0 / lipschitz["lasso"]}
    data, ridge, lasso = objectives(x, y)
    ridge_star, lasso_star, lasso_best = optima(x, y)
    theta0 = {"w": jnp.asarray(np.zeros(x.shape[1]), dtype), "b": jnp.asarray(0.0, dtype)}
    steps = 60 if args.quick else 1500
    ridge_sgd = jaxreg.sgd(lrs["ridge"], weight_decay=RIDGE_LAMBDA, mask=MASK)
    ista = jaxreg.proximal_sgd(lrs["ISTA"], l1=LASSO_ALPHA, mask=MASK)
    runs = {
        "ridge": run_gd(data, ridge, theta0, ridge_sgd, ridge_star, steps, "ridge GD"),
        "ISTA": run_gd(data, lasso, theta0, ista, lasso_star, steps, "ISTA"),
        **run_fista(data, lasso, theta0, lrs["ISTA"], lasso_star, steps),
    }
    # The optimizer adds the ridge penalty's gradient: minimize the data term with it.
    stopped = jaxreg.minimize(data, theta0, ridge_sgd, max_steps=steps, tol=1e-10).num_steps
    rates = {
        "ridge": (eigenvalues[0] + RIDGE_LAMBDA) / lipschitz["ridge"],
        "lasso_objective": float(lasso_best),
    }
    for name, c in runs.items():
        print(f"{name:5s}: ‖θ − θ*‖ from {c['distance'][0]:.3g} to {c['distance'][-1]:.3g}")
    print(f"minimize stopped the ridge run after {int(stopped)} steps (tol 1e-10)")
    plot(runs, rates, int(stopped), steps, args.out)
    if not args.torch:
        return {}
    twins = torch_twins(x_np, y_np, lrs, steps)
    return {
        name: _common.report_difference(f"{name} data loss", runs[name]["data"], twins[name])
        for name in ("ridge", "ISTA")
    }


if __name__ == "__main__":
    main()
