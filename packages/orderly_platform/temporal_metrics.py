"""The Temporal SDK's own metrics on the process's ``/metrics``, beside orderly's.

The SDK's core (Rust) records its metrics (requests, polls, task latencies, slots, workflow
completions, and what workflows record through ``workflow.metric_meter()``) into a
``MetricBuffer``; this module drains it into a prometheus_client collector. Chosen over the
SDK's ``PrometheusConfig``, which serves its own HTTP endpoint: that needs a second port per
process (every service of ``orderly up`` shares one host) and a second scrape target per pod,
whereas this way a service has one ``/metrics`` with everything.

Names are the SDK's (``temporal_request``, ``temporal_workflow_completed``...), with
Prometheus' suffixes: ``_total`` on counters, ``_seconds`` on durations (reported in seconds).
Labels are the SDK's attributes (namespace, task_queue, workflow_type, activity_type...).

One ``Runtime`` per process (``temporal_runtime()``): each has its own thread pool, and the
collector registers once. A thread drains the buffer every second, so it never fills (it
drops updates when full) whether or not anyone scrapes; a scrape drains it first, too.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import REGISTRY
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from orderly_platform.logs import get_logger
from orderly_platform.metrics import LATENCY_BUCKETS, LONG_WAIT_BUCKETS

log = get_logger(__name__)

# Far more than a busy second produces (a saga makes a few hundred updates).
BUFFER_SIZE: Final = 200_000
DRAIN_INTERVAL_S: Final = 1.0
# Requests take a millisecond, workflows (sagas) up to hours: one set of bounds for both.
BUCKETS: Final = tuple(sorted({*LATENCY_BUCKETS, *LONG_WAIT_BUCKETS}))

LabelKey = tuple[tuple[str, str], ...]
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")


@dataclass
class _Histogram:
    buckets: list[int]
    sum: float = 0.0
    count: int = 0


@dataclass
class _Family:
    name: str
    documentation: str
    kind: str  # "counter", "gauge" or "histogram"
    values: dict[LabelKey, float] = field(default_factory=dict)
    histograms: dict[LabelKey, _Histogram] = field(default_factory=dict)


class BufferedTemporalMetrics(Collector):
    """Folds the buffer's updates (counter deltas, gauge values, histogram observations)
    into Prometheus families."""

    def __init__(self, buffer: MetricBuffer, buckets: Sequence[float] = BUCKETS):
        self.buffer = buffer
        self.bounds = list(buckets)
        self._families: dict[str, _Family] = {}
        # By the SDK's metric name and attribute items: few and fixed, so both caches stay
        # small, and a lookup costs less than building a family name or label key again.
        self._family_of: dict[str, _Family] = {}
        self._labels_of: dict[tuple[tuple[str, object], ...], LabelKey] = {}
        self._lock = threading.Lock()

    def drain(self) -> int:
        """Fold in what the buffer holds; returns how many updates that was."""
        with self._lock:
            updates = self.buffer.retrieve_updates()
            for update in updates:
                self._fold(update)
            return len(updates)

    def _fold(self, update: BufferedMetricUpdate) -> None:
        metric = update.metric
        family = self._family_of.get(metric.name) or self._family(update)
        items = tuple(update.attributes.items())
        labels = self._labels_of.get(items)
        if labels is None:
            labels = self._labels_of[items] = _label_key(update.attributes)
        if family.kind == "counter":
            family.values[labels] = family.values.get(labels, 0.0) + update.value
        elif family.kind == "gauge":
            family.values[labels] = update.value
        else:
            histogram = family.histograms.get(labels)
            if histogram is None:
                histogram = family.histograms[labels] = _Histogram([0] * (len(self.bounds) + 1))
            histogram.buckets[bisect.bisect_left(self.bounds, update.value)] += 1
            histogram.sum += update.value
            histogram.count += 1

    def _family(self, update: BufferedMetricUpdate) -> _Family:
        metric = update.metric
        kind = {
            BUFFERED_METRIC_KIND_COUNTER: "counter",
            BUFFERED_METRIC_KIND_HISTOGRAM: "histogram",
        }.get(metric.kind, "gauge")
        name = metric.name.removesuffix("_total") if kind == "counter" else metric.name
        if metric.unit == "s" and not name.endswith("_seconds"):
            name += "_seconds"
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(name, metric.description or name, kind)
        self._family_of[metric.name] = family
        return family

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            exported = [_exported(family, self.bounds) for family in self._families.values()]
        yield from exported


def _label_key(attributes: Mapping[str, object]) -> LabelKey:
    return tuple(
        sorted(
            (
                _INVALID_LABEL.sub("_", key),
                str(value).lower() if isinstance(value, bool) else str(value),
            )
            for key, value in attributes.items()
        )
    )


def _exported(family: _Family, bounds: list[float]) -> Metric:
    metric = Metric(family.name, family.documentation, family.kind)
    if family.kind == "counter":
        for labels, value in family.values.items():
            metric.add_sample(f"{family.name}_total", dict(labels), value)
    elif family.kind == "gauge":
        for labels, value in family.values.items():
            metric.add_sample(family.name, dict(labels), value)
    for labels, histogram in family.histograms.items():
        cumulative = 0
        for bound, count in zip([*bounds, float("inf")], histogram.buckets, strict=True):
            cumulative += count
            le = {"le": floatToGoString(bound)}  # type: ignore[no-untyped-call]
            metric.add_sample(f"{family.name}_bucket", {**dict(labels), **le}, cumulative)
        metric.add_sample(f"{family.name}_sum", dict(labels), histogram.sum)
        metric.add_sample(f"{family.name}_count", dict(labels), histogram.count)
    return metric


@functools.cache
def temporal_runtime() -> Runtime:
    """The process's Temporal runtime, its metrics exported on ``/metrics``. Pass it to
    ``Client.connect(..., runtime=...)``; workers use their client's runtime."""
    buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    collector = BufferedTemporalMetrics(buffer)
    REGISTRY.register(collector)
    threading.Thread(
        target=_drain_forever, args=(collector,), name="temporal-metrics", daemon=True
    ).start()
    return runtime


def _drain_forever(collector: BufferedTemporalMetrics) -> None:
    while True:  # as long as the process: the runtime is never closed before it exits
        time.sleep(DRAIN_INTERVAL_S)
        try:
            collector.drain()
        except Exception:  # a bug here must not end the draining: the buffer would fill
            log.exception("draining Temporal's metrics failed")
