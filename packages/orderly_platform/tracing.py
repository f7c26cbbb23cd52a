"""OpenTelemetry tracing: off unless the environment turns it on.

On, one trace follows an order from ``POST /orders`` through the streams into the saga and
its activities: the aiohttp server instrumentation opens the server span, appends write its W3C
``traceparent`` into the event envelope (the CloudEvents distributed-tracing extension),
consumers continue the trace from there, and Temporal's TracingInterceptor carries it
through workflow starts, signals and activities.

The standard variables decide (https://opentelemetry.io/docs/specs/otel/configuration/):
``OTEL_TRACES_EXPORTER`` = ``otlp`` (to ``OTEL_EXPORTER_OTLP_ENDPOINT``, HTTP/protobuf) or
``console``; unset or ``none`` leaves tracing off. ``OTEL_SERVICE_NAME`` overrides the
service name. Off, every function here returns at its first line: no envelope carries a
``traceparent``, no span is made, no interceptor or middleware is installed.
Turn it on before making the aiohttp applications and Temporal clients.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

EXPORTER_VARIABLE = "OTEL_TRACES_EXPORTER"
EXPORTERS = ("otlp", "console", "none")

_TRACER_NAME = "orderly"
_propagator = TraceContextTextMapPropagator()


class _Switch:
    """Whether this process traces: set once at start, read on every append."""

    on = False


_tracing = _Switch()


class TracingSettingsError(ValueError):
    """An ``OTEL_*`` variable names something orderly cannot export to."""


def configure_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on when ``OTEL_TRACES_EXPORTER`` asks for it; True when it is on."""
    environ = os.environ if environ is None else environ
    # The specification allows a list; orderly exports to one place.
    exporter_name = environ.get(EXPORTER_VARIABLE, "none").strip().lower() or "none"
    if exporter_name not in EXPORTERS:
        raise TracingSettingsError(
            f"{EXPORTER_VARIABLE}: {exporter_name!r} is not one of {', '.join(EXPORTERS)}"
        )
    if exporter_name == "none":
        return False
    # Imported here: a process that does not trace never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_ENDPOINT and friends
    else:
        exporter = ConsoleSpanExporter()
    name = environ.get("OTEL_SERVICE_NAME") or f"orderly-{service_name.replace(' ', '-')}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    # Batched off the request path; flushed at exit by the provider's own atexit hook.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    enable_tracing(provider)
    return True


def enable_tracing(provider: TracerProvider) -> None:
    """Trace through ``provider`` (tests pass one with an in-memory exporter).

    Every aiohttp application made afterwards gets the OpenTelemetry server middleware in
    front of its own: the instrumentor swaps ``web.Application`` for a subclass adding it.
    """
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    trace.set_tracer_provider(provider)
    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    _tracing.on = True


def tracing_enabled() -> bool:
    return _tracing.on


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, for an event about to be appended."""
    if not _tracing.on:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued_trace(
    traceparent: str | None, name: str, attributes: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Handle a consumed event inside a span that continues the trace its producer started.

    Without tracing, or for an event appended by an untraced producer, it does nothing.
    """
    if not _tracing.on or traceparent is None:
        yield
        return
    parent = _propagator.extract({"traceparent": traceparent})
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=dict(attributes or {})
    ):
        yield


def temporal_interceptors() -> list[Interceptor]:
    """For ``Client.connect``: workers made with that client use them too."""
    if not _tracing.on:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]
