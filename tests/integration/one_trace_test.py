"""With tracing on, one trace goes from ``POST /orders`` through the streams and the saga to
its activities: the order service, the bridge, the inventory service and the Temporal
workers run here, in-process, against real Redis and Temporal, and export their spans to
memory.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from contracts import EVENT_TYPES, InventoryReservationRequested, OrderPlaced, decode_envelope
from contracts.commands import CapturePayment
from contracts.payments import CAPTURE_PAYMENT, PAYMENTS_TASK_QUEUE, PaymentOutcome
from eventbus.appender import EventAppender
from eventbus.consumer import ConsumerConfig, Handler, StreamConsumer
from eventbus.topology import ORDERS, Topology
from inventory.service import INVENTORY_GROUP, InventoryService
from inventory.stock import StockLedger
from order_service.app import create_app
from orderly_platform.embedded import RedisServer, TemporalServer
from orderly_platform.http import CORRELATION_HEADER
from orderly_platform.settings import Settings
from orderly_platform.temporal_logs import ActivityLogContext
from orderly_platform.testing import in_memory_spans  # noqa: F401 (the `spans` fixture)
from orderly_platform.tracing import temporal_interceptors
from saga.activities import SagaActivities
from saga.bridge import BRIDGE_GROUP, SagaBridge
from saga.converter import DATA_CONVERTER
from saga.messages import ORDERS_TASK_QUEUE, SagaState
from saga.workflow import OrderSaga
from tests.orderly_client import until

TOKEN = "trace-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOPOLOGY = Topology(partitions=2)


CAPTURES: list[CapturePayment] = []


@activity.defn(name=CAPTURE_PAYMENT)
async def capture(request: CapturePayment) -> PaymentOutcome:
    """The payment service's capture as the saga sees it (the provider is not the point)."""
    CAPTURES.append(request)
    return PaymentOutcome(status="captured", amount=request.amount, charge_id="ch-1")


