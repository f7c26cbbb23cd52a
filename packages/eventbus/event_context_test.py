"""What consumers bind per event (ids on log lines), and the trace context appends carry."""

from __future__ import annotations

import asyncio
import io

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from contracts import OrderConfirmed, decode_envelope, encode_envelope, new_envelope
from eventbus.appender import EventAppender, PendingAppend
from eventbus.coalescing import CoalescingAppender
from eventbus.event_context import about_entry, handling_event
from eventbus.testing import stock_received
from eventbus.topology import Topology
from orderly_platform import tracing
from orderly_platform.logs import get_logger
from orderly_platform.testing import json_log_lines, log_output

__all__ = ["log_output"]  # the fixture

log = get_logger("test")
TOPOLOGY = Topology(partitions=2)


def test_an_order_event_puts_its_ids_on_the_lines_logged_while_it_is_handled(
    log_output: io.StringIO,
) -> None:
    envelope = new_envelope(
        OrderConfirmed(order_id="o-1"), source="/t", subject="o-1", correlation_id="c-1"
    )
    with handling_event(envelope, "saga-bridge"):
        log.info("handling")
    log.info("between events")
    [handling] = json_log_lines(log_output, "handling")
    assert (handling["event_id"], handling["order_id"], handling["correlation_id"]) == (
        envelope.id,
        "o-1",
        "c-1",
    )
    [between] = json_log_lines(log_output, "between events")
    assert not {"event_id", "order_id", "correlation_id"} & set(between)


def test_an_event_of_another_aggregate_names_its_subject_not_an_order(
    log_output: io.StringIO,
) -> None:
    with about_entry(encode_envelope(stock_received("SKU-9"))):
        log.info("failed")
    [line] = json_log_lines(log_output, "failed")
    assert line["subject"] == "SKU-9" and "order_id" not in line


def test_an_entry_that_does_not_decode_is_logged_without_ids(log_output: io.StringIO) -> None:
    with about_entry(b"not a cloudevent"):
        log.info("failed")
    [line] = json_log_lines(log_output, "failed")
    assert "event_id" not in line


async def test_without_tracing_no_envelope_carries_a_traceparent(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing._tracing, "on", False)
    appended = await EventAppender(redis, TOPOLOGY).append(stock_received())
    [(_, fields)] = await redis.xrange(appended.stream)
    assert b"traceparent" not in fields[b"event"]


async def test_with_tracing_each_append_carries_its_callers_span(redis: aioredis.Redis) -> None:
    tracing.enable_tracing(TracerProvider())
    coalescing = CoalescingAppender(EventAppender(redis, TOPOLOGY))
    tracer = trace.get_tracer("test")

    async def append_in_a_span(sku: str) -> str:
        with tracer.start_as_current_span(f"request for {sku}") as span:
            context = span.get_span_context()
            # Coalesced: another task encodes the batch, yet each event names its caller.
            [appended] = await coalescing.append_batch([PendingAppend(stock_received(sku))])
        assert appended.duplicate is False
        return f"{context.span_id:016x}"

    # Concurrent, so both share one flush, in a task made in the first caller's context.
    skus = ("SKU-1", "SKU-2")
    spans = dict(zip(skus, await asyncio.gather(*map(append_in_a_span, skus)), strict=True))
    assert coalescing.flushes == 1
    for partition in TOPOLOGY.partitions_of("catalog"):
        for _, fields in await redis.xrange(partition.stream):
            envelope = decode_envelope(fields[b"event"])
            assert envelope.traceparent is not None
            assert envelope.traceparent.split("-")[2] == spans[envelope.subject]
