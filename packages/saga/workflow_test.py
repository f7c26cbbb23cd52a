"""OrderSaga on a real Temporal server, emitting into a real Redis.

The inventory service's answers are signalled by the test and the payment activities are
stand-ins with scripted answers: this tests the saga's decisions one path at a time. The
services themselves are exercised end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from contracts import (
    Event,
    InventoryCommitted,
    InventoryReleased,
    InventoryReservationRejected,
    InventoryReservationRequested,
    InventoryReserved,
    OrderCancellationRequested,
    decode_envelope,
)
from contracts.commands import CapturePayment, RefundPayment
from contracts.payments import (
    CAPTURE_PAYMENT,
    PAYMENTS_TASK_QUEUE,
    REFUND_PAYMENT,
    PaymentOutcome,
    RefundOutcome,
)
from contracts.values import OrderItem, OrderLine
from eventbus.appender import EventAppender
from eventbus.topology import ORDERS, Topology
from orderly_platform.embedded import TemporalServer
from saga.activities import SagaActivities
from saga.converter import DATA_CONVERTER
from saga.messages import (
    EMIT_EVENT,
    ORDERS_TASK_QUEUE,
    EmitEvent,
    SagaDeadlines,
    SagaInput,
    SagaState,
)
from saga.workflow import OrderSaga

TOPOLOGY = Topology(partitions=2)
ITEMS = (OrderItem(sku="SKU-1", quantity=2),)


@dataclass
class Payments:
    """Stand-in payment activities: scripted answers, every call recorded."""

    decline: bool = False
    hold: asyncio.Event | None = None
    captures: list[CapturePayment] = field(default_factory=list)
    refunds: list[RefundPayment] = field(default_factory=list)

    @activity.defn(name=CAPTURE_PAYMENT)
    async def capture(self, request: CapturePayment) -> PaymentOutcome:
        self.captures.append(request)
        if self.hold is not None:
            await self.hold.wait()
        if self.decline:
            return PaymentOutcome(status="declined", amount=request.amount, reason="card declined")
        return PaymentOutcome(status="captured", amount=request.amount, charge_id="ch_1")

    @activity.defn(name=REFUND_PAYMENT)
    async def refund(self, request: RefundPayment) -> RefundOutcome:
        self.refunds.append(request)
        return RefundOutcome(refunded=request.amount, refund_id="re_1")


@dataclass
class Emitter:
    """The saga's emit activity; with ``hold`` set, the reservation request's emit appends,
    then waits for it (a Redis that takes long to answer)."""

    appends: SagaActivities
    hold: asyncio.Event | None = None

    @activity.defn(name=EMIT_EVENT)
    async def emit_event(self, request: EmitEvent) -> None:
        await self.appends.emit_event(request)
        if self.hold is not None and isinstance(request.event, InventoryReservationRequested):
            await self.hold.wait()


@dataclass
class Harness:
    client: Client
    redis: aioredis.Redis
    payments: Payments
    emitter: Emitter

    async def start(
        self, start_signal: Event | None = None
    ) -> WorkflowHandle[OrderSaga, SagaState]:
        """Start a saga; ``start_signal``: an event signalled with the start (signal-with-start),
        in its history before its first workflow task."""
        order_id = f"o-{uuid.uuid4()}"
        saga_input = SagaInput(
            order_id=order_id,
            customer_id="c-1",
            items=(OrderLine(sku="SKU-1", quantity=2, unit_price=500, line_total=1000),),
            total=1000,
            currency="EUR",
            payment_token="tok_visa",
            placed_event_id=f"placed-{order_id}",
            correlation_id=f"placed-{order_id}",
            deadlines=SagaDeadlines(inventory=30, payment=60, payment_attempt=10),
        )
        return await self.client.start_workflow(
            OrderSaga.run,
            saga_input,
            id=order_id,
            task_queue=ORDERS_TASK_QUEUE,
            start_signal="event" if start_signal else None,
            start_signal_args=(
                [msgspec.structs.replace(start_signal, order_id=order_id)] if start_signal else []
            ),
        )

    async def emitted(self, order_id: str) -> list[str]:
        """The names of the events the saga appended for the order, in order."""
        stream = TOPOLOGY.partition(ORDERS, order_id).stream
        names = []
        for _, fields in await self.redis.xrange(stream):
            envelope = decode_envelope(fields[b"event"])
            if envelope.subject == order_id:
                names.append(type(envelope.data).__name__)
        return names

    async def when_emitted(self, order_id: str, name: str) -> None:
        await eventually(lambda: _contains(self.emitted(order_id), name))

    async def keep_history(self, handle: WorkflowHandle[OrderSaga, SagaState], path: str) -> None:
        """Save the finished saga's history for the replay tests (replay_test.py), when
        ORDERLY_RECORD_HISTORIES names the directory (see histories/README.md)."""
        directory = os.environ.get("ORDERLY_RECORD_HISTORIES")
        if directory:
            history = await handle.fetch_history()
            Path(directory, f"{path}.json").write_text(history.to_json())


async def _contains(names: Awaitable[list[str]], name: str) -> bool:
    return name in await names


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def saga(temporal_server: TemporalServer, redis: aioredis.Redis) -> AsyncIterator[Harness]:
    client = await Client.connect(temporal_server.address, data_converter=DATA_CONVERTER)
    payments = Payments()
    emitter = Emitter(SagaActivities(EventAppender(redis, TOPOLOGY)))
    async with (
        Worker(
            client,
            task_queue=ORDERS_TASK_QUEUE,
            workflows=[OrderSaga],
            activities=[emitter.emit_event],
        ),
        Worker(
            client,
            task_queue=PAYMENTS_TASK_QUEUE,
            activities=[payments.capture, payments.refund],
        ),
    ):
        yield Harness(client, redis, payments, emitter)


async def signal(handle: WorkflowHandle[OrderSaga, SagaState], event: Event) -> None:
    await handle.signal(OrderSaga.event, event)


async def test_the_happy_path_reserves_captures_commits_and_confirms(saga: Harness) -> None:
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")

    # The request is in Redis once the emit ran; the saga waits for its answer only after it
    # has been told the emit completed, a workflow task later.
    async def waits_for_the_reservation() -> bool:
        return (await handle.query(OrderSaga.state)).waiting_for == "inventory reservation"

    await eventually(waits_for_the_reservation)
    await signal(handle, InventoryReserved(order_id=order_id, items=ITEMS))
    await saga.when_emitted(order_id, "InventoryCommitRequested")
    await signal(handle, InventoryCommitted(order_id=order_id, items=ITEMS))

    result = await handle.result()
    assert (result.status, result.reason, result.captured) == ("CONFIRMED", None, 1000)
    assert await saga.emitted(order_id) == [
        "InventoryReservationRequested",
        "InventoryCommitRequested",
        "OrderConfirmed",
    ]
    assert [c.idempotency_key for c in saga.payments.captures] == [f"{order_id}:capture"]
    assert saga.payments.refunds == []
    await saga.keep_history(handle, "confirmed")


async def test_out_of_stock_is_rejected_with_nothing_charged_or_released(saga: Harness) -> None:
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")
    await signal(
        handle,
        InventoryReservationRejected(order_id=order_id, reason="short", short_skus=("SKU-1",)),
    )
    result = await handle.result()
    assert result.status == "REJECTED" and result.reason == "out of stock: short"
    assert await saga.emitted(order_id) == ["InventoryReservationRequested", "OrderRejected"]
    assert saga.payments.captures == []
    await saga.keep_history(handle, "out_of_stock")


async def test_a_declined_payment_releases_the_stock_and_rejects(saga: Harness) -> None:
    saga.payments.decline = True
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")
    await signal(handle, InventoryReserved(order_id=order_id, items=ITEMS))
    await saga.when_emitted(order_id, "InventoryReleaseRequested")
    await signal(handle, InventoryReleased(order_id=order_id, items=ITEMS))
    result = await handle.result()
    assert (result.status, result.reason) == ("REJECTED", "payment declined: card declined")
    assert await saga.emitted(order_id) == [
        "InventoryReservationRequested",
        "InventoryReleaseRequested",
        "OrderRejected",
    ]
    assert saga.payments.refunds == []
    await saga.keep_history(handle, "declined")


async def test_a_cancellation_before_payment_releases_and_cancels(saga: Harness) -> None:
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")
    await signal(handle, OrderCancellationRequested(order_id=order_id, reason="changed my mind"))
    await saga.when_emitted(order_id, "InventoryReleaseRequested")
    await signal(handle, InventoryReleased(order_id=order_id, items=ITEMS))
    result = await handle.result()
    assert (result.status, result.reason) == ("CANCELLED", "changed my mind")
    assert saga.payments.captures == []
    assert (await saga.emitted(order_id))[-1] == "OrderCancelled"
    await saga.keep_history(handle, "cancelled_before_payment")


async def test_a_cancellation_before_the_first_task_still_releases(saga: Harness) -> None:
    # The cancellation is in the history before the saga's first workflow task runs, as it is
    # when a first task that appended the reservation request was lost with its worker: the
    # saga cannot tell the two apart, so it asks for a release (a no-op for the inventory
    # service when nothing was reserved) before it cancels.
    cancel = OrderCancellationRequested(order_id="", reason="changed my mind")
    handle = await saga.start(start_signal=cancel)
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReleaseRequested")
    await signal(handle, InventoryReleased(order_id=order_id, items=ITEMS))
    result = await handle.result()
    assert (result.status, result.reason, result.reserved) == (
        "CANCELLED",
        "changed my mind",
        False,
    )
    assert await saga.emitted(order_id) == ["InventoryReleaseRequested", "OrderCancelled"]
    assert saga.payments.captures == []


async def test_a_cancellation_after_capture_refunds_then_releases(saga: Harness) -> None:
    saga.payments.hold = asyncio.Event()
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")
    await signal(handle, InventoryReserved(order_id=order_id, items=ITEMS))

    async def capturing() -> bool:
        return bool(saga.payments.captures)

    await eventually(capturing)
    await signal(handle, OrderCancellationRequested(order_id=order_id, reason="too slow"))
    saga.payments.hold.set()
    await saga.when_emitted(order_id, "InventoryReleaseRequested")
    await signal(handle, InventoryReleased(order_id=order_id, items=ITEMS))
    result = await handle.result()
    assert (result.status, result.captured, result.refunded) == ("CANCELLED", 1000, 1000)
    assert [r.idempotency_key for r in saga.payments.refunds] == [f"{order_id}:refund"]
    # Reverse order: the refund (an activity) came before the release was asked for.
    assert await saga.emitted(order_id) == [
        "InventoryReservationRequested",
        "InventoryReleaseRequested",
        "OrderCancelled",
    ]
    await saga.keep_history(handle, "cancelled_after_capture")


async def test_an_operator_cancel_during_the_commit_still_confirms(saga: Harness) -> None:
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")
    await signal(handle, InventoryReserved(order_id=order_id, items=ITEMS))
    await saga.when_emitted(order_id, "InventoryCommitRequested")
    await handle.cancel()  # through Temporal, as `temporal workflow cancel` does
    await signal(handle, InventoryCommitted(order_id=order_id, items=ITEMS))
    result = await handle.result()
    assert (result.status, result.refunded) == ("CONFIRMED", 0)
    assert (await saga.emitted(order_id))[-1] == "OrderConfirmed"


@pytest.mark.parametrize("emit_in_flight", [False, True], ids=["waiting", "emit-in-flight"])
async def test_an_operator_cancel_before_payment_compensates_and_cancels(
    saga: Harness, emit_in_flight: bool
) -> None:
    # With the reservation's emit still in flight the cancellation cuts it off (it reaches the
    # saga as an ActivityError, not as asyncio.CancelledError); the request may be appended
    # already, so the saga releases all the same.
    if emit_in_flight:
        saga.emitter.hold = asyncio.Event()
    handle = await saga.start()
    order_id = handle.id
    await saga.when_emitted(order_id, "InventoryReservationRequested")
    await handle.cancel()
    await saga.when_emitted(order_id, "InventoryReleaseRequested")
    await signal(handle, InventoryReleased(order_id=order_id, items=ITEMS))
    result = await handle.result()
    assert (result.status, result.reason) == ("CANCELLED", "cancelled by an operator")
    assert saga.payments.captures == []
    assert await saga.emitted(order_id) == [
        "InventoryReservationRequested",
        "InventoryReleaseRequested",
        "OrderCancelled",
    ]
