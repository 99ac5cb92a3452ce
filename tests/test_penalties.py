"""jaxreg.penalties against NumPy formulas in float64: values, gradients, masks, edge cases."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from jaxreg import (
    elastic_net_penalty,
    group_lasso_penalty,
    l1_penalty,
    l2_penalty,
    weights_only,
)
from jaxreg.penalties import resolve_mask
from tests.helpers import (
    assert_edge_rules,
    assert_finite,
    assert_low_precision,
    assert_tree_close,
    rounded,
)

WEIGHTS_MASK = {"dense": {"kernel": True, "bias": False}, "conv": True}
#: Elementwise masks: entries of the (3, 4) kernel, and columns of the (2, 3, 4) conv
#: (broadcast over its other axes).
KERNEL_ENTRIES = np.array(
    [[True, False, True, True], [False, False, True, False], [True, True, False, True]]
)
CONV_COLUMNS = np.array([True, False, False, True])


def make_params(rng: np.random.Generator) -> dict:
    return {
        "dense": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,))},
        "conv": rng.normal(size=(2, 3, 4)),
    }


def masked_leaves(params: dict, mask: dict | None) -> list[np.ndarray]:
    """Every leaf with its unselected entries set to 0 (``mask`` holds bools or arrays)."""
    return jax.tree.leaves(apply_mask(jax.tree.map(np.asarray, params), mask))


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
    """``tree`` with the entries that ``mask`` (bools or boolean arrays) leaves out set to 0."""
    if mask is None:
        return tree
    return jax.tree.map(lambda leaf, m: np.where(m, leaf, np.zeros_like(leaf)), tree, mask)


ONLY_CONV = {"dense": {"kernel": False, "bias": False}, "conv": True}
ENTRIES = {"dense": {"kernel": KERNEL_ENTRIES, "bias": False}, "conv": CONV_COLUMNS}

#: Every form a mask may take (name: the mask, and the selection it stands for, as a tree
#: like ``make_params`` of bools or boolean arrays). Shared with tests/test_optim.py and
#: tests/test_proximal.py.
MASKS: dict[str, tuple[object, dict | None]] = {
    "none": (None, None),
    "tree": (WEIGHTS_MASK, WEIGHTS_MASK),
    "weights_only": (weights_only, WEIGHTS_MASK),
    "callable": (lambda p: jax.tree.map(lambda leaf: leaf.shape[0] == 2, p), ONLY_CONV),
    "prefix": ({"dense": False, "conv": True}, ONLY_CONV),
    "nothing": (False, jax.tree.map(lambda _: False, WEIGHTS_MASK)),
    "arrays": (
        {"dense": {"kernel": jnp.asarray(KERNEL_ENTRIES), "bias": False}, "conv": CONV_COLUMNS},
        ENTRIES,
    ),
    "variables": (jax.tree.map(nnx.Param, WEIGHTS_MASK), WEIGHTS_MASK),
    "path_filter": (
        nnx.PathContains("kernel"),
        {"dense": {"kernel": True, "bias": False}, "conv": False},
    ),
    "predicate": (lambda path, x: path[0] == "conv", ONLY_CONV),
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
        norm = np.linalg.norm(w, axis=axis, keepdims=True)
        return np.sqrt(w.shape[axis]) * w / np.where(norm == 0, 1.0, norm)  # 0 at zero groups

    expected = apply_mask(jax.tree.map(np_grad, apply_mask(params, tree_mask)), tree_mask)
    assert_tree_close(grad, expected, rtol=1e-11)


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


# ----------------------------------------------------------------------------- masks

ALL_KINDS: dict[str, Callable] = {
    "l1": l1_penalty,
    "l2": l2_penalty,
    "elastic_net": functools.partial(elastic_net_penalty, l1_ratio=0.3),
    "group_lasso": group_lasso_penalty,
}


def np_penalty(kind: str, params: dict, mask: dict | None) -> float:
    if kind == "l1":
        return np_l1(params, mask)
    if kind == "l2":
        return np_l2(params, mask)
    if kind == "elastic_net":
        return np_elastic_net(params, 0.3, mask)
    return np_group_lasso(params, -1, mask)


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_traced_elementwise_mask_equals_concrete(rng, kind):
    """Array masks are data: passed through ``jit`` (traced), they give the same penalty."""
    params = make_params(rng)
    mask = {"dense": {"kernel": KERNEL_ENTRIES, "bias": np.bool_(False)}, "conv": CONV_COLUMNS}
    penalty = ALL_KINDS[kind]
    traced = jax.jit(lambda p, m: penalty(p, mask=m))(params, mask)
    np.testing.assert_allclose(traced, penalty(params, mask=mask), rtol=1e-15)
    np.testing.assert_allclose(traced, np_penalty(kind, params, ENTRIES), rtol=1e-12)


def test_elementwise_mask_gradients_check(rng):
    """Second-order gradient checks through the elementwise masks (group norms included)."""
    w = rng.normal(size=(3, 4))
    for penalty in ALL_KINDS.values():
        masked = functools.partial(lambda w, f: f({"w": w}, mask={"w": KERNEL_ENTRIES}), f=penalty)
        check_grads(masked, (w,), order=2)


def test_resolve_mask_returns_the_selection_like_params(rng):
    params = make_params(rng)
    resolved = resolve_mask(params, MASKS["arrays"][0])
    assert resolved["dense"]["bias"] is False
    np.testing.assert_array_equal(resolved["conv"], np.broadcast_to(CONV_COLUMNS, (2, 3, 4)))
    assert resolve_mask(params, nnx.PathContains("bias")) == {
        "dense": {"kernel": False, "bias": True},
        "conv": False,
    }


class BatchNormNet(nnx.Module):
    """A float32 layer (flax's default), a BatchNorm (float statistics) and a dropout (its
    RNG count is an integer leaf)."""

    def __init__(self, rngs: nnx.Rngs, *, dropout: bool = False):
        self.dense = nnx.Linear(3, 4, rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=1)) if dropout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.dense(x))
        return y if self.drop is None else self.drop(y)


def flat_by_path(state: nnx.State) -> dict[tuple, np.ndarray]:
    return {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(state)}


@pytest.mark.parametrize(
    "form", ["type_filter", "combined_filter", "state_of_bools", "weights_only", "dict"]
)
@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_nnx_state_masks(kind, form):
    """nnx States as params, with filters, States of bools and plain dicts matched by path
    (Variable wrappers ignored); BatchNorm statistics and RNG state left out."""
    model = BatchNormNet(nnx.Rngs(0), dropout=True)
    model.bn.mean.set_value(jnp.arange(4.0, dtype=jnp.float32))  # would change the penalty
    full, params = nnx.state(model), nnx.state(model, nnx.Param)
    flat = flat_by_path(params)
    kernel_only = {p: (w if "kernel" in p else np.zeros_like(w)) for p, w in flat.items()}
    state, mask, selected = {
        "type_filter": (full, nnx.Param, flat),
        "combined_filter": (full, nnx.All(nnx.Param, nnx.PathContains("kernel")), kernel_only),
        "state_of_bools": (params, jax.tree.map(lambda w: w.ndim == 2, params), kernel_only),
        "weights_only": (params, weights_only, kernel_only),
        "dict": (
            params,
            {"dense": {"kernel": True, "bias": False}, "bn": False},  # "bn": a prefix
            kernel_only,
        ),
    }[form]
    got = ALL_KINDS[kind](state, mask=mask)
    assert got.dtype == jnp.float32
    expected = np_penalty(kind, {"/".join(p): w.astype(float) for p, w in selected.items()}, None)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_selected_integer_leaf_names_its_path_and_the_fix():
    state = nnx.state(BatchNormNet(nnx.Rngs(0), dropout=True))
    with pytest.raises(TypeError, match=r"params\['drop'\]\['rngs'\]\['count'\]") as error:
        l2_penalty(state)
    assert "nnx.state(model, nnx.Param)" in str(error.value)
    assert "mask=nnx.Param" in str(error.value)


def test_masked_out_integer_and_key_leaves_are_never_touched(rng):
    """Python-False leaves are static: not computed on, eagerly or under ``jit``."""
    w = rng.normal(size=(2, 3))
    params = {"w": w, "count": jnp.array(3, jnp.int32), "key": jax.random.key(0)}
    mask = {"w": True, "count": False, "key": False}
    for penalty in ALL_KINDS.values():
        expected = penalty({"w": w})
        assert penalty(params, mask=mask) == expected
        assert jax.jit(lambda p, penalty=penalty: penalty(p, mask=mask))(params) == expected


@pytest.mark.parametrize(
    ("params", "mask", "error", "message"),
    [
        (
            {"dense": {"kernel": np.ones((2, 3)), "bias": np.ones(3)}},
            {"dense": {"kernel": True}},
            ValueError,
            "`mask` has no entry for params['dense']['bias']",
        ),
        (
            {"w": np.ones((2, 3))},
            {"w": np.array([True, False])},
            ValueError,
            "`mask` leaf at ['w'] has shape (2,), which does not broadcast to the "
            "parameter's shape (2, 3)",
        ),
        ({"w": np.ones(3)}, {"w": np.ones(3)}, TypeError, "`mask` leaf at ['w'] must be boolean"),
        ({"w": np.ones(3)}, {"w": "yes"}, TypeError, "`mask` leaf at ['w'] must be a bool"),
        (
            {"only_plain_arrays": np.ones(3)},
            nnx.Param,
            ValueError,
            "selects by Variable type or tag, but the params are plain arrays",
        ),
    ],
    ids=["missing entry", "shape", "dtype", "not a bool", "type filter on arrays"],
)
def test_mask_errors_name_the_path(params, mask, error, message):
    for penalty in ALL_KINDS.values():
        with pytest.raises(error) as info:
            penalty(params, mask=mask)
        assert message in str(info.value)
        assert "PyTreeDef" not in str(info.value)


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_nan_in_selected_leaf_or_entry_gives_nan(rng, kind):
    params = make_params(rng)
    params["dense"]["kernel"][0, 0] = np.nan  # selected by both masks below
    for mask in (WEIGHTS_MASK, MASKS["arrays"][0]):
        assert np.isnan(ALL_KINDS[kind](params, mask=mask))


@pytest.mark.parametrize("kind", list(ALL_KINDS))
def test_nan_in_masked_out_leaf_or_entry_takes_no_part(rng, kind):
    """A NaN under a Python False leaf or an array-False entry reaches neither the value
    nor the gradient (the where comes before the penalty: the double where)."""
    params = make_params(rng)
    params["dense"]["bias"][1] = np.nan  # a Python-False leaf in both masks
    params["dense"]["kernel"][0, 1] = np.nan  # an array-False entry
    params["conv"][1, 2, 2] = np.inf  # a masked-out column of the conv
    mask, selection = MASKS["arrays"]
    penalty = functools.partial(ALL_KINDS[kind], mask=mask)
    value, grad = jax.jit(jax.value_and_grad(penalty))(params)
    np.testing.assert_allclose(value, np_penalty(kind, params, selection), rtol=1e-12)
    assert_finite(grad)
    assert grad["dense"]["kernel"][0, 1] == 0.0 and grad["conv"][1, 2, 2] == 0.0
    assert np.all(np.asarray(grad["dense"]["bias"]) == 0.0)


@contextlib.contextmanager
def count_compiles() -> Iterator[list[str]]:
    """Records every XLA compilation in the block (JAX's backend-compile events)."""
    events: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_traced_l1_ratio_equals_concrete_without_recompiling(rng):
    params = make_params(rng)
    traces = []

    @jax.jit
    def traced(ratio):
        traces.append(ratio)
        return elastic_net_penalty(params, l1_ratio=ratio, mask=weights_only)

    for ratio in (0.0, 0.3, 1.0):
        concrete = elastic_net_penalty(params, l1_ratio=ratio, mask=weights_only)
        np.testing.assert_allclose(traced(ratio), concrete, rtol=1e-15)
        np.testing.assert_allclose(concrete, np_elastic_net(params, ratio, WEIGHTS_MASK))
    assert len(traces) == 1
    # Eager calls: a new value (Python float or array) does not compile a new program.
    for first, second in ((0.2, 0.6), (jnp.asarray(0.2), jnp.asarray(0.6))):
        elastic_net_penalty(params, l1_ratio=first)
        with count_compiles() as compiles:
            got = elastic_net_penalty(params, l1_ratio=second)
        assert compiles == []
        np.testing.assert_allclose(got, np_elastic_net(params, 0.6), rtol=1e-12)
    # d/dρ [ρ·Σ|w| + (1-ρ)·½Σw²] = Σ|w| - ½Σw².
    slope = jax.grad(lambda r: elastic_net_penalty(params, l1_ratio=r))(0.4)
    np.testing.assert_allclose(slope, np_l1(params) - np_l2(params), rtol=1e-12)


def test_l1_ratio_is_checked_only_when_concrete(rng):
    params = make_params(rng)
    with pytest.raises(ValueError, match="l1_ratio"):
        elastic_net_penalty(params, l1_ratio=jnp.asarray(1.5))
    value = jax.jit(lambda r: elastic_net_penalty(params, l1_ratio=r))(1.5)
    np.testing.assert_allclose(value, 1.5 * np_l1(params) - 0.5 * np_l2(params), rtol=1e-12)
