"""jaxreg.proximal against scikit-learn's Lasso, closed forms and its own conventions.

The table-driven checks (mask forms, traced and injected hyperparameters, NaN) are the
ones of tests/test_optim.py, run on the proximal optimizers' tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso

from jaxreg import optim, proximal
from jaxreg.convergence import minimize
from jaxreg.penalties import l1_penalty
from tests.test_optim import (
    LR,
    NAN_PARAMS,
    Hyperparameters,
    Regularized,
    check_inject_hyperparams,
    check_mask_form,
    check_nan_masked_out,
    check_nan_selected,
    check_traced_hyperparameters,
    check_traced_masks,
    mask_form_updates,
    two_updates,
)
from tests.test_penalties import MASKS


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X - X.mean(0), y - y.mean()


def _lasso_data_term(w, X, y):
    return 0.5 * jnp.mean((X @ w - y) ** 2)


def test_proximal_sgd_reaches_sklearn_lasso_with_the_same_exact_zeros():
    """ISTA's fixed point is Lasso's solution (1/(2n)‖y - Xw‖² + α‖w‖₁), zeros included."""
    X, y = _diabetes()
    lr = len(y) / np.linalg.eigvalsh(X.T @ X)[-1]  # 1/L
    loss = functools.partial(_lasso_data_term, X=X, y=y)

    @jax.jit
    def ista(alpha):
        opt = proximal.proximal_sgd(lr, l1=alpha)
        return minimize(loss, jnp.zeros(10), opt, max_steps=20_000, tol=1e-14)

    for alpha in (0.1, 1.0):
        want = Lasso(alpha, fit_intercept=False, tol=1e-14, max_iter=10**6).fit(X, y).coef_
        w, steps, _, _ = ista(alpha)
        assert int(steps) < 20_000
        np.testing.assert_allclose(w, want, rtol=0, atol=1e-10 * np.max(np.abs(want)))
        np.testing.assert_array_equal(np.asarray(w) == 0, want == 0)
        assert np.sum(want == 0) >= 3  # the comparison is about sparsity


def test_subgradient_l1_never_gives_exact_zeros_but_the_prox_does():
    X, y = _diabetes()
    loss = functools.partial(_lasso_data_term, X=X, y=y)

    def run(opt, penalized):
        def body(carry, _):
            w, s = carry
            g = jax.grad(lambda w: loss(w) + (1.0 * l1_penalty(w) if penalized else 0.0))(w)
            u, s = opt.update(g, s, w)
            return (optax.apply_updates(w, u), s), None

        w0 = jnp.zeros(10)
        return jax.lax.scan(body, (w0, opt.init(w0)), length=500)[0][0]

    subgradient = run(optim.sgd(0.5), penalized=True)
    prox = run(proximal.proximal_sgd(0.5, l1=1.0), penalized=False)
    assert np.sum(np.asarray(subgradient) == 0) == 0
    assert np.sum(np.asarray(prox) == 0) >= 3


def test_group_lasso_proximal_zeroes_whole_groups():
    """Rows of the kernel (input features) with no signal become exactly zero, row by row."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6))
    W_true = np.zeros((6, 3))
    W_true[:2] = rng.standard_normal((2, 3))
    Y = X @ W_true + 0.01 * rng.standard_normal((200, 3))
    opt = optax.chain(optim.sgd(0.1), proximal.group_lasso_proximal(0.05, 0.1, axis=-1))
    loss = lambda W: 0.5 * jnp.mean(jnp.sum((X @ W - Y) ** 2, axis=-1))  # noqa: E731

    def body(carry, _):
        W, s = carry
        u, s = opt.update(jax.grad(loss)(W), s, W)
        return (optax.apply_updates(W, u), s), None

    W0 = jnp.asarray(0.1 * rng.standard_normal((6, 3)))
    W = np.asarray(jax.lax.scan(body, (W0, opt.init(W0)), length=300)[0][0])
    zero_rows = np.all(W == 0, axis=1)
    np.testing.assert_array_equal(zero_rows, [False, False, True, True, True, True])
    assert np.all(W[:2] != 0)


def test_group_prox_update_has_finite_gradients_at_a_zero_group():
    opt = proximal.group_lasso_proximal(1.0, 0.1)
    params = jnp.array([[0.0, 0.0], [3.0, 4.0]])

    def moved(p):
        u, _ = opt.update(jnp.zeros_like(p), opt.init(p), p)
        return jnp.sum(optax.apply_updates(p, u))

    assert np.all(np.isfinite(jax.jit(jax.grad(moved))(params)))


def test_mask_structure_mismatch_names_mask():
    opt = proximal.l1_proximal(0.1, 0.1, mask=lambda p: [True])
    with pytest.raises(ValueError, match=r"`mask` has no entry for params\['w'\]"):
        opt.init({"w": jnp.ones(2)})


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: proximal.l1_proximal(-1.0, 0.1), "strength"),
        (lambda: proximal.l1_proximal(1.0, -0.1), "learning_rate"),
        (lambda: proximal.elastic_net_proximal(1.0, 0.1, l1_ratio=1.5), "l1_ratio"),
        (lambda: proximal.group_lasso_proximal(-1.0, 0.1), "strength"),
        (lambda: proximal.proximal_sgd(0.1, l1=-1.0), "l1"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_group_lasso_on_a_scalar_leaf_asks_for_a_mask():
    opt = proximal.group_lasso_proximal(1.0, 0.1)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(())}
    with pytest.raises(ValueError, match="mask"):
        opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)


