"""jaxreg.penalties against NumPy formulas in float64: values, gradients, masks, edge cases."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import (
    elastic_net_penalty,
    group_lasso_penalty,
    l1_penalty,
    l2_penalty,
    weights_only,
)
from tests.helpers import (
    assert_edge_rules,
    assert_finite,
    assert_low_precision,
    assert_tree_close,
    rounded,
)

WEIGHTS_MASK = {"dense": {"kernel": True, "bias": False}, "conv": True}


def make_params(rng: np.random.Generator) -> dict:
    return {
        "dense": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,))},
        "conv": rng.normal(size=(2, 3, 4)),
    }


def masked_leaves(params: dict, mask: dict | None) -> list[np.ndarray]:
    leaves = jax.tree.leaves(params)
    keep = [True] * len(leaves) if mask is None else jax.tree.leaves(mask)
    return [np.asarray(leaf) for leaf, k in zip(leaves, keep, strict=True) if k]


def np_l1(params: dict, mask: dict | None = None) -> float:
    return sum(np.abs(w).sum() for w in masked_leaves(params, mask))


def np_l2(params: dict, mask: dict | None = None) -> float:
    return sum(0.5 * (w**2).sum() for w in masked_leaves(params, mask))


def np_elastic_net(params: dict, l1_ratio: float, mask: dict | None = None) -> float:
    return l1_ratio * np_l1(params, mask) + (1 - l1_ratio) * np_l2(params, mask)


def np_group_lasso(params: dict, axis: int, mask: dict | None = None) -> float:
    """Yuan & Lin: sum over groups of sqrt(group size) * ||w_g||_2; `axis` runs within a group."""
    total = 0.0
    for w in masked_leaves(params, mask):
        size = w.shape[axis]
        total += np.sqrt(size) * np.sqrt((w**2).sum(axis=axis)).sum()
    return total


def apply_mask(tree: dict, mask: dict | None) -> dict:
    if mask is None:
        return tree
    return jax.tree.map(lambda leaf, m: leaf if m else np.zeros_like(leaf), tree, mask)


MASKS: dict[str, tuple[object, dict | None]] = {
    "none": (None, None),
    "tree": (WEIGHTS_MASK, WEIGHTS_MASK),
    "weights_only": (weights_only, WEIGHTS_MASK),
    "callable": (
        lambda p: jax.tree.map(lambda leaf: leaf.shape[0] == 2, p),
        {"dense": {"kernel": False, "bias": False}, "conv": True},
    ),
}


@pytest.fixture(params=list(MASKS), ids=list(MASKS))
def mask_case(request):
    return MASKS[request.param]


# ----------------------------------------------------------------------------- oracles


def test_weights_only_selects_matrices(rng):
    params = make_params(rng)
    assert jax.tree.map(bool, weights_only(params)) == WEIGHTS_MASK


def test_l1_penalty(rng, mask_case):
    mask, tree_mask = mask_case
    params = make_params(rng)
    np.testing.assert_allclose(l1_penalty(params, mask=mask), np_l1(params, tree_mask), rtol=1e-12)
    grad = jax.grad(lambda p: l1_penalty(p, mask=mask))(params)
    assert_tree_close(grad, apply_mask(jax.tree.map(np.sign, params), tree_mask))


def test_l2_penalty(rng, mask_case):
    mask, tree_mask = mask_case
    params = make_params(rng)
    np.testing.assert_allclose(l2_penalty(params, mask=mask), np_l2(params, tree_mask), rtol=1e-12)
    # λ·l2_penalty has gradient λ·w: torch's weight_decay=λ.
    grad = jax.grad(lambda p: 0.1 * l2_penalty(p, mask=mask))(params)
    assert_tree_close(grad, apply_mask(jax.tree.map(lambda w: 0.1 * w, params), tree_mask))


@pytest.mark.parametrize("l1_ratio", [0.0, 0.3, 1.0])
def test_elastic_net_penalty(rng, mask_case, l1_ratio):
    mask, tree_mask = mask_case
    params = make_params(rng)
    got = elastic_net_penalty(params, l1_ratio=l1_ratio, mask=mask)
    np.testing.assert_allclose(got, np_elastic_net(params, l1_ratio, tree_mask), rtol=1e-12)
    grad = jax.grad(lambda p: elastic_net_penalty(p, l1_ratio=l1_ratio, mask=mask))(params)
    expected = jax.tree.map(lambda w: l1_ratio * np.sign(w) + (1 - l1_ratio) * w, params)
    assert_tree_close(grad, apply_mask(expected, tree_mask))


def test_elastic_net_default_ratio_is_half(rng):
    params = make_params(rng)
    np.testing.assert_allclose(elastic_net_penalty(params), np_elastic_net(params, 0.5), rtol=1e-12)


@pytest.mark.parametrize("axis", [-1, 0])
def test_group_lasso_penalty(rng, mask_case, axis):
    mask, tree_mask = mask_case
    params = make_params(rng)
    penalty = functools.partial(group_lasso_penalty, axis=axis, mask=mask)
    got, grad = jax.jit(jax.value_and_grad(penalty))(params)
    np.testing.assert_allclose(got, np_group_lasso(params, axis, tree_mask), rtol=1e-12)

    def np_grad(w: np.ndarray) -> np.ndarray:
        return np.sqrt(w.shape[axis]) * w / np.linalg.norm(w, axis=axis, keepdims=True)

    assert_tree_close(grad, apply_mask(jax.tree.map(np_grad, params), tree_mask), rtol=1e-11)


def test_group_lasso_default_axis_is_last(rng):
    params = make_params(rng)
    got = jax.jit(group_lasso_penalty)(params)
    np.testing.assert_allclose(got, np_group_lasso(params, -1), rtol=1e-12)


def test_group_lasso_zero_group_has_zero_gradient(rng):
    w = rng.normal(size=(3, 4))
    w[1] = 0.0
    value, grad = jax.jit(jax.value_and_grad(group_lasso_penalty))({"w": w})
    np.testing.assert_allclose(value, np_group_lasso({"w": w}, -1), rtol=1e-12)
    assert_finite(grad)
    np.testing.assert_array_equal(grad["w"][1], 0.0)
    np.testing.assert_allclose(grad["w"][0], 2.0 * w[0] / np.linalg.norm(w[0]), rtol=1e-12)


# ----------------------------------------------------------------------------- edge cases

PENALTIES: dict[str, Callable] = {
    "l1": l1_penalty,
    "l2": l2_penalty,
    "elastic_net": elastic_net_penalty,
    "group_lasso": group_lasso_penalty,
    "group_lasso_axis0": lambda p: group_lasso_penalty(p, axis=0),
}


def test_penalties_at_zero():
    zeros = {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,))}
    assert_edge_rules(PENALTIES, (zeros,), value=0.0, grad=jax.tree.map(np.zeros_like, zeros))


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_low_precision_penalties(rng, dtype_name):
    w = rounded(rng.normal(size=(3, 4)) * 50.0, dtype_name)
    cases = {
        "l2_penalty": (lambda v: l2_penalty({"w": v}), w, 0.5 * (w**2).sum()),
        "l1_penalty": (lambda v: l1_penalty({"w": v}), w, np.abs(w).sum()),
        "group_lasso_penalty": (
            lambda v: group_lasso_penalty({"w": v}),
            w,
            np_group_lasso({"w": w}, -1),
        ),
    }
    assert_low_precision(cases, dtype_name)
