"""Timing helpers shared by the benchmarks: interleaved runs in one process, medians.

Interleaving (A, B, C, A, B, C, ...) rather than timing each candidate in a block
spreads slow drift of the machine (frequency, other processes) over all of them,
so the ratios are fair even when the absolute times wander.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax


def block(x: Any) -> Any:
    """Waits for every array in ``x`` (JAX arrays, or torch tensors left as they are)."""
    return jax.block_until_ready(x)


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Median seconds per call of each candidate, from :func:`sample_interleaved`."""
    return {name: statistics.median(s) for name, s in samples.items()}


def paired_ratio(samples: Mapping[str, Sequence[float]], numerator: str, denominator: str) -> float:
    """The median over rounds of ``numerator / denominator`` timed in the same round.

    Steadier than the ratio of the two medians: both times of a round share that
    moment's machine state (frequency, neighbours), which the ratio cancels.
    """
    return statistics.median(
        a / b for a, b in zip(samples[numerator], samples[denominator], strict=True)
    )


def balanced_orders(k: int) -> list[list[int]]:
    """Orders of ``k`` candidates in which each one follows each other one equally often.

    A Williams design: over its rows (``k`` for even ``k``, ``2k`` for odd ``k``) every
    candidate takes every position equally often, and every ordered pair of candidates
    is adjacent equally often. A call leaves state behind that slows whatever runs next
    (a torch call's worker threads stay awake for a while, caches hold its data), so
    the order of the candidates must not favour any of them.
    """
    first, low, high = [0], 1, k - 1
    while low <= high:
        first.append(low)
        low += 1
        if low <= high:
            first.append(high)
            high -= 1
    rows = [[(i + r) % k for i in first] for r in range(k)]
    if k % 2:
        rows += [row[::-1] for row in rows]
    return rows


def sample_interleaved(
    candidates: Mapping[str, Callable[[], Any]], **kwargs: Any
) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument callable in every round, timed interleaved.

    ``candidates``: name -> callable; each call must finish its work before it returns
    (wrap JAX calls with :func:`block`; on GPU, torch calls with
    ``torch.cuda.synchronize()``). The keyword arguments are :func:`sample_pooled`'s.

    Returns:
      name -> seconds per call in each round.
    """
    return sample_pooled({name: [fn] for name, fn in candidates.items()}, **kwargs)


def sample_pooled(
    candidates: Mapping[str, Sequence[Callable[[], Any]]],
    *,
    rounds: int = 24,
    min_time: float = 0.02,
    warmup: int = 2,
    settle: float = 0.0,
) -> dict[str, list[float]]:
    """:func:`sample_interleaved` over several instances of each candidate, pooled.

    Each candidate comes as a list of instances: the same computation on separate
    copies of its inputs. Where a buffer happens to lie in memory shifts a
    sub-millisecond operation's time by several percent for the whole run (identical
    calls on two copies of one array differ consistently by up to 5 % on a small
    machine); timing every instance in every round and taking their mean spreads that
    over the candidates instead of handing it to one of them.

    Args:
      candidates: name -> instances (zero-argument callables, see
        :func:`sample_interleaved`).
      rounds: interleaved rounds, the candidates in the orders of
        :func:`balanced_orders` (a multiple of their number keeps the balance exact);
        the median over rounds is reported.
      min_time: each instance is called in a loop of ``n`` calls per round, ``n``
        chosen so that the loop takes at least this many seconds.
      warmup: untimed calls per instance first (compilation, caches).
      settle: seconds to sleep before each timed loop, so that the worker threads a
        previous call left spinning have gone to sleep (OpenBLAS, which NumPy and
        scikit-learn use, busy-waits for about 0.1 s after each call and would
        otherwise take the cores from whichever candidate runs next).

    Returns:
      name -> the mean over its instances of the seconds per call, in each round.
    """
    loops: dict[Callable[[], Any], int] = {}
    for fns in candidates.values():
        for fn in fns:
            for _ in range(warmup):
                fn()
            once = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                once.append(time.perf_counter() - t0)
            loops[fn] = max(1, math.ceil(min_time / max(statistics.median(once), 1e-7)))
    names = list(candidates)
    orders = balanced_orders(len(names))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names[i] for i in orders[r % len(orders)]):
            times = []
            for fn in candidates[name]:
                n = loops[fn]
                fn()  # untimed: brings this call's code and data back into the caches
                if settle:
                    time.sleep(settle)
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times.append((time.perf_counter() - t0) / n)
            samples[name].append(statistics.fmean(times))
    return samples


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of positive numbers (the summary of a column of ratios)."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned numbers (floats printed with 3 significant digits)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)
