import math

from orderly_platform.percentiles import latency_summary_ms, percentile


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]  # 1..100, shuffled order must not matter
    values.reverse()
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (
        50.0,
        95.0,
        99.0,
    )
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_latency_summary_is_in_milliseconds_and_empty_is_none() -> None:
    assert latency_summary_ms([0.010, 0.020, 0.030, 0.040]) == {
        "p50": 20.0,
        "p95": 40.0,
        "p99": 40.0,
        "max": 40.0,
    }
    assert latency_summary_ms([]) == {"p50": None, "p95": None, "p99": None, "max": None}
