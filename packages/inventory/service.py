"""The inventory service's handler: the saga's inventory requests in, stock moved, answers out.

It consumes the order streams (consumer group ``inventory-service``). For each
- ``InventoryReservationRequested``: reserve the order's items, then append
  ``InventoryReserved`` or ``InventoryReservationRejected`` (reason, short SKUs);
- ``InventoryCommitRequested``: commit them, then append ``InventoryCommitted``;
- ``InventoryReleaseRequested``: release them, then append ``InventoryReleased`` (also when
  the order held nothing: the saga waits for the answer, and after it the order holds
  nothing, which is what it asked);
to the order's stream; other events are passed over (and acked by the consumer).

Redelivery is harmless. The stock moves are idempotent per (order, SKU) (``inventory.stock``),
and an answer's CloudEvents id is derived from the order and the step, so the answer to a
redelivered request is deduplicated by source+id: appended once, with the first outcome.
Requests of one order sit in one partition and are handled in stream order; partitions are
handled side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from contracts import (
    EVENT_TYPES,
    CloudEventAttributes,
    Event,
    InventoryCommitRequested,
    InventoryCommitted,
    InventoryReleased,
    InventoryReleaseRequested,
    InventoryReservationRejected,
    InventoryReservationRequested,
    InventoryReserved,
    decode_stored_attributes,
    decode_stored_event,
    event_type_of,
    new_envelope,
)
from eventbus.appender import Appended, EventAppender
from eventbus.consumer import StreamEntry
from eventbus.event_context import handling_event
from eventbus.topology import Partition
from inventory.stock import INVENTORY_SOURCE, StockLedger, answer_id
from orderly_platform.logs import get_logger

log = get_logger(__name__)

INVENTORY_GROUP: Final = "inventory-service"

_REQUESTS: Final = (
    InventoryReservationRequested,
    InventoryCommitRequested,
    InventoryReleaseRequested,
)
# Their CloudEvents types: the only events whose data this service decodes.
REQUEST_TYPES: Final = frozenset(t for t, cls in EVENT_TYPES.items() if cls in _REQUESTS)


class InventoryService:
    """A ``StreamConsumer`` handler over the order partitions."""

    def __init__(self, ledger: StockLedger, appender: EventAppender) -> None:
        self.ledger = ledger
        self.appender = appender

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        by_partition: dict[Partition, list[StreamEntry]] = {}
        for entry in entries:
            by_partition.setdefault(entry.partition, []).append(entry)
        # Every partition's work runs to its end before a failure is raised: the consumer
        # then retries entry by entry, and nothing of this call may still be running then.
        outcomes = await asyncio.gather(
            *(self._handle_in_order(batch) for batch in by_partition.values()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _handle_in_order(self, entries: list[StreamEntry]) -> None:
        for entry in entries:
            await self.handle(entry.payload)

    async def handle(self, payload: bytes) -> Appended | None:
        """Handle one stored event; returns the answer's append, None for other events."""
        attributes = decode_stored_attributes(payload)
        if attributes.type not in REQUEST_TYPES:
            return None  # the data of most events on the order streams is never decoded
        request = decode_stored_event(payload)
        if not isinstance(request, _REQUESTS):  # a type that upcasts to another one
            return None
        with handling_event(attributes, INVENTORY_GROUP):
            return await self._handle_request(request, attributes)

    async def _handle_request(
        self,
        request: (
            InventoryReservationRequested | InventoryCommitRequested | InventoryReleaseRequested
        ),
        attributes: CloudEventAttributes,
    ) -> Appended:
        order_id, items = request.order_id, request.items
        answer: Event
        if isinstance(request, InventoryReservationRequested):
            step = "reservation"
            reservation = await self.ledger.reserve(order_id, items, cause=attributes)
            if reservation.reserved:
                answer = InventoryReserved(order_id=order_id, items=items)
            else:
                answer = InventoryReservationRejected(
                    order_id=order_id,
                    reason=reservation.reason or "not reserved",
                    short_skus=reservation.short_skus,
                )
        elif isinstance(request, InventoryCommitRequested):
            step = "commit"
            await self.ledger.commit(order_id, items, cause=attributes)
            answer = InventoryCommitted(order_id=order_id, items=items)
        else:
            step = "release"
            await self.ledger.release(order_id, items, cause=attributes)
            answer = InventoryReleased(order_id=order_id, items=items)
        return await self._answer(order_id, step, answer, attributes)

    async def _answer(
        self, order_id: str, step: str, answer: Event, request: CloudEventAttributes
    ) -> Appended:
        appended = await self.appender.append(
            new_envelope(
                answer,
                source=INVENTORY_SOURCE,
                subject=order_id,
                id=answer_id(order_id, step),
                correlation_id=request.correlationid or request.id,
                causation_id=request.id,
            )
        )
        log.debug(
            "inventory answered",
            order_id=order_id,
            answer=event_type_of(answer),
            duplicate=appended.duplicate,
        )
        return appended
