"""Summary statistics shared by the benchmark and the experiments (pure, no I/O)."""

import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by nearest rank on the sorted values (``p`` in 0..100)."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50 (median), p95, p99, mean, min, max; empty input gives ``{"n": 0}``."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }
