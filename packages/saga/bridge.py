"""The bridge: the consumer group that turns order events into saga starts and signals.

``OrderPlaced`` starts ``OrderSaga`` with workflow id = order id; a second start of the same
order (a redelivered entry, a duplicate OrderPlaced) is refused by Temporal and ignored
here, also after the saga has finished. The answers the saga waits for, and cancellation
requests, become signals. Everything else is the saga's own output and is skipped.

Entries of one order stay in stream order (the consumer hands over each partition in
order, and this handler works through one order's events one at a time); different orders
are started and signalled concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts import (
    EventEnvelope,
    InventoryCommitted,
    InventoryReleased,
    InventoryReservationRejected,
    InventoryReserved,
    OrderCancellationRequested,
    OrderPlaced,
)
from eventbus.consumer import StreamEntry
from eventbus.event_context import handling_event
from orderly_platform.logs import get_logger
from saga.messages import ORDERS_TASK_QUEUE, SagaDeadlines, SagaInput
from saga.workflow import OrderSaga

log = get_logger(__name__)

BRIDGE_GROUP = "saga-bridge"

SIGNALLED: tuple[type, ...] = (
    InventoryReserved,
    InventoryReservationRejected,
    InventoryCommitted,
    InventoryReleased,
    OrderCancellationRequested,
)


class SagaBridge:
    def __init__(self, client: Client, deadlines: SagaDeadlines | None = None) -> None:
        self.client = client
        self.deadlines = deadlines or SagaDeadlines()

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        by_order: dict[str, list[EventEnvelope]] = {}
        for entry in entries:
            envelope = entry.envelope()
            if isinstance(envelope.data, (OrderPlaced, *SIGNALLED)):
                by_order.setdefault(envelope.subject, []).append(envelope)
        await asyncio.gather(*(self._forward(envelopes) for envelopes in by_order.values()))

    async def _forward(self, envelopes: list[EventEnvelope]) -> None:
        for envelope in envelopes:
            # The workflow start or signal continues the trace of the event's producer:
            # Temporal's interceptor carries it on into the saga and its activities.
            with handling_event(envelope, BRIDGE_GROUP):
                if isinstance(envelope.data, OrderPlaced):
                    await self._start(envelope, envelope.data)
                else:
                    await self._signal(envelope)

    async def _start(self, envelope: EventEnvelope, placed: OrderPlaced) -> None:
        saga_input = SagaInput(
            order_id=placed.order_id,
            customer_id=placed.customer_id,
            items=placed.items,
            total=placed.total,
            currency=placed.currency,
            payment_token=placed.payment_token,
            placed_event_id=envelope.id,
            correlation_id=envelope.correlationid or envelope.id,
            deadlines=self.deadlines,
        )
        try:
            await self.client.start_workflow(
                OrderSaga.run,
                saga_input,
                id=placed.order_id,
                task_queue=ORDERS_TASK_QUEUE,
                # Never a second saga for an order, not even after the first has finished.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # The bridge runs beside the saga worker on the same client: Temporal hands
                # the first workflow task back in the start's reply, to this process's worker
                # (when it has a free slot), instead of through a task queue poll.
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError:
            log.debug("saga already started", order_id=placed.order_id)

    async def _signal(self, envelope: EventEnvelope) -> None:
        handle: WorkflowHandle[OrderSaga, object] = self.client.get_workflow_handle_for(
            OrderSaga.run, envelope.subject
        )
        try:
            await handle.signal(OrderSaga.event, envelope.data)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # The saga has finished (or never existed): nothing waits for this any more.
            log.info(
                "event for a saga that is not running",
                order_id=envelope.subject,
                type=envelope.type,
            )
