"""The orders read model: each order's status, reason, items, totals, timeline and saga health.

Status moves PENDING -> CONFIRMED | REJECTED | CANCELLED and never back: a terminal status is
final, so a late or replayed event cannot reopen an order. Every event of an order, whatever
its type, adds a step to the timeline. While an order is PENDING, ``waiting_for`` names the
step its saga waits on and ``waiting_since`` when that wait began (saga health).

A batch is folded per order in Python and written with two statements, whatever its size.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import (
    DomainEvent,
    EventEnvelope,
    InventoryCommitRequested,
    InventoryCommitted,
    InventoryReleased,
    InventoryReleaseRequested,
    InventoryReservationRejected,
    InventoryReservationRequested,
    InventoryReserved,
    OrderCancellationRequested,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
)
from eventbus.topology import ORDERS, category_of
from projections import tables
from projections.projection import Apply, Projection
from projections.recorded import Recorded
from projections.recordsets import recordset, rows_parameter

PENDING, CONFIRMED, REJECTED, CANCELLED = "PENDING", "CONFIRMED", "REJECTED", "CANCELLED"
TERMINAL = (CONFIRMED, REJECTED, CANCELLED)
_TERMINAL_STATUS: dict[type[DomainEvent], str] = {
    OrderConfirmed: CONFIRMED,
    OrderRejected: REJECTED,
    OrderCancelled: CANCELLED,
}

# After an event of this type, what the order's saga waits for next.
WAITS_FOR: dict[type[DomainEvent], str] = {
    OrderPlaced: "saga start",
    InventoryReservationRequested: "inventory reservation",
    InventoryReserved: "payment",
    PaymentCaptured: "inventory commit",
    InventoryCommitRequested: "inventory commit",
    InventoryCommitted: "confirmation",
    InventoryReservationRejected: "rejection",
    PaymentDeclined: "compensation",
    OrderCancellationRequested: "cancellation",
    InventoryReleaseRequested: "inventory release",
    InventoryReleased: "compensation",
    PaymentRefunded: "compensation",
}


class _Change(msgspec.Struct):
    """What one batch does to one order, folded in stream order."""

    order_id: str
    steps: list[dict[str, str]] = msgspec.field(default_factory=list)
    # The first terminal status of the batch and its reason; later ones cannot override it.
    status: str | None = None
    reason: str | None = None
    waiting_for: str | None = None
    waiting_since: datetime | None = None
    updated_at: datetime | None = None


def orders_writer(orders: sa.Table) -> Apply:
    changes_of = recordset(
        sa.column("order_id", sa.Text),
        sa.column("steps", JSONB),
        sa.column("status", sa.Text),
        sa.column("reason", sa.Text),
        sa.column("waiting_for", sa.Text),
        sa.column("waiting_since", TIMESTAMP(timezone=True)),
        sa.column("updated_at", TIMESTAMP(timezone=True)),
    )
    d = changes_of.c
    was_terminal = orders.c.status.in_(TERMINAL)
    ends_here = d.status.is_not(None)
    update = (
        sa.update(orders)
        .where(orders.c.order_id == d.order_id)
        .values(
            timeline=orders.c.timeline.op("||")(d.steps),
            status=sa.case(
                (was_terminal, orders.c.status), else_=sa.func.coalesce(d.status, orders.c.status)
            ),
            reason=sa.case(
                (was_terminal | (d.status.is_(None)) | (d.status == CONFIRMED), orders.c.reason),
                else_=d.reason,
            ),
            waiting_for=sa.case(
                (was_terminal | ends_here, None),
                else_=sa.func.coalesce(d.waiting_for, orders.c.waiting_for),
            ),
            waiting_since=sa.case(
                (was_terminal | ends_here, None),
                else_=sa.func.coalesce(d.waiting_since, orders.c.waiting_since),
            ),
            updated_at=d.updated_at,
        )
    )
    place = insert(orders).on_conflict_do_nothing(index_elements=[orders.c.order_id])

    async def apply(connection: AsyncConnection, records: list[Recorded]) -> None:
        placed: list[dict[str, Any]] = []
        changes: dict[str, _Change] = {}
        for record in records:
            envelope = record.envelope
            if category_of(envelope.type) != ORDERS:
                continue
            event = envelope.data
            if isinstance(event, OrderPlaced):
                placed.append(_placed_row(envelope, event))
            change = changes.get(envelope.subject)
            if change is None:
                change = changes[envelope.subject] = _Change(envelope.subject)
            change.steps.append(_step(envelope))
            change.updated_at = envelope.time
            terminal = _TERMINAL_STATUS.get(type(event))
            if terminal is not None and change.status is None:
                change.status = terminal
                change.reason = getattr(event, "reason", None)
            waits_for = WAITS_FOR.get(type(event))
            if waits_for is not None:
                change.waiting_for, change.waiting_since = waits_for, envelope.time
        # An order's later events only ever follow its OrderPlaced in the same stream, so
        # inserting first lets the update below see the rows this batch places.
        if placed:
            await connection.execute(place, placed)
        if changes:
            await connection.execute(update, rows_parameter(list(changes.values())))

    return apply


def _placed_row(envelope: EventEnvelope, event: OrderPlaced) -> dict[str, Any]:
    return {
        "order_id": event.order_id,
        "customer_id": event.customer_id,
        "status": PENDING,
        "items": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.line_total,
            }
            for line in event.items
        ],
        "total": event.total,
        "currency": event.currency,
        "timeline": [],
        "placed_at": envelope.time,
        "updated_at": envelope.time,
    }


def _step(envelope: EventEnvelope) -> dict[str, str]:
    # "orderly.OrderPlaced.v2" -> "OrderPlaced": the timeline speaks the domain, not the wire.
    return {"type": envelope.type.split(".")[1], "at": envelope.time.isoformat()}


ORDERS_PROJECTION = Projection("orders", (tables.orders,), orders_writer)
