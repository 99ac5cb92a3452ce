"""jaxreg.optim against scikit-learn, closed forms and its own documented conventions."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso

from jaxreg import optim
from jaxreg.convergence import minimize
from jaxreg.penalties import l1_penalty, weights_only


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
        opt = optim.proximal_sgd(lr, l1=alpha)
        return minimize(loss, jnp.zeros(10), opt, max_steps=20_000, tol=1e-14)

    for alpha in (0.1, 1.0):
        want = Lasso(alpha, fit_intercept=False, tol=1e-14, max_iter=10**6).fit(X, y).coef_
        w, steps, _ = ista(alpha)
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
    proximal = run(optim.proximal_sgd(0.5, l1=1.0), penalized=False)
    assert np.sum(np.asarray(subgradient) == 0) == 0
    assert np.sum(np.asarray(proximal) == 0) >= 3


def test_group_lasso_proximal_zeroes_whole_groups():
    """Rows of the kernel (input features) with no signal become exactly zero, row by row."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6))
    W_true = np.zeros((6, 3))
    W_true[:2] = rng.standard_normal((2, 3))
    Y = X @ W_true + 0.01 * rng.standard_normal((200, 3))
    opt = optax.chain(optim.sgd(0.1), optim.group_lasso_proximal(0.05, 0.1, axis=-1))
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
    opt = optim.group_lasso_proximal(1.0, 0.1)
    params = jnp.array([[0.0, 0.0], [3.0, 4.0]])

    def moved(p):
        u, _ = opt.update(jnp.zeros_like(p), opt.init(p), p)
        return jnp.sum(optax.apply_updates(p, u))

    assert np.all(np.isfinite(jax.jit(jax.grad(moved))(params)))


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
    with pytest.raises(ValueError, match="`mask`"):
        opt.init({"w": jnp.ones(2), "b": jnp.ones(2)})
    opt = optim.l1_proximal(0.1, 0.1, mask=lambda p: [True])
    with pytest.raises(ValueError, match="`mask`"):
        opt.init({"w": jnp.ones(2)})


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
        (lambda: optim.l1_proximal(-1.0, 0.1), "strength"),
        (lambda: optim.l1_proximal(1.0, -0.1), "learning_rate"),
        (lambda: optim.elastic_net_proximal(1.0, 0.1, l1_ratio=1.5), "l1_ratio"),
        (lambda: optim.group_lasso_proximal(-1.0, 0.1), "strength"),
        (lambda: optim.proximal_sgd(0.1, l1=-1.0), "l1"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_group_lasso_on_a_scalar_leaf_asks_for_a_mask():
    opt = optim.group_lasso_proximal(1.0, 0.1)
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(())}
    with pytest.raises(ValueError, match="mask"):
        opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)


def test_proximal_steps_need_params():
    opt = optim.l1_proximal(1.0, 0.1)
    with pytest.raises(ValueError, match="params"):
        opt.update(jnp.zeros(2), opt.init(jnp.zeros(2)))
