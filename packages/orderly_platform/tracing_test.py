"""Tracing: off by default and then free; on, a consumed event's span continues the trace
its producer started."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orderly_platform import tracing
from orderly_platform.testing import in_memory_spans  # noqa: F401 (the `spans` fixture)
from orderly_platform.tracing import (
    TracingSettingsError,
    configure_tracing,
    continued_trace,
    current_traceparent,
    temporal_interceptors,
)


@pytest.mark.parametrize("environ", [{}, {"OTEL_TRACES_EXPORTER": "none"}])
def test_off_unless_the_environment_asks(environ: dict[str, str]) -> None:
    assert configure_tracing("order service", environ) is False


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(TracingSettingsError, match="OTEL_TRACES_EXPORTER: 'jaeger'"):
        configure_tracing("order service", {"OTEL_TRACES_EXPORTER": "jaeger"})


def test_off_nothing_is_propagated_or_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing._tracing, "on", False)
    with trace.get_tracer("t").start_as_current_span("a span of someone else's") as outer:
        assert current_traceparent() is None
        with continued_trace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x"):
            assert trace.get_current_span() is outer  # no span of its own
    assert temporal_interceptors() == []


def test_a_consumer_span_is_a_child_of_the_span_that_appended(
    spans: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("t")
    with tracer.start_as_current_span("POST /orders") as producer:
        traceparent = current_traceparent()
    assert traceparent is not None
    context = producer.get_span_context()
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")

    with continued_trace(traceparent, "saga-bridge orderly.OrderPlaced.v2", {"k": "v"}):
        pass
    consumer = next(s for s in spans.get_finished_spans() if s.name.startswith("saga-bridge"))
    assert consumer.kind == trace.SpanKind.CONSUMER
    assert consumer.parent is not None and consumer.parent.span_id == context.span_id
    assert consumer.context is not None and consumer.context.trace_id == context.trace_id
    assert consumer.attributes is not None and consumer.attributes["k"] == "v"


def test_an_event_without_a_traceparent_makes_no_span(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with continued_trace(None, "inventory-service x"):
        pass
    assert spans.get_finished_spans() == ()


def test_on_temporal_clients_get_the_tracing_interceptor(spans: InMemorySpanExporter) -> None:
    [interceptor] = temporal_interceptors()
    assert type(interceptor).__name__ == "TracingInterceptor"
