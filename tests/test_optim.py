"""jaxreg.optim (torch-exact SGD, Adam, AdamW) against closed forms and its conventions.

The proximal optimizers are tested in tests/test_proximal.py, with the table-driven checks
defined here (``check_*``, one body for both tables): every mask form selects exactly its
entries, traced and injected hyperparameters equal Python floats, NaN takes part only
where selected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxreg import optim
from jaxreg.penalties import weights_only
from tests.helpers import assert_finite
from tests.test_penalties import MASKS, BatchNormNet, make_params

#: (make(mask), the optimizer without its regularizer): a row of a ``REGULARIZED`` table.
Regularized = tuple[Callable[..., optax.GradientTransformation], optax.GradientTransformation]
#: (factory, hyperparameter settings): a row of a ``HYPERPARAMETERS`` table.
Hyperparameters = tuple[Callable[..., optax.GradientTransformation], list[dict[str, float]]]


def test_inject_hyperparams_matches_static_hyperparameters():
    """Hyperparameters may be arrays (optax.inject_hyperparams); same arithmetic."""
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    grads = {"w": jnp.array([0.3, -0.1, 0.2])}
    injected = optax.inject_hyperparams(optim.sgd)(learning_rate=0.1, momentum=0.9)
    static = optim.sgd(0.1, momentum=0.9)
    s1, s2 = injected.init(params), static.init(params)
    for _ in range(3):
        u1, s1 = jax.jit(injected.update)(grads, s1, params)
        u2, s2 = jax.jit(static.update)(grads, s2, params)
        np.testing.assert_array_equal(u1["w"], u2["w"])


def test_weights_only_mask_exempts_biases_from_decay():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    opt = optim.adamw(0.1, weight_decay=0.5, mask=weights_only)
    updates, _ = jax.jit(opt.update)(zeros, opt.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.05)  # -lr·λ·w
    np.testing.assert_array_equal(updates["bias"], 0.0)


def test_schedule_is_evaluated_in_float64_under_x64():
    schedule = optax.exponential_decay(0.1, transition_steps=3, decay_rate=0.5)
    opt = optim.sgd(schedule)
    params = jnp.ones(1)
    state = opt.init(params)
    update = jax.jit(opt.update)
    for step in range(4):
        updates, state = update(jnp.ones(1), state, params)
        assert float(updates[0]) == -0.1 * 0.5 ** (step / 3)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("make", [lambda: optim.sgd(0.1, momentum=0.9), lambda: optim.adamw(0.1)])
def test_low_precision_params_keep_their_dtype(dtype, make):
    params = jnp.array([1.0, -2.0], dtype)
    opt = make()
    updates, _ = jax.jit(opt.update)(jnp.array([0.5, 0.5], dtype), opt.init(params), params)
    assert updates.dtype == dtype
    assert np.all(np.isfinite(np.asarray(updates, np.float32)))


def test_mask_structure_mismatch_names_mask():
    opt = optim.sgd(0.1, weight_decay=0.1, mask={"w": True})
    with pytest.raises(ValueError, match=r"`mask` has no entry for params\['b'\]"):
        opt.init({"w": jnp.ones(2), "b": jnp.ones(2)})
    opt = optim.adamw(0.1, mask={"w": jnp.array([True, False])})
    with pytest.raises(ValueError, match=r"`mask` leaf at \['w'\] has shape \(2,\)"):
        opt.init({"w": jnp.ones((2, 3))})


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: optim.sgd(-0.1), "learning_rate"),
        (lambda: optim.sgd(0.1, momentum=-0.5), "momentum"),
        (lambda: optim.sgd(0.1, dampening=2.0), "dampening"),
        (lambda: optim.sgd(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: optim.sgd(0.1, nesterov=True), "nesterov"),
        (lambda: optim.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda: optim.adam(-1e-3), "learning_rate"),
        (lambda: optim.adam(b1=1.0), "b1"),
        (lambda: optim.adamw(b2=-0.1), "b2"),
        (lambda: optim.adamw(eps=-1.0), "eps"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


# --------------------------------------------------------------------------- masks

LR = 0.1

#: name: (make(mask), the optimizer without its regularizer), for the optimizers with decay.
REGULARIZED: dict[str, Regularized] = {
    "sgd": (
        lambda mask: optim.sgd(LR, momentum=0.9, dampening=0.1, weight_decay=0.3, mask=mask),
        optim.sgd(LR, momentum=0.9, dampening=0.1),
    ),
    "sgd_nesterov": (
        lambda mask: optim.sgd(LR, momentum=0.9, nesterov=True, weight_decay=0.3, mask=mask),
        optim.sgd(LR, momentum=0.9, nesterov=True),
    ),
    "adam": (lambda mask: optim.adam(LR, weight_decay=0.3, mask=mask), optim.adam(LR)),
    "adamw": (
        lambda mask: optim.adamw(LR, weight_decay=0.3, mask=mask),
        optim.adamw(LR, weight_decay=0.0),
    ),
}


def two_updates(opt: optax.GradientTransformation, params, grads):
    """The second update from the same params and grads (the state has seen one step)."""
    state = opt.init(params)
    _, state = opt.update(grads, state, params)
    return opt.update(grads, state, params)[0]


def full_selection(selection, params):
    """A selection tree (bools or arrays; None for all) as boolean arrays of the leaf shapes."""
    if selection is None:
        return jax.tree.map(lambda w: np.ones(np.shape(w), bool), params)
    return jax.tree.map(lambda s, w: np.broadcast_to(s, np.shape(w)), selection, params)


@functools.cache
def unmasked_updates(make: Callable, plain: optax.GradientTransformation) -> tuple:
    """Params, grads, and the updates with the regularizer on every leaf and on none."""
    rng = np.random.default_rng(0)
    params, grads = make_params(rng), make_params(rng)
    on, off = two_updates(make(None), params, grads), two_updates(plain, params, grads)
    return params, grads, on, off


def mask_form_updates(row: Regularized, form: str) -> tuple:
    """``(params, selected, got, on, off)``: the entries mask form ``form`` selects (boolean
    arrays), the update with that mask, and the updates with the regularizer on every
    leaf and on none."""
    params, grads, on, off = unmasked_updates(*row)
    mask, selection = MASKS[form]
    got = two_updates(row[0](mask), params, grads)
    return params, full_selection(selection, params), got, on, off


def check_mask_form(row: Regularized, form: str) -> None:
    """Each mask form selects exactly the entries it stands for: the update is the
    regularized one there and the unregularized one elsewhere (leaves still stepped)."""
    _, selected, got, on, off = mask_form_updates(row, form)
    expected = jax.tree.map(np.where, selected, on, off)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    if form == "arrays":  # the test is about something: the selection changes the update
        assert not np.array_equal(jax.tree.leaves(on)[0], jax.tree.leaves(off)[0])


@pytest.mark.parametrize("form", list(MASKS))
@pytest.mark.parametrize("name", list(REGULARIZED))
def test_every_mask_form_equals_the_explicit_selection(name, form):
    check_mask_form(REGULARIZED[name], form)


def check_traced_masks(table: dict[str, Regularized]) -> None:
    """Array masks are data: passed into ``jit`` (Python bools become traced 0-d arrays)."""
    rng = np.random.default_rng(1)
    params, grads = make_params(rng), make_params(rng)
    mask = MASKS["arrays"][0]
    for make, _ in table.values():
        want = two_updates(make(mask), params, grads)
        got = jax.jit(lambda p, g, m, make=make: two_updates(make(m), p, g))(params, grads, mask)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)  # jit vs op by op


def test_traced_elementwise_masks_equal_concrete_ones():
    check_traced_masks(REGULARIZED)


NNX_MASKS = {
    "full_state": lambda model: weights_only(nnx.state(model)),  # BatchStats ignored
    "param_state": lambda model: jax.tree.map(lambda w: w.ndim == 2, nnx.state(model, nnx.Param)),
    "path_filter": lambda model: nnx.PathContains("kernel"),
    "type_filter": lambda model: nnx.All(nnx.Param, nnx.PathContains("kernel")),
    "callable": lambda model: weights_only,
}


@functools.cache  # the unmasked runs serve every form
def _nnx_step(mask_of, weight_decay: float, injected: bool) -> dict:
    """One ``nnx.Optimizer`` step of AdamW on a model with a BatchNorm (training mode)."""
    model = BatchNormNet(nnx.Rngs(0))
    mask = None if mask_of is None else mask_of(model)
    if injected:
        tx = optax.inject_hyperparams(optim.adamw, static_args=("mask",))(
            learning_rate=0.1, weight_decay=weight_decay, mask=mask
        )
    else:
        tx = optim.adamw(0.1, weight_decay=weight_decay, mask=mask)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(8, 3)), jnp.float32)

    @nnx.jit
    def step(model, opt):
        grads = nnx.grad(lambda m: jnp.mean((m(x) - 1) ** 2))(model)
        opt.update(model, grads)

    step(model, opt)
    return {"/".join(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model))}


@pytest.mark.parametrize("injected", [False, True], ids=["plain", "inject_hyperparams"])
@pytest.mark.parametrize("form", list(NNX_MASKS))
def test_nnx_optimizer_with_a_prebuilt_mask(form, injected):
    """Under ``nnx.Optimizer(..., wrt=nnx.Param)`` ``tx.init`` sees Variables and
    ``tx.update`` plain arrays: States, filters and callables select the kernel in both."""
    got = _nnx_step(NNX_MASKS[form], 0.5, injected)
    decayed, plain = _nnx_step(None, 0.5, injected), _nnx_step(None, 0.0, injected)
    assert not np.array_equal(decayed["bn/scale"], plain["bn/scale"])
    for path, value in got.items():
        want = decayed[path] if path == "dense/kernel" else plain[path]
        np.testing.assert_array_equal(value, want, err_msg=path)


def test_inject_hyperparams_with_a_mask_and_a_weight_decay_schedule():
    """Masks go in ``static_args``; a scheduled weight decay equals the step-by-step
    optimizer with that step's decay."""
    rng = np.random.default_rng(2)
    params, grads = make_params(rng), make_params(rng)
    decay = optax.linear_schedule(0.5, 0.0, transition_steps=4)
    for mask in (weights_only, MASKS["arrays"][0], nnx.PathContains("kernel")):
        injected = optax.inject_hyperparams(optim.adamw, static_args=("mask",))(
            learning_rate=0.1, weight_decay=decay, mask=mask
        )
        state, inner = injected.init(params), optim.adamw(0.1, mask=mask).init(params)
        update = jax.jit(injected.update)
        for step in range(3):
            got, state = update(grads, state, params)
            wd = float(decay(jnp.asarray(step, jnp.int32)))  # optax's int32 count
            want, inner = optim.adamw(0.1, weight_decay=wd, mask=mask).update(grads, inner, params)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)  # jit vs op by op


