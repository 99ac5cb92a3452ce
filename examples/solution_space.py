"""The solution space: the L1 diamond and L2 ball against the loss contours; ridge and lasso paths.

Penalized and constrained regression are the same problem: the minimizer ``w_λ`` of
``L(w) + λ·R(w)`` also minimizes ``L(w)`` over the region ``R(w) ≤ R(w_λ)``, so the
loss contour through ``w_λ`` *touches* that region there. For two weights:

* L1, ``R = ‖w‖₁``: the region is a diamond; the contours (ellipses around the
  least-squares solution) first touch it at a corner, so a weight is exactly 0;
* L2, ``R = ½‖w‖²₂``: the region is a disc, touched on its smooth edge; both
  weights shrink, neither vanishes.

The paths (the optimum as ``λ`` grows) show the same on scikit-learn's diabetes
data (442 patients, 10 standardized features): the ridge trace shrinks every
coefficient smoothly towards 0; along the lasso path the coefficients reach exactly
0 one after another (:func:`jaxreg.solvers.regularization_path`).

Run: ``python -m examples.solution_space [--quick] [--out plots]``
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxreg
from examples import _common, _train

W_TRUE = np.array([2.0, 0.5])
LAMBDA = 1.0  # the same λ for both penalties: L(w) + λ‖w‖₁ and L(w) + λ·½‖w‖²


def two_feature_data(n: int = 100, rho: float = 0.5, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``y = 2x₁ + 0.5x₂ + ε`` with features of correlation ``rho``."""
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, rho], [rho, 1.0]])
    x = rng.multivariate_normal(np.zeros(2), cov, size=n)
    y = x @ W_TRUE + 0.5 * rng.standard_normal(n)
    return x, y


