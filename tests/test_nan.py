"""NaN in, NaN out: for every public numerical function, a NaN in an entry that takes
part in the result makes the value NaN, and a NaN in an entry that takes no part (an
ignored label's row, a ``where=False`` entry, a masked-out leaf) leaves it as it was.

The safety conventions (0 at a zero norm, ``0·log 0 = 0``, ``-inf`` for an all ``-inf``
row) replace only what the math leaves undefined at finite inputs; they never turn a
broken input into a number. Hypothesis draws the position of the NaN; shapes are fixed
per function, so each function compiles once.
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
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxreg

N, C = 3, 5


@dataclasses.dataclass(frozen=True)
class Spec:
    """``call(*inputs)`` on ``inputs(rng)``; the NaN goes into ``inputs[target]``.

    ``ignored(inputs)`` marks the entries of that input which take no part (``None``:
    every entry takes part).
    """

    call: Callable[..., Any]
    inputs: Callable[[np.random.Generator], tuple[Any, ...]]
    target: int = 0
    ignored: Callable[[tuple[Any, ...]], np.ndarray] | None = None


def _x(shape=(N, C)):
    return lambda rng: (rng.standard_normal(shape),)


def _probs(rng, shape=(N, C)):
    p = rng.uniform(0.1, 1.0, shape)
    return p / p.sum(-1, keepdims=True)


def _pair(rng):
    return _probs(rng), _probs(rng)


def _pair_with_zeros(rng):
    """``p`` with exact zeros (where ``0·log q = 0``), ``q`` positive: a NaN in ``q`` must
    not hide behind a zero of ``p``."""
    p = _probs(rng)
    p[:, ::2] = 0.0
    return p / p.sum(-1, keepdims=True), _probs(rng)


def _labels(rng):
    # Row 1 is ignored: a NaN anywhere in it takes no part.
    return rng.standard_normal((N, C)), np.array([0, -100, 4])


def _row1(inputs):
    mask = np.zeros(np.shape(inputs[0]), bool)
    mask[1] = True
    return mask


def _where_mask():
    mask = np.ones((N, C), bool)
    mask[:, 1] = False
    mask[2] = False
    return mask


def _not_where(inputs):
    return ~_where_mask()


def _tree(rng):
    return ({"w": rng.standard_normal((N, C)), "b": rng.standard_normal(C)},)


def _tree_pair(rng):
    """(gradients, params) for an optimizer's update."""
    return _tree(rng)[0], _tree(rng)[0]


def _lin(rng):
    hidden = rng.standard_normal((4, 3))
    weight = rng.standard_normal((3, 6))
    return hidden, weight, np.array([1, -100, 5, 0])


def _fused_ignored_rows(inputs):
    """Rows 1 (label ignored) and 3 (token weight 0) of the hidden features take no part."""
    mask = np.zeros(np.shape(inputs[0]), bool)
    mask[[1, 3]] = True
    return mask


def _opt_update(tx: optax.GradientTransformation):
    def call(grads, params):
        updates, _ = tx.update(grads, tx.init(params), params)
        return updates

    return call


def _regression(rng):
    X = rng.standard_normal((12, 4))
    return X, X @ rng.standard_normal(4) + 0.1 * rng.standard_normal(12)


