"""The Temporal SDK's metrics, drained from its buffer into Prometheus' text format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from temporalio.client import Client
from temporalio.runtime import MetricBuffer, MetricBufferDurationFormat, Runtime, TelemetryConfig

from orderly_platform.embedded import TemporalServer
from orderly_platform.scraped import samples, total
from orderly_platform.temporal_metrics import BufferedTemporalMetrics, temporal_runtime
from orderly_platform.testing import temporal_server

__all__ = ["temporal_server"]


@pytest.fixture(scope="module")
def buffered() -> tuple[Runtime, BufferedTemporalMetrics, CollectorRegistry]:
    buffer = MetricBuffer(1000, MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    registry = CollectorRegistry()
    collector = BufferedTemporalMetrics(buffer, buckets=[0.1, 1.0, 10.0])
    registry.register(collector)
    return runtime, collector, registry


def test_counters_gauges_and_histograms_become_prometheus_series(
    buffered: tuple[Runtime, BufferedTemporalMetrics, CollectorRegistry],
) -> None:
    runtime, _, registry = buffered
    meter = runtime.metric_meter
    counter = meter.create_counter("orderly_test_outcomes", "outcomes")
    counter.add(2, {"outcome": "CONFIRMED"})
    counter.add(3, {"outcome": "CONFIRMED"})
    counter.add(1, {"outcome": "REJECTED", "eager": True})
    gauge = meter.create_gauge("orderly_test_slots", "slots")
    gauge.set(7, {"queue": "q"})
    gauge.set(4, {"queue": "q"})
    histogram = meter.create_histogram_timedelta("orderly_test_wait", "waits", "duration")
    for seconds in (0.05, 0.5, 0.7, 30.0):
        histogram.record(timedelta(seconds=seconds), {"outcome": "CONFIRMED"})

    scraped = samples(generate_latest(registry).decode())

    assert total(scraped, "orderly_test_outcomes_total", outcome="CONFIRMED") == 5
    assert total(scraped, "orderly_test_outcomes_total", outcome="REJECTED", eager="true") == 1
    assert total(scraped, "orderly_test_slots", queue="q") == 4  # a gauge keeps the last value
    # Durations come in seconds and say so in their name.
    wait = "orderly_test_wait_seconds"
    assert [total(scraped, f"{wait}_bucket", le=le) for le in ("0.1", "1.0", "10.0", "+Inf")] == [
        1,
        3,
        3,
        4,
    ]
    assert total(scraped, f"{wait}_count") == 4
    assert total(scraped, f"{wait}_sum") == pytest.approx(31.25)


def test_a_drain_folds_in_what_came_since_the_last(
    buffered: tuple[Runtime, BufferedTemporalMetrics, CollectorRegistry],
) -> None:
    runtime, collector, registry = buffered
    counter = runtime.metric_meter.create_counter("orderly_test_drained", "drained")
    counter.add(1)
    assert collector.drain() == 1
    assert collector.drain() == 0
    counter.add(4)
    scraped = samples(generate_latest(registry).decode())
    assert total(scraped, "orderly_test_drained_total") == 5


@pytest.fixture
async def client(temporal_server: TemporalServer) -> AsyncIterator[Client]:
    yield await Client.connect(temporal_server.address, runtime=temporal_runtime())


async def test_the_process_runtime_exports_the_sdk_metrics_to_the_default_registry(
    client: Client,
) -> None:
    assert temporal_runtime() is temporal_runtime()  # one per process
    await client.count_workflows()

    scraped = samples(generate_latest(REGISTRY).decode())
    assert (total(scraped, "temporal_request_total", operation="GetSystemInfo") or 0) >= 1
    assert (total(scraped, "temporal_request_latency_seconds_count") or 0) >= 1
