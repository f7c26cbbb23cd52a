from typing import Any

from cli.load import FAILED, UNFINISHED, Outcome, _lines, _report


def report(outcomes: list[Outcome]) -> dict[str, Any]:
    return _report(
        outcomes, 2.0, run="r1", mode="closed", concurrency=4, rate=None, duration_s=None
    )


def test_the_report_sums_outcomes_and_measures_only_what_happened() -> None:
    confirmed = [
        Outcome("CONFIRMED", accept_s=0.01 * n, accepted_at_s=0.5, end_to_end_s=0.1 * n)
        for n in range(1, 9)
    ]
    rejected = Outcome(
        "REJECTED", accept_s=0.02, accepted_at_s=1.0, end_to_end_s=0.3, reason="out of stock"
    )
    unfinished = Outcome(UNFINISHED, accept_s=0.03, accepted_at_s=0.25, error="order x did not end")
    refused = Outcome(FAILED, error="POST /orders: 503")

    figures = report([*confirmed, rejected, unfinished, refused])

    assert figures["orders"] == 11
    assert figures["outcomes"] == {"CONFIRMED": 8, "FAILED": 1, "PENDING": 1, "REJECTED": 1}
    assert figures["reasons"] == {"out of stock": 1}
    assert figures["errors"] == ["order x did not end", "POST /orders: 503"]
    # 9 orders ended in the 2 s run; 10 were accepted in the 1 s until the last accept.
    assert (figures["orders_per_s"], figures["accepted_per_s"]) == (4.5, 10.0)
    assert figures["end_to_end_latency_ms"] == {
        "p50": 400.0,
        "p95": 800.0,
        "p99": 800.0,
        "max": 800.0,
    }
    assert figures["accept_latency_ms"]["max"] == 80.0


def test_a_run_where_nothing_was_accepted_reports_no_latency() -> None:
    figures = report([Outcome(FAILED, error="refused")] * 3)

    assert figures["outcomes"] == {"FAILED": 3} and figures["orders_per_s"] == 0.0
    assert figures["accept_latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None}
    lines = _lines(figures)
    assert ["accept", "-", "-", "-", "-"] in [line.split() for line in lines]
    assert "error: refused" in lines
