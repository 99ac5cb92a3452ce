"""Parity of :mod:`jaxreg.penalties` with :mod:`torch_ref.penalties`.

Values and gradients (VJPs) w.r.t. every leaf, in float32 and float64, on every
available device: L1, L2, elastic net and group lasso over a pytree (nested dicts
and lists, 1-D, 2-D and 3-D leaves, exact zeros and an all-zero group), with
masks given as trees, as the ``weights_only`` callable, or with boolean arrays as
leaves (elementwise). torch has no penalty
functions, so torch_ref is the only reference; edge cases (zero groups, masks,
errors) and generated trees follow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxreg import penalties as jp
from parity_tests.harness import ParityCase, assert_parity, check_case, compare
from torch_ref import penalties as tp

LEAVES = (0, 1, 2)


def tree(kernel, bias, conv) -> dict:
    """The same nesting for both frameworks: a dict holding a list of dicts."""
    return {"dense": {"kernel": kernel, "bias": bias}, "blocks": [{"conv": conv}]}


def leaves(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A ``(3, 4)`` kernel with exact zeros and an all-zero row, a bias, a 3-D kernel."""
    kernel = rng.standard_normal((3, 4))
    kernel[0] = 0.0
    kernel[2, 1] = 0.0
    return kernel, rng.standard_normal(4), rng.standard_normal((2, 3, 2))


def on_tree(penalty, **kwargs):
    return lambda *ls: penalty(tree(*ls), **kwargs)


def pair(name: str, **kwargs) -> tuple:
    """jaxreg's and torch_ref's ``name`` with the same keyword arguments, on the tree."""
    return on_tree(getattr(jp, name), **kwargs), on_tree(getattr(tp, name), **kwargs)


MASK = {"dense": {"kernel": True, "bias": False}, "blocks": [{"conv": True}]}


def elastic_nets(module):
    return lambda *ls: [
        module.elastic_net_penalty(tree(*ls)),
        module.elastic_net_penalty(tree(*ls), l1_ratio=0.3),
    ]


def penalties(module):
    """The elementwise penalties, unmasked."""
    return lambda *ls: [
        module.l1_penalty(tree(*ls)),
        module.l2_penalty(tree(*ls)),
        *elastic_nets(module)(*ls),
    ]


def masked(module):
    """Masks as a tree and as the ``weights_only`` callable; group lasso over ``axis=0``."""
    return lambda *ls: [
        module.l1_penalty(tree(*ls), mask=module.weights_only),
        module.l2_penalty(tree(*ls), mask=MASK),
        module.group_lasso_penalty(tree(*ls), axis=0, mask=MASK),
    ]


def elementwise(module):
    """Boolean arrays as mask leaves (the last two inputs): entries of the kernel, columns
    of the conv; unselected entries count as zeros, on both sides."""

    def fn(kernel, bias, conv, kernel_mask, conv_mask):
        mask = {"dense": {"kernel": kernel_mask, "bias": False}, "blocks": [{"conv": conv_mask}]}
        params = tree(kernel, bias, conv)
        return [
            module.l1_penalty(params, mask=mask),
            module.l2_penalty(params, mask=mask),
            module.elastic_net_penalty(params, l1_ratio=0.3, mask=mask),
            module.group_lasso_penalty(params, axis=0, mask=mask),
        ]

    return fn


def leaves_and_entry_masks(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    kernel_mask = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]], dtype=bool)
    return (*leaves(rng), kernel_mask, np.array([True, False]))


