"""Latency percentiles as the load generator and the benchmarks report them."""

from __future__ import annotations

import math
from collections.abc import Sequence

# The quantiles every latency report shows, by the name it shows them under.
REPORTED = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def percentile(values: Sequence[float], q: float) -> float:
    """The value below which a share ``q`` of ``values`` falls (nearest rank); NaN if none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of latencies given in seconds, in milliseconds rounded to 0.1;
    None for each when there are none (JSON has no NaN)."""
    ordered = sorted(seconds)
    summary: dict[str, float | None] = {
        name: round(percentile(ordered, q) * 1000, 1) if ordered else None for name, q in REPORTED
    }
    summary["max"] = round(ordered[-1] * 1000, 1) if ordered else None
    return summary
