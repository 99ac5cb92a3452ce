"""Seed 001: Xavier initialization keeps the signal's variance through depth; a dropout MLP.

Xavier: for ``o = Wx`` with independent zero-mean entries, ``Var[o] = n_in·σ²·Var[x]``,
and backwards ``Var[∂x] = n_out·σ²·Var[∂o]``; ``σ² = 2 / (n_in + n_out)``
(:func:`jaxreg.xavier_normal`) keeps both near 1 for a linear layer (exactly, for a
square one). A 20-layer tanh network of width 128 is initialized four ways and fed
standard normal inputs:

* ``σ = 0.01``: the activations vanish geometrically (×0.0128 per layer), and so do
  the gradients on the way back;
* ``σ = 1``: the tanh units saturate (activations ±1) and the gradients *explode*
  on the way back (×~5 per layer);
* Xavier: both stay within a factor ~40 of 1 through all 20 layers (tanh's slope
  is below 1 away from 0, so the signal still shrinks slowly);
* Xavier with gain 5/3 (torch's ``calculate_gain('tanh')``) compensates for that:
  the activations stay near 1, the gradients grow only ~10× over 20 layers.

Dropout: the seed's MLP (two hidden layers of 256, ReLU, dropout 0.2 then 0.5,
inverted: kept units scaled by ``1/(1 − p)``, :func:`jaxreg.dropout`) trained on
only 200 of scikit-learn's digits, against the same network without dropout, from
the same weights and on the same batches. Both fit the 200 training images (the
train loss, measured without dropout, goes to ~0); with dropout the test loss ends
lower and the test accuracy higher.

``--torch`` trains the dropout network as ``torch_ref.nn.MLP`` from the same weights
(``torch_ref.bridge``), replaying JAX's dropout masks (``torch_ref.nn.dropout(mask=)``).

Run: ``python -m examples.seed001_deep_nets [--quick] [--torch] [--out plots]``
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxreg
from examples import _common, _train

DEPTH, WIDTH = 20, 128
SIZES = (64, 256, 256, 10)
DROPOUT = (0.2, 0.5)
N_TRAIN, BATCH, LEARNING_RATE = 200, 50, 0.1


# --------------------------------------------------------------------------- Xavier


#: name -> an initializer ``(key, shape, dtype) -> array``.
SCHEMES = {
    "N(0, 0.01²)": lambda k, shape, dtype: 0.01 * jax.random.normal(k, shape, dtype),
    "N(0, 1)": jax.random.normal,
    "Xavier normal": jaxreg.xavier_normal(),
    "Xavier normal, gain 5/3": jaxreg.xavier_normal(gain=5.0 / 3.0),
}


def init_weights(key: jax.Array, scheme: str, dtype) -> list[jax.Array]:
    """``DEPTH`` square weight matrices drawn by ``SCHEMES[scheme]``."""
    return [SCHEMES[scheme](k, (WIDTH, WIDTH), dtype) for k in jax.random.split(key, DEPTH)]


@jax.jit
def variance_by_layer(
    weights: list[jax.Array], x: jax.Array, cotangent: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Variance of each layer's activations, and of the gradient w.r.t. each pre-activation.

    The gradient is that of ``Σ cotangent · output`` (a unit-variance signal sent back
    from the last layer).
    """

    def forward(pre_shifts):
        h, outs = x, []
        for w, shift in zip(weights, pre_shifts, strict=True):
            h = jaxreg.tanh(h @ w + shift)
            outs.append(h)
        return outs

    zeros = [jnp.zeros_like(x) for _ in weights]
    outs, vjp = jax.vjp(forward, zeros)
    cot = [jnp.zeros_like(o) for o in outs[:-1]] + [cotangent]
    (grads,) = vjp(cot)
    return jnp.stack([jnp.var(o) for o in outs]), jnp.stack([jnp.var(g) for g in grads])


# --------------------------------------------------------------------------- dropout