CASES = [
    ParityCase("penalties.l1_penalty", *pair("l1_penalty"), leaves, grad_argnums=LEAVES),
    ParityCase("penalties.l2_penalty", *pair("l2_penalty"), leaves, grad_argnums=LEAVES),
    ParityCase(
        "penalties.elastic_net_penalty",
        lambda *ls: [
            jp.elastic_net_penalty(tree(*ls)),
            jp.elastic_net_penalty(tree(*ls), l1_ratio=0.3),
        ],
        lambda *ls: [
            tp.elastic_net_penalty(tree(*ls)),
            tp.elastic_net_penalty(tree(*ls), l1_ratio=0.3),
        ],
        leaves,
        grad_argnums=LEAVES,
    ),
    ParityCase(
        "penalties.group_lasso_penalty",
        *pair("group_lasso_penalty"),
        leaves,
        grad_argnums=LEAVES,
    ),
    ParityCase(
        "penalties.weights_only[masks]",
        masked(jp),
        masked(tp),
        leaves,
        grad_argnums=LEAVES,
        dtypes=("float64",),  # the penalties above, masked, in float64 only
    ),
    ParityCase(
        "penalties.elementwise_masks",
        elementwise(jp),
        elementwise(tp),
        leaves_and_entry_masks,
        grad_argnums=LEAVES,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parity(case: ParityCase) -> None:
    check_case(case)


# --- edge cases --------------------------------------------------------------------


def penalties_and_group_lasso(module):
    return lambda *ls: sum(penalties(module)(*ls)) + module.group_lasso_penalty(tree(*ls))


def grads_of(total, args: tuple[np.ndarray, ...]):
    """Value and gradient w.r.t. every leaf of ``total(module)``, from jaxreg (jitted)
    and from torch_ref."""
    jax_fn, torch_fn = total(jp), total(tp)
    value_j, grads_j = jax.jit(jax.value_and_grad(jax_fn, LEAVES))(*map(jnp.asarray, args))
    targs = [torch.tensor(a, requires_grad=True) for a in args]
    value_t = torch_fn(*targs)
    grads_t = torch.autograd.grad(value_t, targs, allow_unused=True)
    grads_t = [torch.zeros_like(a) if g is None else g for a, g in zip(targs, grads_t, strict=True)]
    return (float(value_j), [np.asarray(g) for g in grads_j]), (
        float(value_t.detach()),
        [g.numpy() for g in grads_t],
    )


def test_zero_parameters() -> None:
    """All-zero parameters: every penalty is 0 with gradient 0 on both sides (the
    subgradient 0 of ``|w|`` and of ``‖w_g‖``)."""
    args = (np.zeros((3, 4)), np.zeros(4), np.zeros((2, 3, 2)))
    for value, grads in grads_of(penalties_and_group_lasso, args):
        assert value == 0.0
        for g in grads:
            np.testing.assert_array_equal(g, 0.0)


def test_group_lasso_groups(rng) -> None:
    """√size-weighted group norms; an all-zero group has gradient 0, and the other
    groups' gradients are ``√size · w_g / ‖w_g‖``, on both sides."""
    kernel, bias, conv = leaves(rng)
    args = (kernel, bias, conv)
    norms = np.linalg.norm(kernel, axis=-1)
    expected_value = 2.0 * norms.sum() + 2.0 * np.linalg.norm(bias)
    expected_value += np.sqrt(2) * np.linalg.norm(conv, axis=-1).sum()
    expected_kernel = np.zeros_like(kernel)
    expected_kernel[1:] = 2.0 * kernel[1:] / norms[1:, None]
    for value, grads in grads_of(lambda m: lambda *ls: m.group_lasso_penalty(tree(*ls)), args):
        np.testing.assert_allclose(value, expected_value, rtol=1e-12)
        np.testing.assert_allclose(grads[0], expected_kernel, rtol=1e-12, atol=1e-15)


def test_l2_penalty_gradient_is_weight_decay(rng) -> None:
    """``λ·l2_penalty`` has gradient ``λ·w``, on both sides: adding it to a loss is
    torch's ``SGD(weight_decay=λ)``, which steps ``w ← w - lr·(g + λ·w)``."""
    w, decay = rng.standard_normal((3, 4)), 0.01
    grad_j = jax.jit(jax.grad(lambda w: decay * jp.l2_penalty({"w": w})))(jnp.asarray(w))
    wt = torch.tensor(w, requires_grad=True)
    (grad_t,) = torch.autograd.grad(decay * tp.l2_penalty({"w": wt}), wt)
    np.testing.assert_allclose(np.asarray(grad_j), decay * w, rtol=1e-15)
    np.testing.assert_allclose(grad_t.numpy(), decay * w, rtol=1e-15)


def test_masks(rng) -> None:
    """``weights_only`` selects ``ndim >= 2``; a fully masked tree gives 0 on both sides."""
    kernel, bias, conv = leaves(rng)
    assert jp.weights_only(tree(*map(jnp.asarray, (kernel, bias, conv)))) == MASK
    assert tp.weights_only(tree(*map(torch.tensor, (kernel, bias, conv)))) == MASK
    nothing = {"dense": {"kernel": False, "bias": False}, "blocks": [{"conv": False}]}
    assert float(jp.l1_penalty(tree(kernel, bias, conv), mask=nothing)) == 0.0
    assert float(tp.l1_penalty(tree(*map(torch.tensor, (kernel, bias, conv))), mask=nothing)) == 0.0


def test_low_precision(rng) -> None:
    """bf16 leaves are reduced in float32 and the penalty returned in bf16, on both sides."""
    args = leaves(rng)

    def all_penalties(module):
        return lambda *ls: [*penalties(module)(*ls), module.group_lasso_penalty(tree(*ls))]

    out_j = jax.jit(all_penalties(jp))(*[jnp.asarray(a, jnp.bfloat16) for a in args])
    out_t = all_penalties(tp)(*[torch.tensor(a).bfloat16() for a in args])
    for a, b in zip(out_j, out_t, strict=True):
        assert a.dtype == jnp.bfloat16 and b.dtype == torch.bfloat16
        np.testing.assert_allclose(float(a), float(b), rtol=2.0**-7)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda m, t: m.l1_penalty(t, mask={"w": True}), ValueError),
        (lambda m, t: m.elastic_net_penalty(t, l1_ratio=1.5), ValueError),
        (lambda m, t: m.group_lasso_penalty(t, axis=3), ValueError),
    ],
    ids=["mask structure", "l1_ratio", "axis"],
)
def test_errors(call, error) -> None:
    """Bad input raises the same error type on both sides."""
    with pytest.raises(error):
        call(jp, {"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
    with pytest.raises(error):
        call(tp, {"w": torch.ones(2, 3), "b": torch.ones(3)})


def test_integer_leaf_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="params"):
        jp.l2_penalty({"w": jnp.ones(3, jnp.int32)})
    with pytest.raises(TypeError, match="params"):
        tp.l2_penalty({"w": torch.ones(3, dtype=torch.int32)})


# --- generated inputs ------------------------------------------------------------------


@settings(max_examples=3, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shapes=st.lists(
        st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=3
    ),
    penalty=st.sampled_from(["l1", "l2", "elastic_net", "group_lasso"]),
    l1_ratio=st.floats(0.0, 1.0),
    zeros=st.floats(0.0, 0.6),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_penalties_generated(seed, shapes, penalty, l1_ratio, zeros, dtype) -> None:
    """Random trees (1 to 3 leaves of rank 1 to 3), exact zeros, random masks."""
    rng = np.random.default_rng(seed)
    arrays = [np.where(rng.random(s) < zeros, 0.0, rng.standard_normal(s)) for s in shapes]
    mask = [bool(b) for b in rng.random(len(shapes)) < 0.8]
    mask[0] = True
    kwargs = {"mask": mask}
    if penalty == "elastic_net":
        kwargs["l1_ratio"] = l1_ratio
    if penalty == "group_lasso":
        kwargs["axis"] = int(rng.integers(-1, 1))
    name = f"{penalty}_penalty"
    result = compare(
        lambda *ls: getattr(jp, name)(list(ls), **kwargs),
        lambda *ls: getattr(tp, name)(list(ls), **kwargs),
        arrays,
        dtype=dtype,
        grad_argnums=tuple(range(len(arrays))),
        name=name,
    )
    assert_parity(result)
