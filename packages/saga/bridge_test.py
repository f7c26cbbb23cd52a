"""The bridge on real Redis streams and a real Temporal server: starts, duplicates, signals."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio as aioredis
from temporalio.client import Client
from temporalio.worker import Worker

from contracts import InventoryReserved, OrderPlaced, new_envelope
from contracts.values import OrderItem, OrderLine
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.topology import ORDERS, Topology
from orderly_platform.embedded import TemporalServer
from saga.activities import SagaActivities
from saga.bridge import BRIDGE_GROUP, SagaBridge
from saga.converter import DATA_CONVERTER
from saga.messages import ORDERS_TASK_QUEUE
from saga.workflow import OrderSaga
from saga.workflow_test import eventually

TOPOLOGY = Topology(partitions=2)


@pytest_asyncio.fixture
async def client(temporal_server: TemporalServer, redis: aioredis.Redis) -> AsyncIterator[Client]:
    client = await Client.connect(temporal_server.address, data_converter=DATA_CONVERTER)
    emitter = SagaActivities(EventAppender(redis, TOPOLOGY))
    async with Worker(
        client, task_queue=ORDERS_TASK_QUEUE, workflows=[OrderSaga], activities=[emitter.emit_event]
    ):
        yield client


def placed(order_id: str) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        customer_id="c-1",
        items=(OrderLine(sku="SKU-1", quantity=1, unit_price=100, line_total=100),),
        total=100,
        currency="EUR",
        payment_token="tok",
    )


async def drain(bridge: StreamConsumer) -> None:
    await bridge.ensure_groups()
    while await bridge.run_once():
        pass


async def test_order_placed_starts_one_saga_and_answers_become_signals(
    client: Client, redis: aioredis.Redis
) -> None:
    order_id = f"o-{uuid.uuid4()}"
    appender = EventAppender(redis, TOPOLOGY)
    first = new_envelope(placed(order_id), source="/t", subject=order_id)
    # The same order placed again under another event id: still one saga.
    again = new_envelope(placed(order_id), source="/t", subject=order_id)
    await appender.append_batch([PendingAppend(first), PendingAppend(again)])
    config = ConsumerConfig(group=BRIDGE_GROUP, consumer="b", block_ms=10)
    bridge = StreamConsumer(redis, TOPOLOGY.partitions_of(ORDERS), SagaBridge(client), config)
    await drain(bridge)

    handle = client.get_workflow_handle(order_id)
    description = await handle.describe()
    assert description.id == order_id
    # Both OrderPlaced entries handled; the saga's own reservation request, emitted to the same
    # stream by the worker meanwhile, may have been read (and skipped) too.
    assert bridge.stats.processed >= 2 and bridge.stats.failed_batches == 0

    async def waits_for(what: str) -> bool:
        return (await handle.query(OrderSaga.state)).waiting_for == what

    await eventually(lambda: waits_for("inventory reservation"))
    items = (OrderItem(sku="SKU-1", quantity=1),)
    await appender.append(
        new_envelope(
            InventoryReserved(order_id=order_id, items=items), source="/t", subject=order_id
        )
    )
    await drain(bridge)
    await eventually(lambda: waits_for("payment"))
    runs = [e async for e in client.list_workflows(f'WorkflowId = "{order_id}"')]
    assert len(runs) == 1


async def test_an_answer_for_a_saga_that_does_not_run_is_acked_and_dropped(
    client: Client, redis: aioredis.Redis
) -> None:
    order_id = f"o-{uuid.uuid4()}"
    items = (OrderItem(sku="SKU-1", quantity=1),)
    await EventAppender(redis, TOPOLOGY).append(
        new_envelope(
            InventoryReserved(order_id=order_id, items=items), source="/t", subject=order_id
        )
    )
    config = ConsumerConfig(group=BRIDGE_GROUP, consumer="b", block_ms=10)
    bridge = StreamConsumer(redis, TOPOLOGY.partitions_of(ORDERS), SagaBridge(client), config)
    await drain(bridge)
    assert bridge.stats.processed == 1 and bridge.stats.failed_batches == 0
