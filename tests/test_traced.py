"""Every numeric hyperparameter of every public function can be traced.

Only structural arguments are static (axes, ``ord``, ``reduction``, ``ignore_index``,
shapes, code-path flags). Every numeric hyperparameter — smoothing, strengths, ratios,
rates, learning rates, decay, momentum, tolerances, bandwidths, bases, gains — works as
a traced value under ``jax.jit``: the result equals the concrete call, a second value
reuses the compiled program, and an eager call with a new concrete value does not
recompile the function's own program either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 6))
P = np.abs(X) / np.abs(X).sum(-1, keepdims=True)
Q = P[::-1].copy()
Y = np.array([0, 5, -100, 2])
TREE = {"w": RNG.standard_normal((3, 2)), "b": RNG.standard_normal(2)}
GRADS = {"w": RNG.standard_normal((3, 2)), "b": RNG.standard_normal(2)}
XR = RNG.standard_normal((20, 5))
YR = XR @ RNG.standard_normal(5) + 0.1 * RNG.standard_normal(20)
KEY = jax.random.key(0)


@dataclasses.dataclass(frozen=True)
class Hyper:
    """``call(value)`` for two values of one hyperparameter of one public function."""

    call: Callable[[Any], Any]
    values: tuple[float, float]


def _steps(make: Callable[[Any], optax.GradientTransformation]) -> Callable[[Any], Any]:
    """Three updates of the optimizer made with the hyperparameter value ``v``."""

    def run(v):
        tx = make(v)
        params, state = TREE, tx.init(TREE)
        for _ in range(3):
            updates, state = tx.update(GRADS, state, params)
            params = optax.apply_updates(params, updates)
        return params

    return run


def _opt(name: str, hyper: str, values=(0.1, 0.3), **fixed: Any) -> dict[str, Hyper]:
    def make(v):
        kwargs = {**fixed, hyper: v}
        positional = [kwargs.pop(k) for k in ("strength", "learning_rate") if k in kwargs]
        return getattr(jaxreg, name)(*positional, **kwargs)

    return {f"{name}.{hyper}": Hyper(_steps(make), values)}


MATRIX: dict[str, Hyper] = {
    "elastic_net_penalty.l1_ratio": Hyper(
        lambda v: jaxreg.elastic_net_penalty(TREE, l1_ratio=v), (0.2, 0.7)
    ),
    **{
        f"{name}.base": Hyper(lambda v, name=name: getattr(jaxreg, name)(P, base=v), (2.0, 10.0))
        for name in ("self_information", "entropy", "entropy_from_logits")
    },
    **{
        f"{name}.base": Hyper(lambda v, name=name: getattr(jaxreg, name)(P, Q, base=v), (2.0, 10.0))
        for name in ("cross_entropy", "kl_divergence", "js_divergence")
    },
    "softmax_cross_entropy.label_smoothing": Hyper(
        lambda v: jaxreg.softmax_cross_entropy(X, Y, label_smoothing=v), (0.1, 0.0)
    ),
    "softmax_cross_entropy.label_smoothing[probabilities]": Hyper(
        lambda v: jaxreg.softmax_cross_entropy(X, P, label_smoothing=v), (0.1, 0.3)
    ),
    "leaky_relu.negative_slope": Hyper(lambda v: jaxreg.leaky_relu(X, v), (0.01, 0.2)),
    "elu.alpha": Hyper(lambda v: jaxreg.elu(X, v), (1.0, 0.5)),
    "swish.beta": Hyper(lambda v: jaxreg.swish(X, v), (1.0, 1.7)),
    **{
        f"{name}.gain": Hyper(
            lambda v, name=name: getattr(jaxreg, name)(v)(KEY, (5, 7), jnp.float64), (1.0, 5 / 3)
        )
        for name in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")
    },
    "dropout.rate": Hyper(lambda v: jaxreg.dropout(jnp.asarray(X), v, key=KEY), (0.5, 0.25)),
    **_opt("sgd", "learning_rate", momentum=0.9, weight_decay=0.1),
    **_opt("sgd", "momentum", learning_rate=0.1, values=(0.9, 0.0)),
    **_opt("sgd", "dampening", learning_rate=0.1, momentum=0.9),
    **_opt("sgd", "weight_decay", learning_rate=0.1, momentum=0.9, values=(0.1, 0.0)),
    **_opt("sgd", "momentum", learning_rate=0.1, nesterov=True, values=(0.9, 0.5)),
    **_opt("adam", "learning_rate"),
    **_opt("adam", "b1", values=(0.9, 0.3)),
    **_opt("adam", "b2", values=(0.999, 0.9)),
    **_opt("adam", "eps", values=(1e-8, 1e-3)),
    **_opt("adam", "weight_decay", values=(0.1, 0.0)),
    **_opt("adamw", "learning_rate"),
    **_opt("adamw", "b1", values=(0.9, 0.6)),
    **_opt("adamw", "b2", values=(0.999, 0.95)),
    **_opt("adamw", "eps", values=(1e-8, 1e-3)),
    **_opt("adamw", "weight_decay", values=(0.01, 0.0)),
    **_opt("l1_proximal", "strength", learning_rate=0.1),
    **_opt("l1_proximal", "learning_rate", strength=0.5),
    **_opt("elastic_net_proximal", "strength", learning_rate=0.1),
    **_opt("elastic_net_proximal", "learning_rate", strength=0.5),
    **_opt("elastic_net_proximal", "l1_ratio", strength=0.5, learning_rate=0.1),
    **_opt("group_lasso_proximal", "strength", learning_rate=0.1),
    **_opt("group_lasso_proximal", "learning_rate", strength=0.5),
    **_opt("proximal_sgd", "learning_rate", l1=0.1, l2=0.1),
    **_opt("proximal_sgd", "l1", learning_rate=0.1, values=(0.1, 0.0)),
    **_opt("proximal_sgd", "l2", learning_rate=0.1, values=(0.1, 0.0)),
    "has_converged.tol": Hyper(
        lambda v: jaxreg.has_converged(
            jaxreg.convergence_update(jaxreg.convergence_init(TREE), GRADS, GRADS), tol=v
        ),
        (1e-6, 10.0),
    ),
    "minimize.tol": Hyper(
        lambda v: (
            jaxreg.minimize(_quadratic, jnp.zeros(3), optax.sgd(0.3), max_steps=50, tol=v).num_steps
        ),
        (1e-3, 1e-6),
    ),
    "histogram_entropy.range": Hyper(
        lambda v: jaxreg.histogram_entropy(X, bins=4, range=(-v, v)), (2.0, 1.0)
    ),
    "error_entropy.bandwidth": Hyper(lambda v: jaxreg.error_entropy(X, bandwidth=v), (0.5, 0.1)),
    "confidence_penalty.strength": Hyper(lambda v: jaxreg.confidence_penalty(X, v), (0.5, -1.0)),
    "ridge.alpha": Hyper(lambda v: jaxreg.ridge(XR, YR, v), (0.1, 3.0)),
    "lasso.alpha": Hyper(lambda v: jaxreg.lasso(XR, YR, v), (0.1, 0.01)),
    "lasso.tol": Hyper(lambda v: jaxreg.lasso(XR, YR, 0.1, tol=v), (1e-8, 1e-6)),
    "elastic_net.alpha": Hyper(lambda v: jaxreg.elastic_net(XR, YR, v), (0.1, 0.01)),
    "elastic_net.l1_ratio": Hyper(
        lambda v: jaxreg.elastic_net(XR, YR, 0.1, l1_ratio=v), (0.5, 0.9)
    ),
    "regularization_path.l1_ratio": Hyper(
        lambda v: jaxreg.regularization_path(XR, YR, jnp.array([1.0, 0.1]), l1_ratio=v), (1.0, 0.5)
    ),
    "fused_linear_cross_entropy.label_smoothing": Hyper(
        lambda v: jaxreg.fused_linear_cross_entropy(X[:, :3], X[:3], Y, label_smoothing=v),
        (0.1, 0.0),
    ),
    **{
        f"{name}.label_smoothing": Hyper(lambda v, name=name: _vocab_parallel(name, v), (0.1, 0.0))
        for name in ("vocab_parallel_cross_entropy", "vocab_parallel_fused_linear_cross_entropy")
    },
    **{
        f"{name}.{option}": Hyper(
            lambda v, name=name, option=option: _fused_option(name, option, v), values
        )
        for name in (
            "fused_linear_cross_entropy",
            "vocab_parallel_cross_entropy",
            "vocab_parallel_fused_linear_cross_entropy",
        )
        for option, values in (("z_loss", (1e-2, 0.0)), ("softcap", (2.0, 30.0)))
    },
    "elastic_net.tol": Hyper(lambda v: jaxreg.elastic_net(XR, YR, 0.1, tol=v), (1e-8, 1e-6)),
    "regularization_path.tol": Hyper(
        lambda v: jaxreg.regularization_path(XR, YR, jnp.array([1.0, 0.1]), tol=v), (1e-8, 1e-6)
    ),
    "regularization_path.alphas": Hyper(
        lambda v: jaxreg.regularization_path(XR, YR, jnp.stack([jnp.asarray(1.0), v])),
        (0.1, 0.01),
    ),
}


def _vocab_parallel(name: str, v: Any) -> jax.Array:
    """The vocab-parallel loss over two shards of 3 classes (``vmap`` with an axis name
    runs the same collectives as ``shard_map``)."""
    if name == "vocab_parallel_cross_entropy":
        shards = jnp.stack([X[:, :3], X[:, 3:]])

        def fn(z):
            return jaxreg.vocab_parallel_cross_entropy(z, Y, axis_name="v", label_smoothing=v)

    else:
        shards = jnp.stack([X[:3, :3], X[:3, 3:]])

        def fn(w):
            return jaxreg.vocab_parallel_fused_linear_cross_entropy(
                X[:, :3], w, Y, axis_name="v", label_smoothing=v
            )

    return jax.vmap(fn, axis_name="v")(shards)[0]


def _fused_option(name: str, option: str, v: Any) -> jax.Array:
    """A fused loss with the numeric option ``option=v`` (the vocab-parallel ones over two
    shards of 3 classes, simulated with ``vmap``), and label smoothing on."""
    kwargs = {option: v, "label_smoothing": 0.1}
    if name == "fused_linear_cross_entropy":
        return jaxreg.fused_linear_cross_entropy(X[:, :3], X[:3], Y, **kwargs)
    if name == "vocab_parallel_cross_entropy":
        shards = jnp.stack([X[:, :3], X[:, 3:]])

        def fn(z):
            return jaxreg.vocab_parallel_cross_entropy(z, Y, axis_name="v", **kwargs)

    else:
        shards = jnp.stack([X[:3, :3], X[:3, 3:]])

        def fn(w):
            return jaxreg.vocab_parallel_fused_linear_cross_entropy(
                X[:, :3], w, Y, axis_name="v", **kwargs
            )

    return jax.vmap(fn, axis_name="v")(shards)[0]


def _quadratic(w):
    return 0.5 * jnp.sum((w - jnp.array([1.0, -2.0, 0.5])) ** 2)


def _close(a: Any, b: Any) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_traced_equals_concrete_without_recompiling(name):
    hyper = MATRIX[name]
    traced = jax.jit(hyper.call)
    for value in hyper.values:
        _close(traced(jnp.asarray(value)), hyper.call(value))
    assert traced._cache_size() == 1  # the second value reused the program


#: Public functions compiled per call signature (``_numerics.compiled``), and a call with
#: one numeric hyperparameter, for the eager recompilation check.
EAGER = {
    "softmax_cross_entropy": lambda v: jaxreg.softmax_cross_entropy(X, Y, label_smoothing=v),
    "entropy": lambda v: jaxreg.entropy(P, base=v),
    "kl_divergence": lambda v: jaxreg.kl_divergence(P, Q, base=v),
    "elastic_net_penalty": lambda v: jaxreg.elastic_net_penalty(TREE, l1_ratio=v),
    "leaky_relu": lambda v: jaxreg.leaky_relu(X, v),
    "error_entropy": lambda v: jaxreg.error_entropy(X, bandwidth=v),
    "histogram_entropy": lambda v: jaxreg.histogram_entropy(X, range=(-v, v)),
    "confidence_penalty": lambda v: jaxreg.confidence_penalty(X, v),
}


@pytest.mark.parametrize("name", sorted(EAGER))
def test_eager_calls_do_not_recompile_for_a_new_value(name):
    # (the penalties resolve their mask, then run one compiled core)
    fn = jaxreg.penalties._penalty_sum if name.endswith("_penalty") else getattr(jaxreg, name)
    program = fn._jitted
    for first, second in [(0.25, 0.75), (jnp.asarray(0.25), jnp.asarray(0.75))]:
        # (a Python float and an array are different call signatures, as for any jit)
        EAGER[name](first)
        before = program._cache_size()
        EAGER[name](second)
        assert program._cache_size() == before


def test_the_matrix_covers_every_numeric_hyperparameter():
    """Every parameter of a public function with a float default (or a known numeric
    name) appears in the matrix; structural ones are listed with the reason."""
    import inspect

    numeric = set()
    for name in jaxreg.__all__:
        obj = getattr(jaxreg, name)
        if not callable(obj) or inspect.isclass(obj):
            continue
        for param in inspect.signature(obj).parameters.values():
            if param.name in STRUCTURAL:
                continue
            if isinstance(param.default, float) or param.name in NUMERIC_NAMES:
                numeric.add(f"{name}.{param.name}")
    covered = {key.split("[")[0] for key in MATRIX}
    assert not sorted(numeric - covered), f"not traced-tested: {sorted(numeric - covered)}"


#: Parameters that choose the computation (static), never numeric hyperparameters.
STRUCTURAL = {
    "axis",
    "ord",
    "keepdims",
    "reduction",
    "ignore_index",
    "bins",
    "max_iter",
    "max_steps",
    "fit_intercept",
    "nesterov",
    "deterministic",
    "chunk_size",
    "in_axis",
    "out_axis",
    "mode",
    "axis_name",
    "precompute",
    "return_info",
}
#: Numeric hyperparameters whose default is not a float (None, a required argument).
NUMERIC_NAMES = {
    "alpha",
    "alphas",
    "tol",
    "strength",
    "learning_rate",
    "rate",
    "base",
    "bandwidth",
    "range",
    "gain",
    "negative_slope",
    "l1_ratio",
    "softcap",
}
