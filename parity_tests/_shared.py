"""Sizes and statistical checks shared by the parity tests and ``tests/``.

They live here, in the installed package, so that ``python -m parity_tests`` runs
outside the repository (the parity modules never import ``tests.*``); ``tests/``
may import them from here.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

__all__ = [
    "FUSED_FACTORS",
    "BATCH",
    "DENSE",
    "DIM",
    "HIDDEN",
    "INITS",
    "KURTOSIS",
    "LAYOUTS",
    "MULTIPLE",
    "assert_distribution",
    "assert_inverted_dropout",
    "expected_scale",
    "fused_covering_array",
]

#: One set of sizes for every module here and in the parity tests: each new kernel shape
#: costs a compile of the sampler. LLaMA's rule maps DIM to HIDDEN with MULTIPLE.
DIM, HIDDEN, MULTIPLE, BATCH = 6, 16, 16, 64

INITS = ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]
#: (shape, axes, fan_in, fan_out): one dense shape in jaxreg's and torch's layouts (one
#: compiled sampler serves both), a conv kernel in flax's and in torch's layout.
DENSE = (300, 400)
LAYOUTS = {
    "dense": (DENSE, {}, 300, 400),
    "dense_torch": (DENSE, {"in_axis": -1, "out_axis": -2}, 400, 300),
    "conv": ((3, 3, 48, 96), {}, 432, 864),
    "conv_torch": ((96, 48, 3, 3), {"in_axis": 1, "out_axis": 0}, 432, 864),
}

#: Excess over 1 of the kurtosis: Var[s²]/σ⁴ = kurtosis - 1 for a sample variance s².
KURTOSIS = {"uniform": 1.8, "normal": 3.0}


def assert_inverted_dropout(x, y, rate: float, *, sigmas: float = 6.0, rtol: float = 1e-6) -> None:
    """``y`` is inverted dropout of ``x`` (no zero entries): the keep rate is ``1 - rate``
    within ``sigmas`` binomial standard deviations, and every kept entry is ``x / (1 - rate)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    assert np.all(x != 0)
    kept = y != 0
    n = x.size
    assert abs(kept.mean() - (1 - rate)) < sigmas * math.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=rtol)
    # E[y] = x: the mean of y - x is zero within its standard deviation
    spread = np.sqrt(rate / (1 - rate) * np.mean(x**2) / n)
    assert abs(np.mean(y - x)) < sigmas * spread


def assert_distribution(samples, distribution: str, scale: float, *, sigmas: float = 6.0) -> None:
    """``samples`` are iid ``U(-scale, scale)`` or ``N(0, scale²)``: KS test, mean, variance, range.

    Random streams are never compared element by element; only these statistics are.
    """
    w = np.asarray(samples, dtype=np.float64).ravel()
    n = w.size
    if distribution == "uniform":
        exact = scipy.stats.uniform(loc=-scale, scale=2 * scale)
        variance = scale**2 / 3
        assert np.max(np.abs(w)) <= scale * (1 + 1e-6), "a sample lies outside the bound"
        # P(max |w| < scale·(1 - 20/n)) = (1 - 20/n)^n ~ e^-20
        assert np.max(np.abs(w)) >= scale * (1 - 20 / n), "the bound is never approached"
    else:
        exact = scipy.stats.norm(loc=0.0, scale=scale)
        variance = scale**2
        # untruncated (torch): P(all |w| < 2σ) = 0.954^n is ~0 for large n
        assert np.max(np.abs(w)) > 3 * scale, "the normal looks truncated"
    assert scipy.stats.kstest(w, exact.cdf).pvalue > 1e-3
    assert abs(np.mean(w)) < sigmas * math.sqrt(variance / n)
    rel_sd = math.sqrt((KURTOSIS[distribution] - 1) / n)
    assert abs(np.var(w) / variance - 1) < sigmas * rel_sd


def expected_scale(name: str, gain: float, fan_in: int, fan_out: int, mode: str = "fan_in"):
    """``(distribution, bound or std)`` from torch's formulas."""
    fan = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    std = {
        "xavier": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "kaiming": gain / math.sqrt(fan),
    }[name.split("_")[0]]
    distribution = name.split("_")[1]
    return distribution, std * math.sqrt(3.0) if distribution == "uniform" else std


#: The options of the fused losses, as factors of a covering array.
FUSED_FACTORS = (
    "bias",
    "weight",
    "token_weight",
    "label_smoothing",
    "z_loss",
    "softcap",
    "num_valid_classes",
    "soft",
    "return_aux",
)
#: Distinct 3-subsets of {1..5}, one per factor: row r has a factor on when r is in its set.
_SUBSETS = (
    {1, 2, 3},
    {1, 2, 4},
    {1, 2, 5},
    {1, 3, 4},
    {1, 3, 5},
    {1, 4, 5},
    {2, 3, 4},
    {2, 3, 5},
    {2, 4, 5},
)


def fused_covering_array(rows: range) -> list[frozenset[str]]:
    """Rows of options in which every pair of options meets in all four on/off
    combinations (rows 1..5; row 0 has every option off): 6 rows instead of 2**9."""
    return [
        frozenset(f for f, s in zip(FUSED_FACTORS, _SUBSETS, strict=True) if r in s) for r in rows
    ]
