"""A saga worker killed with an emit's append done and its task unfinished, while a
cancellation arrives: the saga that carries on in another worker forgets no request.

The reservation request is appended inside the saga's first workflow task (a local
activity): killed there, the task is lost with the worker and the next worker replays the
saga with the cancellation already in its history. It must still release what the forgotten
request may have reserved, and its events must not collide with that request's id (ids follow
from the order and the event type, so a repeated request is one event, and a release is not
dropped as a duplicate of it).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import pytest
import redis.asyncio as aioredis
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from contracts import InventoryReleased, OrderCancellationRequested, decode_envelope
from contracts.values import OrderItem, OrderLine
from eventbus.appender import EventAppender
from eventbus.topology import ORDERS, Topology
from orderly_platform.embedded import RedisServer, TemporalServer
from saga.activities import SagaActivities
from saga.converter import DATA_CONVERTER
from saga.messages import SagaDeadlines, SagaInput
from saga.workflow import OrderSaga
from tests.orderly_client import until

PARTITIONS = 2
TOPOLOGY = Topology(partitions=PARTITIONS)
ITEMS = (OrderItem(sku="SKU-1", quantity=1),)


def saga_input(order_id: str) -> SagaInput:
    return SagaInput(
        order_id=order_id,
        customer_id="c-1",
        items=(OrderLine(sku="SKU-1", quantity=1, unit_price=500, line_total=500),),
        total=500,
        currency="EUR",
        payment_token="tok_visa",
        placed_event_id=f"placed-{order_id}",
        correlation_id=f"placed-{order_id}",
        deadlines=SagaDeadlines(inventory=60, payment=60, payment_attempt=10),
    )


async def emitted(redis: aioredis.Redis, order_id: str) -> list[str]:
    """The names of the events appended for the order, in stream order."""
    stream = TOPOLOGY.partition(ORDERS, order_id).stream
    envelopes = [decode_envelope(fields[b"event"]) for _, fields in await redis.xrange(stream)]
    return [type(e.data).__name__ for e in envelopes if e.subject == order_id]


# By the customer: a signal the saga reads on its next task. By an operator, through Temporal:
# a cancellation request the retried first task finds in the history before it asks again.
CANCELLED_BY = {"customer": "changed my mind", "operator": "cancelled by an operator"}


@pytest.mark.parametrize("cancelled_by", list(CANCELLED_BY))
async def test_a_saga_worker_killed_mid_emit_while_a_cancel_arrives_forgets_no_request(
    temporal_server: TemporalServer,
    redis_server: RedisServer,
    redis: aioredis.Redis,
    cancelled_by: str,
) -> None:
    client = await Client.connect(temporal_server.address, data_converter=DATA_CONVERTER)
    task_queue = f"orders-{uuid.uuid4()}"  # this test's workers only
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.saga_worker_process",
        temporal_server.address,
        task_queue,
        redis_server.url,
        str(PARTITIONS),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    order_id = f"o-{uuid.uuid4()}"
    handle = await client.start_workflow(
        OrderSaga.run, saga_input(order_id), id=order_id, task_queue=task_queue
    )
    try:
        # The victim appended the reservation request and hangs before finishing its task.
        async def hanging_after_append() -> bool:
            assert victim.returncode is None, f"the worker exited with {victim.returncode}"
            return bool(await redis.keys("emitted:*"))

        await until(hanging_after_append, 60, "the victim's first emit")
        assert await emitted(redis, order_id) == ["InventoryReservationRequested"]
        # In the saga's history once it returns.
        if cancelled_by == "customer":
            cancel = OrderCancellationRequested(
                order_id=order_id, reason=CANCELLED_BY[cancelled_by]
            )
            await handle.signal(OrderSaga.event, cancel)
        else:
            await handle.cancel()
    finally:
        victim.kill()
        await victim.wait()

    emitter = SagaActivities(EventAppender(redis, TOPOLOGY))
    async with Worker(
        client, task_queue=task_queue, workflows=[OrderSaga], activities=[emitter.emit_event]
    ):

        async def released_or_ended() -> bool:
            if "InventoryReleaseRequested" in await emitted(redis, order_id):
                return True
            return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

        try:
            await until(released_or_ended, 90, "the saga asks for the release or ends")
            assert await emitted(redis, order_id) == [
                "InventoryReservationRequested",
                "InventoryReleaseRequested",
            ]
            await handle.signal(OrderSaga.event, InventoryReleased(order_id=order_id, items=ITEMS))
            result = await asyncio.wait_for(handle.result(), 60)
        finally:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")

    assert (result.status, result.reason) == ("CANCELLED", CANCELLED_BY[cancelled_by])
    assert await emitted(redis, order_id) == [
        "InventoryReservationRequested",
        "InventoryReleaseRequested",
        "OrderCancelled",
    ]
