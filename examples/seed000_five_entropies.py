"""Seed 000: the five entropies of a network in training (output, activation, gradient, ...).

The seed computed ``-Σ x·log x`` of raw outputs, activations, gradients and
parameters: NaN for every negative entry (and for a list of gradients, an error),
and not the entropy of any distribution; its "error entropy" was the
cross-entropy loss of already-softmaxed outputs. Here each entropy is of a
well-defined distribution (:mod:`jaxreg.diagnostics`):

* output — mean entropy of ``softmax(logits)``: the model's uncertainty;
* activation — entropy of ``|h|/Σ|h|`` over the hidden units, averaged over
  examples: how many units carry each example;
* gradient / parameter — entropy of ``|g|/Σ|g|`` (``|θ|/Σ|θ|``) over all entries:
  how evenly the learning signal (the weight mass) is spread;
* error — Rényi's quadratic entropy of the errors ``1 − p(true class)`` (Parzen
  window): how spread out the mistakes are.

An MLP ``64 → 32 → 10`` is trained on scikit-learn's digits (8×8 images) twice from
the same weights, without and with an L2 penalty ``λ·½‖W‖²``. What the figure shows:

* output and error entropies fall as the network becomes certain and its errors
  collapse to 0; the penalty stops that fall (it keeps the logits small: the
  model stays less confident, at the same test accuracy);
* activation entropy rises: after the first steps more hidden units share each
  example, more so with L2 (``Σw²`` is smallest when the work is spread out);
* parameter entropy falls, much faster with L2: decay removes the weights the
  data does not support (those of the always-blank border pixels get no gradient
  at all), so the weight mass concentrates;
* gradient entropy settles after a transient: the learning signal stays spread
  over all weights.

``--torch`` trains ``torch_ref.nn.MLP`` from the same weights (``torch_ref.bridge``)
and compares the five entropy curves computed with ``torch_ref.diagnostics``.

Run: ``python -m examples.seed000_five_entropies [--quick] [--torch] [--out plots]``
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

SIZES = (64, 32, 10)
N_TRAIN = 500
LEARNING_RATE = 0.5
LAMBDAS = (0.0, 1e-2)
ENTROPIES = ("output", "activation", "gradient", "error", "parameter")
EXPLAIN = {
    "output": "H(softmax(logits)): uncertainty of the predictions",
    "activation": "H(|h|/Σ|h|) over hidden units: how many carry an example",
    "gradient": "H(|g|/Σ|g|): how evenly the gradient is spread",
    "error": "Rényi H₂ of 1 − p(true class): spread of the errors",
    "parameter": "H(|θ|/Σ|θ|): how evenly the weight mass is spread",
}


def digits(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """scikit-learn's digits, pixels scaled to [0, 1], split into train and test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = rng.permutation(len(y))
    x, y = x[order] / 16.0, y[order]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def forward(module: nnx.Module, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The MLP's hidden activations and its logits."""
    hidden = jaxreg.relu(module.layers[0](x))
    return hidden, module.layers[1](hidden)


def sgd(_: jax.Array) -> optax.GradientTransformation:
    """Plain SGD, the same for both runs (the penalty is in the loss)."""
    return jaxreg.sgd(LEARNING_RATE)


def train_jax(model: nnx.Module, data: tuple[np.ndarray, ...], steps: int) -> dict:
    """Full-batch SGD on ``CE + λ·½‖W‖²`` for each λ; the five entropies before each step."""
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    apply, params = _train.split_model(model, forward)

    def loss_fn(p, _, lam):
        return jaxreg.softmax_cross_entropy(apply(p, x)[1], y) + lam * jaxreg.l2_penalty(
            p, mask=jaxreg.weights_only
        )

    def evaluate(p):
        hidden, logits = apply(p, x)
        lam = jnp.zeros((), x.dtype)  # the gradient of the data term
        grads = jax.grad(loss_fn)(p, None, lam)
        p_true = jnp.take_along_axis(jaxreg.softmax(logits), y[:, None], axis=-1)
        report = jaxreg.entropy_report(
            logits=logits, activations=hidden, grads=grads, params=p, residuals=1.0 - p_true
        )
        test_logits = apply(p, x_test)[1]
        accuracy = jnp.mean((jnp.argmax(test_logits, axis=-1) == y_test).astype(x.dtype))
        test = jaxreg.softmax_cross_entropy(test_logits, y_test)
        return {**report, "test": test, "accuracy": accuracy}

    runs = {}
    for lam in LAMBDAS:
        _, runs[lam] = _train.fit(
            loss_fn, params, sgd, steps, hyper=lam, desc=f"jax λ={lam}", evaluate=evaluate
        )
    return runs


def train_torch(model: nnx.Module, data: tuple[np.ndarray, ...], lam: float, steps: int) -> dict:
    """The twin: ``torch_ref.nn.MLP``, ``torch.optim.SGD``, ``torch_ref.diagnostics``."""
    import torch
    import torch.nn.functional as F

    import torch_ref.diagnostics as td
    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.MLP(SIZES, param_dtype=torch.float64))
    x, y = _train.to_torch(data[0]), _train.to_torch(data[1])
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]

    def forward_torch():
        hidden = torch.relu(net.layers[0](x))
        return hidden, net.layers[1](hidden)

    def loss_fn(_):
        penalty = sum(0.5 * w.pow(2).sum() for w in weights)
        return F.cross_entropy(forward_torch()[1], y) + lam * penalty

    def evaluate():
        with torch.enable_grad():
            hidden, logits = forward_torch()
            grads = torch.autograd.grad(F.cross_entropy(logits, y), list(net.parameters()))
        p_true = torch.softmax(logits, -1).gather(-1, y[:, None])
        return td.entropy_report(
            logits=logits,
            activations=hidden,
            grads=list(grads),
            params=list(net.parameters()),
            residuals=1.0 - p_true,
        )

    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    return _train.torch_fit(loss_fn, optimizer, steps, desc=f"torch λ={lam}", evaluate=evaluate)