# --------------------------------------------------------------------------- hyperparameters

#: name: (factory, hyperparameter settings); zeros included, where torch skips work.
HYPERPARAMETERS: dict[str, Hyperparameters] = {
    "sgd": (
        optim.sgd,
        [
            dict(learning_rate=0.1, momentum=0.9, dampening=0.1, weight_decay=0.3),
            dict(learning_rate=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0),
        ],
    ),
    "sgd_nesterov": (
        functools.partial(optim.sgd, nesterov=True),
        [dict(learning_rate=0.1, momentum=0.9, dampening=0.0, weight_decay=0.3)],
    ),
    "adam": (
        optim.adam,
        [
            dict(learning_rate=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.3),
            dict(learning_rate=0.1, b1=0.3, b2=0.5, eps=0.0, weight_decay=0.0),
        ],
    ),
    "adamw": (
        optim.adamw,
        [
            dict(learning_rate=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.3),
            dict(learning_rate=0.1, b1=0.3, b2=0.5, eps=0.0, weight_decay=0.0),
        ],
    ),
}


def assert_same_updates(got, want) -> None:
    """Equal to a few ulps of the O(1) parameters (two programs, one with constant
    hyperparameters, may round a product differently; a prox update is a difference
    ``prox(w + u) - w``), with the same exact zeros."""
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_array_equal(a == 0, b == 0)
        np.testing.assert_allclose(a, b, rtol=2e-15, atol=1e-15)


