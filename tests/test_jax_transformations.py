"""Every public function of norms, penalties, information and losses under jit, vmap, grad, jacfwd.

One table row per case: ``(name, fn, make_args)``; ``make_args(rng, lead)`` builds the arguments
with the leading shape ``lead`` (``()`` or ``(batch,)``). The first argument is the one
differentiated; the others are data (labels, masks, targets). Each row is compiled once: one
jitted program returns its value, ``vmap`` and the per-example loop, ``grad`` with a central
finite difference along a random direction, and ``jacfwd`` contracted with the cotangent
(forward mode) against that gradient (reverse mode).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

import jaxreg
from jaxreg import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    elastic_net_penalty,
    entropy,
    entropy_from_logits,
    frobenius_norm,
    global_norm,
    group_lasso_penalty,
    js_divergence,
    kl_divergence,
    kl_divergence_from_logits,
    l1_norm,
    l1_penalty,
    l2_norm,
    l2_penalty,
    log_softmax,
    logsumexp,
    matrix_norm,
    mse_loss,
    nll_loss,
    self_information,
    softmax,
    softmax_cross_entropy,
    squared_loss,
    vector_norm,
    weights_only,
)
from jaxreg.information import kl_div, xlogy
from tests.helpers import assert_tree_close

#: The public names of the modules, as listed in the API reference.
PUBLIC = {
    "norms": ["vector_norm", "matrix_norm", "global_norm", "l1_norm", "l2_norm", "frobenius_norm"],
    "penalties": [
        "l1_penalty",
        "l2_penalty",
        "elastic_net_penalty",
        "group_lasso_penalty",
        "weights_only",
    ],
    "information": [
        "logsumexp",
        "softmax",
        "log_softmax",
        "self_information",
        "entropy",
        "entropy_from_logits",
        "cross_entropy",
        "kl_divergence",
        "kl_divergence_from_logits",
        "js_divergence",
        "kl_div",
        "xlogy",
    ],
    "losses": [
        "softmax_cross_entropy",
        "nll_loss",
        "binary_cross_entropy_with_logits",
        "squared_loss",
        "mse_loss",
    ],
}
SHAPE = (3, 4)
BATCH = 2

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Row:
    """A case: ``name`` is ``"<module>.<public name>[variant]"``."""

    name: str
    fn: Callable[..., Any]
    make_args: Callable[[np.random.Generator, Shape], tuple]

    @property
    def public_name(self) -> str:
        return self.name.split(".", 1)[1].split("[", 1)[0]


def normal(rng: np.random.Generator, lead: Shape) -> np.ndarray:
    return rng.normal(size=lead + SHAPE)


def probs(rng: np.random.Generator, lead: Shape) -> np.ndarray:
    return sps.softmax(rng.normal(size=lead + SHAPE), axis=-1)


def tree(rng: np.random.Generator, lead: Shape) -> dict:
    return {"w": rng.normal(size=lead + SHAPE), "b": rng.normal(size=lead + SHAPE[-1:])}


def mask(rng: np.random.Generator, lead: Shape) -> np.ndarray:
    keep = rng.random(lead + SHAPE) < 0.5
    keep[..., 0] = True
    return keep


def labels(rng: np.random.Generator, lead: Shape) -> np.ndarray:
    y = rng.integers(0, SHAPE[-1], size=lead + SHAPE[:-1]).astype(np.int32)
    y[..., 1] = -100
    return y


def args_of(*makers: Callable) -> Callable[[np.random.Generator, Shape], tuple]:
    return lambda rng, lead: tuple(make(rng, lead) for make in makers)


def masked(fn: Callable) -> Callable:
    """``fn(x, where=m)`` with masked outputs zeroed, so finite differences stay finite."""

    def wrapped(x: jax.Array, m: jax.Array) -> jax.Array:
        out = fn(x, where=m)
        return jnp.where(m, out, 0.0) if out.shape == m.shape else out

    return wrapped


ROWS = [
    Row("norms.vector_norm", lambda x: vector_norm(x, axis=-1), args_of(normal)),
    Row("norms.vector_norm[ord<0]", lambda x: vector_norm(x, -1.5, axis=-1), args_of(normal)),
    Row(
        "norms.vector_norm[where]",
        lambda x, m: vector_norm(x, 3, axis=-1, where=m),
        args_of(normal, mask),
    ),
    Row("norms.matrix_norm", matrix_norm, args_of(normal)),
    Row("norms.matrix_norm[nuc]", lambda x: matrix_norm(x, ord="nuc"), args_of(normal)),
    Row("norms.global_norm", global_norm, args_of(tree)),
    Row("norms.l1_norm", l1_norm, args_of(normal)),
    Row("norms.l2_norm", l2_norm, args_of(normal)),
    Row("norms.frobenius_norm", frobenius_norm, args_of(normal)),
    Row("penalties.l1_penalty", l1_penalty, args_of(tree)),
    Row("penalties.l2_penalty", l2_penalty, args_of(tree)),
    Row(
        "penalties.elastic_net_penalty",
        lambda t: elastic_net_penalty(t, l1_ratio=0.3),
        args_of(tree),
    ),
    Row("penalties.group_lasso_penalty", group_lasso_penalty, args_of(tree)),
    Row(
        "penalties.weights_only",
        lambda t: group_lasso_penalty(t, mask=weights_only) + l2_penalty(t, mask=weights_only),
        args_of(tree),
    ),
    Row("information.logsumexp", logsumexp, args_of(normal)),
    Row("information.logsumexp[where]", masked(logsumexp), args_of(normal, mask)),
    Row("information.softmax", softmax, args_of(normal)),
    Row("information.softmax[where]", masked(softmax), args_of(normal, mask)),
    Row("information.log_softmax", log_softmax, args_of(normal)),
    Row("information.log_softmax[where]", masked(log_softmax), args_of(normal, mask)),
    Row("information.self_information", self_information, args_of(probs)),
    Row("information.entropy", entropy, args_of(probs)),
    Row("information.entropy_from_logits", entropy_from_logits, args_of(normal)),
    Row(
        "information.entropy_from_logits[where]",
        masked(entropy_from_logits),
        args_of(normal, mask),
    ),
    Row("information.cross_entropy", cross_entropy, args_of(probs, probs)),
    Row("information.kl_divergence", kl_divergence, args_of(probs, probs)),
    Row(
        "information.kl_divergence_from_logits",
        kl_divergence_from_logits,
        args_of(normal, normal),
    ),
    Row("information.js_divergence", js_divergence, args_of(probs, probs)),
    Row(
        "information.kl_div",
        lambda log_q, p: kl_div(log_q, p, reduction="batchmean"),
        args_of(normal, probs),
    ),
    Row(
        "information.kl_div[log_target]",
        lambda log_q, log_p: kl_div(log_q, log_p, reduction="none", log_target=True),
        args_of(normal, normal),
    ),
    Row("information.xlogy", xlogy, args_of(probs, probs)),
    Row("losses.softmax_cross_entropy", softmax_cross_entropy, args_of(normal, labels)),
    Row(
        "losses.softmax_cross_entropy[probs]",
        lambda x, p: softmax_cross_entropy(x, p, label_smoothing=0.1),
        args_of(normal, probs),
    ),
    Row(
        "losses.softmax_cross_entropy[weight]",
        lambda x, y: softmax_cross_entropy(
            x, y, weight=jnp.arange(1.0, 5.0), label_smoothing=0.1, reduction="none"
        ),
        args_of(normal, labels),
    ),
    Row("losses.nll_loss", lambda x, y: nll_loss(x, y, reduction="sum"), args_of(normal, labels)),
    Row(
        "losses.binary_cross_entropy_with_logits",
        lambda x, t: binary_cross_entropy_with_logits(x, t, pos_weight=jnp.arange(1.0, 5.0)),
        args_of(normal, probs),
    ),
    Row("losses.squared_loss", squared_loss, args_of(normal, normal)),
    Row("losses.mse_loss", mse_loss, args_of(normal, normal)),
]
ROWS_BY_NAME = {row.name: row for row in ROWS}
FD_STEP = 1e-6


def tree_vdot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def tree_axpy(alpha: float, x: Any, y: Any) -> Any:
    return jax.tree.map(lambda a, b: a + alpha * b, y, x)


def all_transforms(
    row: Row, args: tuple, batched: tuple, direction: Any, cotangent: Any
) -> dict[str, Any]:
    """Everything the tests compare, as one program (one compile per row)."""

    def of_first(first: Any) -> Any:
        return row.fn(first, *args[1:])

    def scalar(first: Any) -> jax.Array:
        return tree_vdot(of_first(first), cotangent)

    looped = [row.fn(*jax.tree.map(lambda a, i=i: a[i], batched)) for i in range(BATCH)]
    plus = scalar(tree_axpy(FD_STEP, direction, args[0]))
    minus = scalar(tree_axpy(-FD_STEP, direction, args[0]))
    return {
        "out": row.fn(*args),
        "vmap": jax.vmap(row.fn)(*batched),
        "loop": jax.tree.map(lambda *outs: jnp.stack(outs), *looped),
        "grad_along": tree_vdot(jax.grad(scalar)(args[0]), direction),
        "finite_difference": (plus - minus) / (2 * FD_STEP),
        "grad": jax.grad(scalar)(args[0]),
        "jacfwd_vjp": contract(jax.jacfwd(of_first)(args[0]), cotangent),
    }


def contract(jacobian: Any, cotangent: Any) -> Any:
    """``cotangentᵀ·J`` from a full Jacobian (a tree of the output's structure whose leaves are
    trees of the input's), to compare forward mode with reverse mode."""
    per_output = jax.tree.map(
        lambda c, jac: jax.tree.map(lambda j: jnp.tensordot(c, j, axes=c.ndim), jac),
        cotangent,
        jacobian,
    )
    outputs = jax.tree.structure(cotangent).flatten_up_to(per_output)
    return functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), outputs)