def dropout_forward(
    module: nnx.Module, inputs: tuple[jax.Array, jax.Array | None], rates: tuple[float, ...]
) -> jax.Array:
    """``Linear → ReLU → dropout`` per hidden layer, then ``Linear``; no dropout without a key."""
    x, key = inputs
    *hidden, last = module.layers
    keys = [None] * len(hidden) if key is None else list(jax.random.split(key, len(hidden)))
    for layer, rate, k in zip(hidden, rates, keys, strict=True):
        x = jaxreg.dropout(jaxreg.relu(layer(x)), rate, key=k, deterministic=k is None)
    return last(x)


@jax.jit
def keep_masks(key: jax.Array) -> list[jax.Array]:
    """The keep-masks :func:`dropout_forward` draws with ``key`` on a batch (for the torch twin)."""
    keys = jax.random.split(key, len(DROPOUT))
    return [
        jax.random.bernoulli(k, 1.0 - r, (BATCH, n))
        for k, r, n in zip(keys, DROPOUT, SIZES[1:-1], strict=True)
    ]


def digits(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """200 training digits and the other 1597 for testing, pixels in [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = rng.permutation(len(y))
    x, y = x[order] / 16.0, y[order]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def train_dropout(model: nnx.Module, data, batches: np.ndarray, key: jax.Array) -> dict:
    """Minibatch SGD with and without dropout; train/test cross-entropy before each step.

    Step ``t`` uses the batch ``batches[t]`` and the dropout key ``fold_in(key, t)``.
    """
    x, y, x_test, y_test = (jnp.asarray(a) for a in data)
    index = jnp.asarray(batches)
    runs = {}
    for rates in ((0.0, 0.0), DROPOUT):
        apply, params = _train.split_model(model, functools.partial(dropout_forward, rates=rates))

        def loss_fn(p, t, _, apply=apply):
            logits = apply(p, (x[index[t]], jax.random.fold_in(key, t)))
            return jaxreg.softmax_cross_entropy(logits, y[index[t]])

        def evaluate(p, apply=apply):
            test_logits = apply(p, (x_test, None))
            correct = jnp.argmax(test_logits, axis=-1) == y_test
            return {
                "train": jaxreg.softmax_cross_entropy(apply(p, (x, None)), y),
                "test": jaxreg.softmax_cross_entropy(test_logits, y_test),
                "accuracy": jnp.mean(correct.astype(x.dtype)),
            }

        runs[rates] = _train.fit(
            loss_fn,
            params,
            jaxreg.sgd(LEARNING_RATE),
            len(batches),
            xs=jnp.arange(len(batches)),
            desc=f"jax dropout {rates}",
            evaluate=evaluate,
        )[1]
    return runs


def train_dropout_torch(model: nnx.Module, data, batches: np.ndarray, key: jax.Array) -> dict:
    """The dropout run in torch: ``torch_ref.nn.MLP`` layers, JAX's masks replayed."""
    import torch
    import torch.nn.functional as F

    import torch_ref.nn
    from torch_ref.bridge import from_nnx

    net = from_nnx(model, torch_ref.nn.MLP(SIZES, param_dtype=torch.float64))
    x, y, x_test, y_test = (_train.to_torch(a) for a in data)

    def forward(h, step=None):
        *hidden, last = net.layers
        masks = [None] * len(hidden) if step is None else keep_masks(jax.random.fold_in(key, step))
        for layer, rate, mask in zip(hidden, DROPOUT, masks, strict=True):
            h = torch.relu(layer(h))
            if mask is not None:
                h = torch_ref.nn.dropout(h, rate, mask=_train.to_torch(mask))
        return last(h)

    def evaluate():
        return {
            "train": F.cross_entropy(forward(x), y),
            "test": F.cross_entropy(forward(x_test), y_test),
        }

    def loss_fn(t):
        idx = _train.to_torch(batches[t])
        return F.cross_entropy(forward(x[idx], t), y[idx])

    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
    return _train.torch_fit(
        loss_fn,
        optimizer,
        len(batches),
        desc="torch dropout",
        xs=np.arange(len(batches)),
        evaluate=evaluate,
    )


# --------------------------------------------------------------------------- figure


def plot(variances: dict, runs: dict, out) -> None:
    """Activation and gradient variance by layer; the dropout train/test curves."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
    layers = np.arange(1, DEPTH + 1)
    for name, (act, grad) in variances.items():
        axes[0].semilogy(layers, act, "o-", ms=3, label=name)
        axes[1].semilogy(layers, grad, "o-", ms=3, label=name)
    axes[0].set(title=f"Forward: Var[activations], tanh, width {WIDTH}", xlabel="layer")
    axes[1].set(title="Backward: Var[gradient w.r.t. pre-activations]", xlabel="layer")
    for ax in axes[:2]:
        ax.set(ylabel="variance (log scale)")
        ax.legend(fontsize=8)
    colors = {(0.0, 0.0): "tab:blue", DROPOUT: "tab:orange"}
    for rates, c in runs.items():
        label = "no dropout" if rates == (0.0, 0.0) else f"dropout {rates[0]}, {rates[1]}"
        axes[2].semilogy(c["train"], color=colors[rates], label=f"train, {label}")
        axes[2].semilogy(c["test"], color=colors[rates], ls="--", label=f"test, {label}")
        axes[3].plot(c["accuracy"], color=colors[rates], label=f"{label} → {c['accuracy'][-1]:.1%}")
    axes[2].set(title=f"Dropout MLP on {N_TRAIN} digits: cross-entropy", xlabel="SGD step")
    axes[2].set(ylabel="nats (log scale; evaluated without dropout)")
    axes[3].set(title="Test accuracy (zoomed)", xlabel="SGD step", ylim=(0.8, 0.96))
    for ax in axes[2:]:
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Seed 001: initialization through {DEPTH} layers (left), dropout against overfitting "
        f"(right: MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, lr {LEARNING_RATE})"
    )
    _common.save(fig, out, "seed001_deep_nets")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs both experiments; returns the largest |JAX − torch| dropout-run gaps (with --torch)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args(argv)
    dtype = _train.use_float64()
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.fold_in(key, 1), (512, WIDTH), dtype)
    cotangent = jax.random.normal(jax.random.fold_in(key, 4), (512, WIDTH), dtype)
    variances = {}
    for scheme in SCHEMES:
        weights = init_weights(jax.random.fold_in(key, 2), scheme, dtype)
        variances[scheme] = tuple(map(np.asarray, variance_by_layer(weights, x, cotangent)))
    for name, (act, grad) in variances.items():
        print(
            f"{name:24s} Var[h] at layer {DEPTH}: {act[-1]:.2e}, Var[∂] at layer 1: {grad[0]:.2e}"
        )
    rng = np.random.default_rng(0)
    data = digits(rng)
    epochs = 2 if args.quick else 100
    batches = np.concatenate([rng.permutation(N_TRAIN).reshape(-1, BATCH) for _ in range(epochs)])
    model = jaxreg.MLP(SIZES, param_dtype=dtype, rngs=nnx.Rngs(0))
    dropout_key = jax.random.fold_in(key, 3)
    runs = train_dropout(model, data, batches, dropout_key)
    for rates, c in runs.items():
        print(
            f"dropout {rates}: train {c['train'][-1]:.3f}, test {c['test'][-1]:.3f}, "
            f"test accuracy {c['accuracy'][-1]:.3f}"
        )
    plot(variances, runs, args.out)
    if not args.torch:
        return {}
    twin = train_dropout_torch(model, data, batches, dropout_key)
    return {
        key: _common.report_difference(f"dropout {key}", runs[DROPOUT][key], twin[key])
        for key in ("loss", "train", "test")
    }


if __name__ == "__main__":
    main()