def test_proximal_steps_need_params():
    opt = proximal.l1_proximal(1.0, 0.1)
    with pytest.raises(ValueError, match="params"):
        opt.update(jnp.zeros(2), opt.init(jnp.zeros(2)))


# --------------------------------------------------------------------------- masks


def _sgd_then(prox: Callable[..., optax.GradientTransformation], strength: float, **kw):
    return (
        lambda mask: optax.chain(optim.sgd(LR, momentum=0.9), prox(strength, LR, mask=mask, **kw)),
        optim.sgd(LR, momentum=0.9),
    )


#: name: (make(mask), the optimizer without its regularizer), for the proximal optimizers.
REGULARIZED: dict[str, Regularized] = {
    "l1_proximal": _sgd_then(proximal.l1_proximal, 0.5),
    "elastic_net_proximal": _sgd_then(proximal.elastic_net_proximal, 0.5, l1_ratio=0.7),
    "group_lasso_proximal": _sgd_then(proximal.group_lasso_proximal, 2.0),
    "proximal_sgd": (
        lambda mask: proximal.proximal_sgd(LR, l1=0.5, l2=0.3, mask=mask),
        optim.sgd(LR),
    ),
}


def np_group_prox_update(z, p, selected, threshold):
    """Block soft-thresholding of the selected entries (rows, the last axis reduced), the
    unselected entries count as zeros and keep ``z``; returned as an update from ``p``."""
    zm = np.where(selected, z, 0.0)
    norm = np.linalg.norm(zm, axis=-1, keepdims=True)
    scale = np.where(norm <= threshold, 0.0, 1 - threshold / np.where(norm == 0, 1.0, norm))
    return np.where(selected, zm * scale, z) - p


@pytest.mark.parametrize("form", list(MASKS))
@pytest.mark.parametrize("name", [n for n in REGULARIZED if n != "group_lasso_proximal"])
def test_every_mask_form_equals_the_explicit_selection(name, form):
    check_mask_form(REGULARIZED[name], form)


@pytest.mark.parametrize("form", list(MASKS))
def test_every_mask_form_selects_the_group_lasso_entries(form):
    """Groups over the selected entries (a NumPy oracle); the others keep their step."""
    params, selected, got, _, off = mask_form_updates(REGULARIZED["group_lasso_proximal"], form)
    threshold = LR * 2.0 * 2.0  # lr · strength · √4 (every leaf's last axis has size 4)
    expected = jax.tree.map(
        lambda p, u, s: np_group_prox_update(p + np.asarray(u), p, s, threshold),
        params,
        off,
        selected,
    )
    for p, a, b in zip(*map(jax.tree.leaves, (params, got, expected)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(p + np.asarray(a) == 0, p + b == 0)  # exact zeros


def test_traced_elementwise_masks_equal_concrete_ones():
    check_traced_masks(REGULARIZED)


# --------------------------------------------------------------------------- hyperparameters


def l1_after_sgd(learning_rate, strength):
    return optax.chain(
        optim.sgd(learning_rate, momentum=0.5), proximal.l1_proximal(strength, learning_rate)
    )


def elastic_net_after_sgd(learning_rate, strength, l1_ratio):
    prox = proximal.elastic_net_proximal(strength, learning_rate, l1_ratio=l1_ratio)
    return optax.chain(optim.sgd(learning_rate, momentum=0.5), prox)


def group_lasso_after_sgd(learning_rate, strength):
    prox = proximal.group_lasso_proximal(strength, learning_rate)
    return optax.chain(optim.sgd(learning_rate, momentum=0.5), prox)


#: name: (factory, hyperparameter settings); zeros included, where torch skips work.
HYPERPARAMETERS: dict[str, Hyperparameters] = {
    "l1_proximal": (
        l1_after_sgd,
        [dict(learning_rate=0.1, strength=0.5), dict(learning_rate=0.1, strength=0.0)],
    ),
    "elastic_net_proximal": (
        elastic_net_after_sgd,
        [
            dict(learning_rate=0.1, strength=0.5, l1_ratio=r)
            for r in (0.7, 0.0, 1.0)  # l1 or l2 strength exactly 0
        ],
    ),
    "group_lasso_proximal": (
        group_lasso_after_sgd,
        [dict(learning_rate=0.1, strength=2.0), dict(learning_rate=0.1, strength=0.0)],
    ),
    "proximal_sgd": (
        proximal.proximal_sgd,
        [dict(learning_rate=0.1, l1=0.5, l2=0.3), dict(learning_rate=0.1, l1=0.0, l2=0.0)],
    ),
}


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_traced_hyperparameters_equal_python_floats_without_retracing(name):
    check_traced_hyperparameters(*HYPERPARAMETERS[name])


@pytest.mark.parametrize("name", list(HYPERPARAMETERS))
def test_inject_hyperparams_equals_python_floats(name):
    check_inject_hyperparams(*HYPERPARAMETERS[name])


# --------------------------------------------------------------------------- NaN


def test_nan_in_masked_out_params_takes_no_part():
    check_nan_masked_out(REGULARIZED)


def test_nan_in_a_selected_param_makes_its_update_nan():
    check_nan_selected(REGULARIZED)
    # Group lasso: the NaN takes the computing branch, so its whole group is NaN.
    params, grads = {"w": NAN_PARAMS["w"]}, {"w": jnp.full((2, 3), 0.3)}
    updates = two_updates(REGULARIZED["group_lasso_proximal"][0](None), params, grads)
    assert np.all(np.isnan(np.asarray(updates["w"][0])))