SPECS: dict[str, Spec] = {
    # norms
    **{
        f"vector_norm[ord={o}]": Spec(lambda x, o=o: jaxreg.vector_norm(x, o), _x())
        for o in (1, 2, 3, 0.5, np.inf, -np.inf, 0)
    },
    **{
        f"matrix_norm[ord={o}]": Spec(lambda x, o=o: jaxreg.matrix_norm(x, o), _x())
        for o in ("fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf)
    },
    **{
        f"vector_norm[ord={o}]": Spec(lambda x, o=o: jaxreg.vector_norm(x, o), _x())
        for o in (-0.5, -2.5)
    },
    **{
        f"vector_norm[ord={o}, where]": Spec(
            lambda x, o=o: jaxreg.vector_norm(x, o, axis=-1, where=_where_mask()),
            _x(),
            ignored=_not_where,
        )
        for o in (2, 1, 0.5, np.inf, -np.inf, 0, -1.5)
    },
    "global_norm": Spec(jaxreg.global_norm, _tree),
    "l1_norm": Spec(jaxreg.l1_norm, _x()),
    "l2_norm": Spec(jaxreg.l2_norm, _x()),
    "frobenius_norm": Spec(jaxreg.frobenius_norm, _x()),
    # penalties; a masked-out leaf takes no part (the tree's leaves are "b" then "w")
    "l1_penalty": Spec(jaxreg.l1_penalty, _tree),
    **{
        f"{name}[mask]": Spec(
            lambda t, name=name: getattr(jaxreg, name)(t, mask={"b": False, "w": True}),
            _tree,
            ignored=lambda inputs: np.arange(C + N * C) < C,
        )
        for name in ("l1_penalty", "l2_penalty", "elastic_net_penalty", "group_lasso_penalty")
    },
    "l2_penalty": Spec(jaxreg.l2_penalty, _tree),
    "elastic_net_penalty": Spec(jaxreg.elastic_net_penalty, _tree),
    "group_lasso_penalty": Spec(jaxreg.group_lasso_penalty, _tree),
    # information
    "logsumexp": Spec(jaxreg.logsumexp, _x()),
    "logsumexp[where]": Spec(
        lambda x: jaxreg.logsumexp(x, where=_where_mask()), _x(), ignored=_not_where
    ),
    "softmax": Spec(jaxreg.softmax, _x()),
    "softmax[where]": Spec(
        lambda x: jaxreg.softmax(x, where=_where_mask()), _x(), ignored=_not_where
    ),
    "log_softmax[where]": Spec(
        lambda x: jnp.where(_where_mask(), jaxreg.log_softmax(x, where=_where_mask()), 0.0),
        _x(),
        ignored=_not_where,
    ),
    "entropy_from_logits[where]": Spec(
        lambda x: jaxreg.entropy_from_logits(x, where=_where_mask()), _x(), ignored=_not_where
    ),
    "self_information": Spec(jaxreg.self_information, lambda rng: (_probs(rng),)),
    "entropy": Spec(jaxreg.entropy, lambda rng: (_probs(rng),)),
    "cross_entropy[p]": Spec(jaxreg.cross_entropy, _pair),
    "cross_entropy[q]": Spec(jaxreg.cross_entropy, _pair, target=1),
    "kl_divergence[p]": Spec(jaxreg.kl_divergence, _pair),
    "kl_divergence[q]": Spec(jaxreg.kl_divergence, _pair, target=1),
    "cross_entropy[q, p=0]": Spec(jaxreg.cross_entropy, _pair_with_zeros, target=1),
    "kl_divergence[q, p=0]": Spec(jaxreg.kl_divergence, _pair_with_zeros, target=1),
    "js_divergence": Spec(jaxreg.js_divergence, _pair, target=1),
    "kl_divergence_from_logits": Spec(
        jaxreg.kl_divergence_from_logits,
        lambda rng: (rng.standard_normal((N, C)), rng.standard_normal((N, C))),
        target=1,
    ),
    "xlogy[x]": Spec(lambda x, y: jaxreg.xlogy(x, y), _pair_with_zeros),
    "xlogy[y, x=0]": Spec(lambda x, y: jaxreg.xlogy(x, y), _pair_with_zeros, target=1),
    "kl_div[log_q, p=0]": Spec(
        lambda p, q: jaxreg.kl_div(jnp.log(q), p, reduction="none"), _pair_with_zeros, target=1
    ),
    "kl_div[target]": Spec(lambda p, q: jaxreg.kl_div(jnp.log(q), p), _pair_with_zeros),
    "kl_div[log_target]": Spec(
        lambda p, q: jaxreg.kl_div(jnp.log(q), jnp.log(p), reduction="sum", log_target=True),
        _pair_with_zeros,
    ),
    "softmax[dtype]": Spec(
        lambda x: jaxreg.softmax(x.astype(jnp.float32), dtype=jnp.float64), _x()
    ),
    # losses
    "softmax_cross_entropy": Spec(
        lambda x, y: jaxreg.softmax_cross_entropy(x, y, reduction="none"), _labels, ignored=_row1
    ),
    "softmax_cross_entropy[mean, smoothing]": Spec(
        lambda x, y: jaxreg.softmax_cross_entropy(x, y, label_smoothing=0.1), _labels, ignored=_row1
    ),
    "softmax_cross_entropy[weight]": Spec(
        lambda w, x, y: jaxreg.softmax_cross_entropy(x, y, weight=w),
        lambda rng: (rng.uniform(0.5, 1.5, C), *_labels(rng)),
        # classes 0 and 4 are labelled; the others' weights take no part without smoothing
        ignored=lambda inputs: np.array([False, True, True, True, False]),
    ),
    "softmax_cross_entropy[probabilities]": Spec(
        lambda x, t: jaxreg.softmax_cross_entropy(x, t),
        lambda rng: (rng.standard_normal((N, C)), _probs(rng)),
    ),
    "nll_loss": Spec(
        lambda x, y: jaxreg.nll_loss(x, y), _labels, ignored=lambda inputs: _picked_not(inputs)
    ),
    "binary_cross_entropy_with_logits": Spec(
        jaxreg.binary_cross_entropy_with_logits,
        lambda rng: (rng.standard_normal((N, C)), rng.uniform(0, 1, (N, C))),
    ),
    "mse_loss": Spec(jaxreg.mse_loss, lambda rng: (rng.standard_normal(C),) * 2),
    "squared_loss": Spec(jaxreg.squared_loss, lambda rng: (rng.standard_normal(C),) * 2),
    # activations (elementwise, or per half)
    **{
        name: Spec(getattr(jaxreg, name), _x())
        for name in (
            "sigmoid",
            "tanh",
            "relu",
            "leaky_relu",
            "elu",
            "silu",
            "swish",
        )
    },
    "swiglu": Spec(jaxreg.swiglu, _x((N, 4))),
    "glu": Spec(jaxreg.glu, _x((N, 4))),
    "glu[axis]": Spec(lambda x: jaxreg.glu(x, axis=0), _x((4, 3))),
    "prelu": Spec(lambda x: jaxreg.prelu(x, jnp.full((C,), 0.25)), _x()),
    "prelu[axis=0]": Spec(lambda x: jaxreg.prelu(x, jnp.full((N,), 0.25), axis=0), _x()),
    "dropout": Spec(
        lambda x: jaxreg.dropout(x, 0.5, key=jax.random.key(0)),
        _x(),
        ignored=lambda inputs: (
            ~np.asarray(jaxreg.dropout(jnp.ones((N, C)), 0.5, key=jax.random.key(0)) > 0)
        ),
    ),
    # diagnostics
    "output_entropy": Spec(jaxreg.output_entropy, _x()),
    "magnitude_entropy": Spec(jaxreg.magnitude_entropy, _x()),
    "activation_entropy": Spec(jaxreg.activation_entropy, _x()),
    "gradient_entropy": Spec(jaxreg.gradient_entropy, _tree),
    "parameter_entropy": Spec(jaxreg.parameter_entropy, _tree),
    "histogram_entropy": Spec(lambda x: jaxreg.histogram_entropy(x, bins=4), _x()),
    "error_entropy": Spec(jaxreg.error_entropy, _x((8,))),
    "confidence_penalty": Spec(lambda x: jaxreg.confidence_penalty(x, 0.5), _x()),
    # fused
    "fused_linear_cross_entropy[hidden]": Spec(
        lambda h, w, y: jaxreg.fused_linear_cross_entropy(h, w, y, label_smoothing=0.1),
        _lin,
        ignored=_row1,
    ),
    "fused_linear_cross_entropy[weight]": Spec(
        lambda h, w, y: jaxreg.fused_linear_cross_entropy(h, w, y), _lin, target=1
    ),
    "fused_linear_cross_entropy[options]": Spec(
        lambda h, w, y: jaxreg.fused_linear_cross_entropy(
            h,
            w,
            y,
            weight=jnp.linspace(0.5, 2.0, 6),
            token_weight=jnp.array([1.0, 1, 2, 0]),
            label_smoothing=0.1,
            z_loss=0.1,
            softcap=2.0,
            chunk_size=4,
        ),
        _lin,
        ignored=_fused_ignored_rows,
    ),
    "fused_linear_cross_entropy[padding]": Spec(
        lambda h, w, y: jaxreg.fused_linear_cross_entropy(
            h, w, y.clip(max=3), label_smoothing=0.1, num_valid_classes=4, chunk_size=4
        ),
        _lin,
        target=1,
        ignored=lambda inputs: np.arange(18).reshape(3, 6) % 6 >= 4,
    ),
    "fused_linear_cross_entropy[probabilities]": Spec(
        lambda h, w, t: jaxreg.fused_linear_cross_entropy(
            h, w, t, token_weight=jnp.array([1.0, 0, 1, 1]), num_valid_classes=5, chunk_size=4
        ),
        lambda rng: (*_lin(rng)[:2], _probs(rng, (4, 6))),
        target=2,
        ignored=lambda inputs: (
            (np.arange(24).reshape(4, 6) % 6 == 5) | (np.arange(24).reshape(4, 6) // 6 == 1)
        ),
    ),
    "vocab_parallel_cross_entropy": Spec(
        lambda z, y: jax.vmap(
            lambda z: jaxreg.vocab_parallel_cross_entropy(
                z, y, axis_name="v", label_smoothing=0.1, z_loss=0.1
            ),
            axis_name="v",
        )(jnp.stack([z[:, :3], z[:, 3:]]))[0],
        lambda rng: (rng.standard_normal((4, 6)), np.array([1, -100, 5, 0])),
        ignored=_row1,
    ),
    "vocab_parallel_fused_linear_cross_entropy": Spec(
        lambda h, w, y: jax.vmap(
            lambda w: jaxreg.vocab_parallel_fused_linear_cross_entropy(
                h, w, y, axis_name="v", label_smoothing=0.1, softcap=2.0
            ),
            axis_name="v",
        )(jnp.stack([w[:, :3], w[:, 3:]]))[0],
        _lin,
        ignored=_row1,
    ),
    # optimizers: a NaN gradient gives a NaN update
    "sgd": Spec(_opt_update(jaxreg.sgd(0.1, momentum=0.9, weight_decay=0.1)), _tree_pair),
    "adam": Spec(_opt_update(jaxreg.adam(0.1, weight_decay=0.1)), _tree_pair),
    "adamw": Spec(_opt_update(jaxreg.adamw(0.1)), _tree_pair),
    "l1_proximal": Spec(_opt_update(jaxreg.l1_proximal(0.1, 0.1)), _tree_pair),
    "elastic_net_proximal": Spec(_opt_update(jaxreg.elastic_net_proximal(0.1, 0.1)), _tree_pair),
    "group_lasso_proximal": Spec(_opt_update(jaxreg.group_lasso_proximal(0.1, 0.1)), _tree_pair),
    "proximal_sgd": Spec(_opt_update(jaxreg.proximal_sgd(0.1, l1=0.1, l2=0.1)), _tree_pair),
    # solvers: a NaN in the data never gives a finite answer
    "ridge": Spec(lambda X, y: jaxreg.ridge(X, y, 0.1), _regression),
    "lasso": Spec(lambda X, y: jaxreg.lasso(X, y, 0.1), _regression, target=1),
    "elastic_net": Spec(lambda X, y: jaxreg.elastic_net(X, y, 0.1), _regression),
    "regularization_path": Spec(
        lambda X, y: jaxreg.regularization_path(X, y, jnp.array([1.0, 0.1])), _regression
    ),
}


def _picked_not(inputs):
    """nll_loss reads one entry per valid row: every other entry takes no part."""
    _, y = inputs
    mask = np.ones((N, C), bool)
    for i, label in enumerate(y):
        if label != -100:
            mask[i, label] = False
    return mask


def _with_nan(tree: Any, flat_index: int) -> Any:
    """``tree`` (an array or a pytree of arrays) with its ``flat_index``-th entry NaN."""
    leaves, treedef = jax.tree.flatten(tree)
    out, offset = [], 0
    for leaf in leaves:
        leaf = np.array(leaf, dtype=np.float64)
        if offset <= flat_index < offset + leaf.size:
            leaf.reshape(-1)[flat_index - offset] = np.nan
        offset += leaf.size
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)


def _has_nan(tree: Any) -> bool:
    return any(np.isnan(np.asarray(leaf, np.float64)).any() for leaf in jax.tree.leaves(tree))


_COMPILED: dict[str, Callable[..., Any]] = {}


def _call(name: str) -> Callable[..., Any]:
    """``SPECS[name].call``, jitted once: the NaN's position changes values, not shapes."""
    if name not in _COMPILED:
        _COMPILED[name] = jax.jit(SPECS[name].call)
    return _COMPILED[name]


def test_every_public_function_has_a_spec_or_a_reason():
    """A new public function must be added here (or to NOT_NUMERICAL with the reason)."""
    covered = {name.split("[")[0] for name in SPECS}
    missing = sorted(set(jaxreg.__all__) - covered - set(NOT_NUMERICAL))
    assert not missing, f"no NaN spec for {missing}"


#: Public names that take no floating data a NaN could be put in, or whose NaN behaviour is
#: checked elsewhere (the reason is given).
NOT_NUMERICAL = {
    "weights_only": "returns a mask from shapes",
    "fan_in_and_fan_out": "shapes only",
    "xavier_uniform": "initializer: keys and shapes only",
    "xavier_normal": "initializer: keys and shapes only",
    "kaiming_uniform": "initializer: keys and shapes only",
    "kaiming_normal": "initializer: keys and shapes only",
    "Linear": "a module: its outputs are those of the functions above",
    "MLP": "a module",
    "SwiGLUFeedForward": "a module",
    "ConvergenceState": "a container",
    "convergence_init": "tests/test_convergence.py: non-finite steps",
    "convergence_update": "tests/test_convergence.py: non-finite steps",
    "has_converged": "tests/test_convergence.py: False on non-finite steps",
    "minimize": "tests/test_convergence.py: a NaN run stops, not converged",
    "MinimizeResult": "a container",
    "SolverInfo": "a container",
    "CrossEntropyAux": "a container",
    "entropy_report": "a dict of the diagnostics above",
    "vocab_parallel_cross_entropy": "tests/test_fused.py (same loss arithmetic as fused)",
    "vocab_parallel_fused_linear_cross_entropy": "tests/test_fused.py",
}


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=12, deadline=None, derandomize=True)
@given(data=st.data())
def test_nan_in_nan_out(name, data):
    spec = SPECS[name]
    inputs = spec.inputs(np.random.default_rng(sum(map(ord, name))))
    target = inputs[spec.target]
    size = sum(np.size(leaf) for leaf in jax.tree.leaves(target))
    index = data.draw(st.integers(0, size - 1), label="flat index of the NaN")
    ignored = None if spec.ignored is None else np.asarray(spec.ignored(inputs)).reshape(-1)
    args = list(inputs)
    args[spec.target] = _with_nan(target, index)
    out = _call(name)(*args)
    if ignored is not None and ignored[index]:
        assert not _has_nan(out), f"{name}: a NaN that takes no part leaked into {out}"
    else:
        assert _has_nan(out), f"{name}: a NaN in entry {index} was hidden: {out}"