def check_traced_hyperparameters(factory: Callable, settings: list[dict]) -> None:
    """Every numeric hyperparameter may be traced: one trace serves every value, the
    updates equal the Python-float call (a traced 0 what a Python 0 gives), and a NaN
    hyperparameter makes the update NaN."""
    rng = np.random.default_rng(3)
    params, grads = make_params(rng), make_params(rng)
    traces = []

    @jax.jit
    def traced(hp):
        traces.append(hp)
        return two_updates(factory(**hp), params, grads)

    for i, hp in enumerate(settings):
        arrays = {k: jnp.asarray(v) for k, v in hp.items()}
        python_floats = jax.jit(lambda hp=hp: two_updates(factory(**hp), params, grads))
        assert_same_updates(traced(arrays), python_floats())
        for k in hp if i == 0 else ():  # with a momentum of 0, dampening takes no part
            nan = traced({**arrays, k: jnp.asarray(np.nan)})
            assert all(np.all(np.isnan(leaf)) for leaf in jax.tree.leaves(nan)), k
    assert len(traces) == 1


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_traced_hyperparameters_equal_python_floats_without_retracing(name):
    check_traced_hyperparameters(*HYPERPARAMETERS[name])


def check_inject_hyperparams(factory: Callable, settings: list[dict]) -> None:
    """``optax.inject_hyperparams``: ``init`` sees concrete arrays, the jitted ``update``
    traced ones; the state keeps one structure (a momentum of 0 included)."""
    rng = np.random.default_rng(4)
    params, grads = make_params(rng), make_params(rng)

    def second_update(opt: optax.GradientTransformation):
        state, update = opt.init(params), jax.jit(opt.update)
        _, state = update(grads, state, params)
        return update(grads, state, params)[0]

    for hp in settings:
        injected = optax.inject_hyperparams(factory)(**hp)
        assert_same_updates(second_update(injected), second_update(factory(**hp)))


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_inject_hyperparams_equals_python_floats(name):
    check_inject_hyperparams(*HYPERPARAMETERS[name])