@functools.cache
def evaluate(name: str) -> tuple[dict[str, Any], Any]:
    """The jitted transforms of a row and its eager value, computed once per row."""
    row = ROWS_BY_NAME[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    args, batched = row.make_args(rng, ()), row.make_args(rng, (BATCH,))
    direction = jax.tree.map(lambda a: rng.normal(size=np.shape(a)), args[0])
    cotangent = jax.tree.map(lambda a: rng.normal(size=a.shape), jax.eval_shape(row.fn, *args))
    program = jax.jit(functools.partial(all_transforms, row))
    jitted = program(args, batched, direction, cotangent)
    return jitted, row.fn(*args)


@pytest.fixture(params=list(ROWS_BY_NAME))
def results(request) -> dict[str, Any]:
    jitted, eager = evaluate(request.param)
    return {**jitted, "eager": eager}


def test_every_public_name_has_a_row():
    covered = {(row.name.split(".", 1)[0], row.public_name) for row in ROWS}
    for module, names in PUBLIC.items():
        documented = set(names) | set(getattr(getattr(jaxreg, module), "__all__", ()))
        for name in documented:
            assert (module, name) in covered, f"no transform row for {module}.{name}"
            assert getattr(jaxreg, name) is getattr(getattr(jaxreg, module), name), name


def test_jit_equals_eager(results):
    assert_tree_close(results["out"], results["eager"], rtol=1e-12)


def test_vmap_equals_loop(results):
    assert_tree_close(results["vmap"], results["loop"], rtol=1e-12)


def test_grad_equals_finite_difference(results):
    np.testing.assert_allclose(
        results["grad_along"], results["finite_difference"], rtol=1e-6, atol=1e-9
    )


def test_jacfwd_agrees_with_grad(results):
    assert_tree_close(results["jacfwd_vjp"], results["grad"], rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------- compiled public functions


def test_eager_call_compiles_one_program_and_reuses_it():
    compiles = []
    recording = [True]

    def listener(event: str, duration: float, **_: Any) -> None:
        if recording[0] and event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        logits = np.random.default_rng(0).normal(size=(6, 5))
        labels = np.array([0, 1, 2, 3, 4, -100], np.int32)
        call = functools.partial(softmax_cross_entropy, weight=np.arange(1.0, 6.0))
        first = call(logits, labels, label_smoothing=0.1)
        after_first = len(compiles)
        second = call(logits + 1.0, labels, label_smoothing=0.1)
        assert after_first == 1, f"{after_first} programs compiled (op by op?)"
        assert len(compiles) == after_first, "the same signature compiled again"
        np.testing.assert_allclose(first, second, rtol=1e-12)  # a shift leaves CE unchanged
    finally:
        recording[0] = False


def test_static_options_accept_lists_and_traced_values():
    x = np.random.default_rng(1).normal(size=(3, 4))
    np.testing.assert_array_equal(vector_norm(x, axis=[0, 1]), vector_norm(x, axis=(0, 1)))
    # A list-shaped mask keeps its structure (it is not turned into a static tuple).
    params = [jnp.ones((2, 2)), jnp.ones(2)]
    assert float(l1_penalty(params, mask=[True, False])) == 4.0
    # A traced option runs inside the caller's trace: gradients in the bandwidth work.
    r = jnp.linspace(-1.0, 1.0, 9)
    grad = jax.grad(lambda b: jaxreg.error_entropy(r, bandwidth=b))(0.5)
    eps = 1e-6
    fd = jaxreg.error_entropy(r, bandwidth=0.5 + eps) - jaxreg.error_entropy(r, bandwidth=0.5 - eps)
    np.testing.assert_allclose(grad, fd / (2 * eps), rtol=1e-6)