def plot(runs: dict, steps: int, out) -> None:
    """One panel per entropy, without and with L2; the sixth shows train/test loss."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = {LAMBDAS[0]: "tab:blue", LAMBDAS[1]: "tab:orange"}
    labels = {lam: "no penalty" if lam == 0 else f"L2, λ = {lam}" for lam in LAMBDAS}
    for ax, name in zip(axes.ravel(), ENTROPIES, strict=False):
        for lam, c in runs.items():
            ax.plot(c[name], color=colors[lam], label=labels[lam])
        ax.set(title=f"{name} entropy\n{EXPLAIN[name]}", xlabel="SGD step", ylabel="nats")
        ax.legend(fontsize=8)
    ax = axes[1, 2]
    for lam, c in runs.items():
        ax.plot(c["loss"], color=colors[lam], label=f"train objective, {labels[lam]}")
        ax.plot(c["test"], color=colors[lam], ls="--", label=f"test cross-entropy, {labels[lam]}")
    best = " / ".join(f"{c['accuracy'][-1]:.1%}" for c in runs.values())
    ax.set(title=f"Loss\nfinal test accuracy {best}", xlabel="SGD step", ylabel="nats")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Seed 000: the five entropies of an MLP {'-'.join(map(str, SIZES))} (ReLU) "
        f"training on digits ({N_TRAIN} images), full-batch SGD lr={LEARNING_RATE}, {steps} steps"
    )
    _common.save(fig, out, "seed000_five_entropies")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the experiment; returns the largest |JAX − torch| per entropy curve (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    steps = 30 if args.quick else 600
    data = digits(np.random.default_rng(0))
    model = jaxreg.MLP(SIZES, param_dtype=dtype, rngs=nnx.Rngs(0))
    runs = train_jax(model, data, steps)
    for lam, c in runs.items():
        values = "  ".join(f"{k} {c[k][0]:.3f}→{c[k][-1]:.3f}" for k in ENTROPIES)
        print(f"λ={lam}: {values}  test accuracy {c['accuracy'][-1]:.3f}")
    plot(runs, steps, args.out)
    if not args.torch:
        return {}
    twins = {lam: train_torch(model, data, lam, steps) for lam in LAMBDAS}
    differences = {}
    for name in ("loss", *ENTROPIES):
        jax_curve = np.concatenate([runs[lam][name] for lam in LAMBDAS])
        torch_curve = np.concatenate([twins[lam][name] for lam in LAMBDAS])
        differences[name] = _common.report_difference(f"seed000 {name}", jax_curve, torch_curve)
    return differences


if __name__ == "__main__":
    main()