@pytest_asyncio.fixture
async def order_service(
    spans: InMemorySpanExporter, redis_server: RedisServer, redis: aioredis.Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(redis_url=redis_server.url, api_token=TOKEN, stream_partitions=2)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


@pytest_asyncio.fixture
async def saga(
    spans: InMemorySpanExporter, temporal_server: TemporalServer, redis: aioredis.Redis
) -> AsyncIterator[Client]:
    """The saga worker (workflow, emits, bridge), the payments worker and the inventory
    service, wired as their apps wire them."""
    client = await Client.connect(
        temporal_server.address, data_converter=DATA_CONVERTER, interceptors=temporal_interceptors()
    )
    appender = EventAppender(redis, TOPOLOGY)
    handlers: list[tuple[str, Handler]] = [
        (BRIDGE_GROUP, SagaBridge(client)),
        (INVENTORY_GROUP, InventoryService(StockLedger(redis, TOPOLOGY), appender)),
    ]
    consumers = [
        StreamConsumer(
            redis,
            TOPOLOGY.partitions_of(ORDERS),
            handler,
            ConsumerConfig(group=group, consumer="c", block_ms=50),
        )
        for group, handler in handlers
    ]
    orders = Worker(
        client,
        task_queue=ORDERS_TASK_QUEUE,
        workflows=[OrderSaga],
        activities=[SagaActivities(appender).emit_event],
        interceptors=[ActivityLogContext()],
    )
    payments = Worker(client, task_queue=PAYMENTS_TASK_QUEUE, activities=[capture])
    async with orders, payments:
        running = [asyncio.create_task(consumer.run()) for consumer in consumers]
        yield client
        for consumer in consumers:
            consumer.stop()
        await asyncio.gather(*running)


async def test_one_trace_from_post_orders_through_the_saga_to_its_activities(
    spans: InMemorySpanExporter,
    order_service: TestClient[Any, Any],
    saga: Client,
    redis: aioredis.Redis,
) -> None:
    put = await order_service.put(
        "/catalog/SKU-1", json={"price": 250, "currency": "EUR", "on_hand": 3}, headers=AUTH
    )
    assert put.status == 202, await put.text()
    spans.clear()  # the catalog update is a trace of its own
    placed = await order_service.post(
        "/orders",
        json={
            "customer_id": "c-1",
            "items": [{"sku": "SKU-1", "quantity": 1}],
            "payment_token": "t",
        },
        headers={**AUTH, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status == 202, await placed.text()
    order_id = (await placed.json())["order_id"]

    handle = saga.get_workflow_handle(order_id, result_type=SagaState)
    await until(lambda: _started(handle), 30, "the bridge starts the saga")
    assert (await handle.result()).status == "CONFIRMED"
    # A span ends after its children: once no finished span misses its parent, the trace
    # is whole (the bridge may still be closing the span of its last signal).
    finished = await until(lambda: _whole_trace(spans), 30, "every span of the trace ends")
    [server] = _named(finished, "POST /orders")
    assert server.kind == SpanKind.SERVER and server.parent is None
    trace_id = _context(server).trace_id
    assert {_context(s).trace_id for s in finished} == {trace_id}

    # The envelope carried the trace across Redis: OrderPlaced names the request's span.
    order_events = await _order_events(redis, order_id)
    [envelope] = [e for e in order_events if isinstance(e.data, OrderPlaced)]
    server_context = _context(server)
    assert envelope.traceparent == (
        f"00-{trace_id:032x}-{server_context.span_id:016x}-{server_context.trace_flags:02x}"
    )

    by_id = {_context(s).span_id: s for s in finished}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    [bridged] = _named(finished, f"{BRIDGE_GROUP} {_type_of(OrderPlaced)}")
    assert parent(bridged) is server
    [start] = _named(finished, "StartWorkflow:OrderSaga")
    assert parent(start) is bridged
    assert {_context(parent(s)).span_id for s in _named(finished, "RunWorkflow:OrderSaga")} == {
        _context(start).span_id
    }
    for run in _named(finished, "RunActivity:capture_payment") + _named(
        finished, "RunActivity:emit_event"
    ):
        assert parent(run).name == run.name.replace("Run", "Start", 1)
    # Every span descends from the request's, also across the inventory service's answers
    # (appended under the span of the request it handled) and the bridge's signals.
    for span in finished:
        root = span
        while root.parent is not None:
            root = parent(root)
        assert root is server, span.name
    # And the request's correlation id went the same way: into every event of the order
    # (the saga's, the inventory service's) and the payment request.
    correlation_id = placed.headers[CORRELATION_HEADER]
    assert {e.correlationid for e in order_events} == {correlation_id}
    assert [c.correlation_id for c in CAPTURES] == [correlation_id]
    names = {s.name for s in finished}
    assert {
        "RunActivity:emit_event",
        "RunActivity:capture_payment",
        f"{INVENTORY_GROUP} {_type_of(InventoryReservationRequested)}",
        "SignalWorkflow:event",
    } <= names


async def _started(handle: WorkflowHandle[Any, SagaState]) -> bool:
    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


async def _whole_trace(spans: InMemorySpanExporter) -> tuple[ReadableSpan, ...] | None:
    finished = spans.get_finished_spans()
    ids = {_context(s).span_id for s in finished}
    if all(s.parent is None or s.parent.span_id in ids for s in finished):
        return finished
    return None


def _context(span: ReadableSpan) -> Any:
    context = span.get_span_context()
    assert context is not None
    return context


def _type_of(event_class: type) -> str:
    [event_type] = [name for name, cls in EVENT_TYPES.items() if cls is event_class]
    return event_type


def _named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def _order_events(redis: aioredis.Redis, order_id: str) -> list[Any]:
    partition = TOPOLOGY.partition(ORDERS, order_id)
    return [decode_envelope(fields[b"event"]) for _, fields in await redis.xrange(partition.stream)]