def test_traced_zero_hyperparameters_take_torchs_zero_path_exactly():
    """torch skips a zero momentum or weight decay (``if weight_decay != 0``); a traced 0
    takes the same path, bit for bit, even where ``0·w`` would be NaN (an infinite w)."""
    params = jnp.array([1.0, -np.inf, 2.0])
    grads = jnp.array([0.5, 0.25, -1.5])
    makes = {
        "sgd": lambda zero: optim.sgd(0.1, momentum=zero, dampening=zero, weight_decay=zero),
        "adam": lambda zero: optim.adam(0.1, weight_decay=zero),
        "adamw": lambda zero: optim.adamw(0.1, weight_decay=zero),
    }
    for name, make in makes.items():
        python_zero = jax.jit(lambda make=make: two_updates(make(0.0), params, grads))()
        traced_zero = jax.jit(lambda zero, make=make: two_updates(make(zero), params, grads))(0.0)
        assert np.all(np.isfinite(traced_zero)), name
        assert_same_updates(traced_zero, python_zero)
        if name == "sgd":  # torch's plain step: nothing but -lr·g, exactly
            np.testing.assert_array_equal(traced_zero, -0.1 * grads)
            np.testing.assert_array_equal(python_zero, -0.1 * grads)


# --------------------------------------------------------------------------- NaN

#: Params with NaN entries, and a mask that leaves them out (an array-False entry of
#: ``w``, a False leaf ``b``).
NAN_PARAMS = {
    "w": jnp.array([[1.0, np.nan, -2.0], [0.5, 3.0, -0.2]]),
    "b": jnp.array([np.nan, 1.0]),
}
NAN_MASK = {"w": jnp.array([[True, False, True], [True, True, True]]), "b": False}


def check_nan_masked_out(table: dict[str, Regularized]) -> None:
    """A NaN parameter under a False mask leaf or an array-False entry leaves every update
    finite, and the update's gradient too (the double where)."""
    grads = {"w": jnp.full((2, 3), 0.3), "b": jnp.full(2, -0.1)}
    for name, (make, _) in table.items():
        opt = make(NAN_MASK)
        assert_finite(two_updates(opt, NAN_PARAMS, grads))

        def total(p, opt=opt):
            return sum(jnp.sum(u) for u in jax.tree.leaves(two_updates(opt, p, grads)))

        assert np.all(np.isfinite(np.asarray(jax.grad(total)(NAN_PARAMS)["w"]))), name


def test_nan_in_masked_out_params_takes_no_part():
    check_nan_masked_out(REGULARIZED)


def check_nan_selected(table: dict[str, Regularized]) -> None:
    """A NaN in a selected parameter makes its update NaN, and only its own."""
    params = {"w": NAN_PARAMS["w"]}
    grads = {"w": jnp.full((2, 3), 0.3)}
    for name, (make, _) in table.items():
        updates = np.asarray(two_updates(make(None), params, grads)["w"])
        assert np.isnan(updates[0, 1]) and np.all(np.isfinite(updates[1])), name


def test_nan_in_a_selected_param_makes_its_update_nan():
    check_nan_selected(REGULARIZED)


def test_type_filter_masks_live_in_the_optimizer_state():
    """A Variable-type filter resolved in `init` travels in that optimizer's state: two
    trees with the same paths but different Variable types keep their own masks (no
    process-wide memory of earlier `init` calls)."""
    from flax import nnx

    w, s = jnp.ones(3), jnp.ones(3)
    tree_a = {"w": nnx.Param(w), "s": nnx.BatchStat(s)}
    tree_b = {"w": nnx.BatchStat(w), "s": nnx.Param(s)}
    tx = optim.sgd(1.0, weight_decay=0.5, mask=nnx.Param)
    state_a, state_b = tx.init(tree_a), tx.init(tree_b)
    plain = {"w": w, "s": s}
    zeros = jax.tree.map(jnp.zeros_like, plain)
    updates_a, _ = jax.jit(tx.update)(zeros, state_a, plain)
    updates_b, _ = jax.jit(tx.update)(zeros, state_b, plain)
    np.testing.assert_array_equal(updates_a["w"], -0.5)  # decayed: a Param in tree_a
    np.testing.assert_array_equal(updates_a["s"], 0.0)
    np.testing.assert_array_equal(updates_b["w"], 0.0)
    np.testing.assert_array_equal(updates_b["s"], -0.5)