def data_loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``L(w) = 1/(2n)‖y − Xw − b‖²`` (``b`` fitted) for a stack of weights ``w`` ``[..., 2]``."""
    xc, yc = x - x.mean(0, keepdims=True), y - y.mean()
    r = yc - np.einsum("nd,...d->...n", xc, w)
    return 0.5 * np.mean(r**2, axis=-1)


@_train.jit
def _lasso_path(x: jax.Array, y: jax.Array, lams: jax.Array) -> jax.Array:
    return jaxreg.regularization_path(x, y, lams)[0]


@_train.jit
def _ridge_path(x: jax.Array, y: jax.Array, lams: jax.Array) -> jax.Array:
    return jax.vmap(lambda lam: jaxreg.ridge(x, y, x.shape[0] * lam)[0])(lams)


def lasso(x: np.ndarray, y: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """The lasso optima ``argmin L(w) + λ‖w‖₁`` for each ``λ`` (scikit-learn's ``alpha``)."""
    return _solve(_lasso_path, x, y, lam)


def ridge(x: np.ndarray, y: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """The ridge optima ``argmin L(w) + λ·½‖w‖²`` for each ``λ``: scikit-learn's ``alpha = n·λ``."""
    return _solve(_ridge_path, x, y, lam)


def _solve(path, x: np.ndarray, y: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """``path`` (jitted) on float64 arrays; one row of coefficients per ``λ``."""
    args = (np.asarray(x), np.asarray(y), np.atleast_1d(np.asarray(lam, np.float64)))
    return np.asarray(path(*(jnp.asarray(a, jnp.float64) for a in args)))


def _region(ax, kind: str, radius: float, color: str) -> None:
    """The L1 diamond ``‖w‖₁ = r`` or the L2 disc ``‖w‖₂ = r``, filled."""
    t = np.linspace(0, 2 * np.pi, 400)
    u = np.stack([np.cos(t), np.sin(t)], axis=-1)
    if kind == "L1":
        u = u / np.abs(u).sum(axis=-1, keepdims=True)
    ax.fill(radius * u[:, 0], radius * u[:, 1], color=color, alpha=0.25, lw=2, ec=color)


def plot_solution_space(out: Path, *, quick: bool = False) -> Path:
    """The L1 diamond and the L2 disc against the contours of ``L``, with the paths."""
    plt = _common.pyplot()
    x, y = two_feature_data()
    ols = ridge(x, y, 0.0)[0]
    lams = np.geomspace(1e-3, 30.0, 12 if quick else 60)
    g1, g2 = np.meshgrid(np.linspace(-0.6, 2.6, 120), np.linspace(-1.2, 1.4, 100))
    surface = data_loss(np.stack([g1, g2], axis=-1), x, y)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
    specs = [
        ("L1", lasso, "tab:red", r"$\|w\|_1$", r"L1: $\min L(w) + \lambda\|w\|_1$"),
        ("L2", ridge, "tab:blue", r"$\|w\|_2$", r"L2: $\min L(w) + \lambda\frac{1}{2}\|w\|_2^2$"),
    ]
    for ax, (kind, solve, color, norm, title) in zip(axes, specs, strict=True):
        *path, w_lam = solve(x, y, np.append(lams, LAMBDA))  # one solve for all
        path = np.stack(path)
        radius = np.abs(w_lam).sum() if kind == "L1" else np.linalg.norm(w_lam)
        levels = np.sort(data_loss(ols, x, y) + np.geomspace(0.02, 4.0, 8))
        ax.contour(g1, g2, surface, levels=levels, colors="gray", linewidths=0.8)
        ax.contour(g1, g2, surface, levels=[data_loss(w_lam, x, y)], colors="k", linewidths=1.8)
        _region(ax, kind, radius, color)
        ax.plot(path[:, 0], path[:, 1], color=color, lw=1.5, ls="--", label="optimum as λ grows")
        ax.plot(*ols, "k*", ms=12, label=f"least squares ({ols[0]:.2f}, {ols[1]:.2f})")
        ax.plot(
            *w_lam,
            "o",
            color=color,
            ms=9,
            mec="k",
            label=f"optimum at λ={LAMBDA}: ({w_lam[0]:.2f}, {w_lam[1]:.2f})",
        )
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_aspect("equal")
        ax.set(xlim=(-0.6, 2.6), ylim=(-1.2, 1.4), xlabel="$w_1$", ylabel="$w_2$")
        ax.set_title(f"{title}\nregion {norm} ≤ {radius:.2f}, touched by the contour through it")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Solution space of y = 2x₁ + 0.5x₂ + ε (corr(x₁, x₂) = 0.5): "
        "contours of L(w) = ‖y − Xw‖²/2n, L1 diamond vs L2 disc"
    )
    return _common.save(fig, out, "solution_space")


def plot_paths(out: Path, *, quick: bool = False) -> Path:
    """The ridge trace and the lasso path on scikit-learn's diabetes data."""
    from sklearn.datasets import load_diabetes

    plt = _common.pyplot()
    data = load_diabetes()
    x, y = data.data, data.target
    # the smallest λ whose lasso solution is all zeros: max |x_jᵀ(y − ȳ)| / n
    lam_max = np.max(np.abs(x.T @ (y - y.mean()))) / len(y)
    n_lams = 15 if quick else 80
    lasso_lams = lam_max * np.geomspace(1.0, 1e-4, n_lams)
    ridge_lams = np.geomspace(1e2, 1e-6, n_lams)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    paths = [
        (
            ridge_lams,
            ridge(x, y, ridge_lams),
            r"ridge trace: $\min L(w) + \lambda\frac{1}{2}\|w\|^2$",
        ),
        (lasso_lams, lasso(x, y, lasso_lams), r"lasso path: $\min L(w) + \lambda\|w\|_1$"),
    ]
    colors = plt.cm.tab10(np.arange(x.shape[1]))
    for ax, (lams, coefs, title) in zip(axes, paths, strict=True):
        for j, name in enumerate(data.feature_names):
            ax.semilogx(lams, coefs[:, j], color=colors[j], label=name)
        ax.axhline(0, color="k", lw=0.5)
        ax.invert_xaxis()
        ax.set(title=title, xlabel="λ (log scale; weaker regularization →)", ylabel="coefficient")
    # Mark where the number of non-zero lasso coefficients changes.
    nonzero = (paths[1][1] != 0).sum(axis=1)
    for i in np.flatnonzero(np.diff(nonzero)) + 1:
        axes[1].axvline(lasso_lams[i], color="gray", lw=0.5, ls=":")
        axes[1].text(
            lasso_lams[i],
            0.98,
            str(nonzero[i]),
            transform=axes[1].get_xaxis_transform(),
            fontsize=7,
            ha="center",
            va="top",
        )
    axes[1].set_title(paths[1][2] + "\n(top: number of non-zero coefficients)")
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(
        "scikit-learn's diabetes data (442 × 10, centred unit-norm columns), L(w) = ‖y − Xw‖²/2n: "
        "ridge shrinks every coefficient, lasso sets them to exactly 0"
    )
    return _common.save(fig, out, "ridge_lasso_paths")


def main(argv: Sequence[str] | None = None) -> None:
    """Writes ``solution_space.png`` and ``ridge_lasso_paths.png``."""
    args = _common.parser(__doc__.splitlines()[0], trains=False).parse_args(argv)
    _train.use_float64()
    plot_solution_space(args.out, quick=args.quick)
    plot_paths(args.out, quick=args.quick)


if __name__ == "__main__":
    main()
