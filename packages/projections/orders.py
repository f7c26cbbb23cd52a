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
from eventbus.topology import ORDERS
from projections import tables
from projections.projection import Apply, Projection
from projections.recorded import Recorded
from projections.recordsets import recordset, rows_parameter

PENDING, CONFIRMED, REJECTED, CANCELLED = "PENDING", "CONFIRMED", "REJECTED", "CANCELLED"
TERMINAL = (CONFIRMED, REJECTED, CANCELLED)
# By event name ("OrderConfirmed"), which every version of an event shares.
_TERMINAL_STATUS: dict[str, str] = {
    OrderConfirmed.__name__: CONFIRMED,
    OrderRejected.__name__: REJECTED,
    OrderCancelled.__name__: CANCELLED,
}

# After an event of this name, what the order's saga waits for next.
WAITS_FOR: dict[str, str] = {
    OrderPlaced.__name__: "saga start",
    InventoryReservationRequested.__name__: "inventory reservation",
    InventoryReserved.__name__: "payment",
    PaymentCaptured.__name__: "inventory commit",
    InventoryCommitRequested.__name__: "inventory commit",
    InventoryCommitted.__name__: "confirmation",
    InventoryReservationRejected.__name__: "rejection",
    PaymentDeclined.__name__: "compensation",
    OrderCancellationRequested.__name__: "cancellation",
    InventoryReleaseRequested.__name__: "inventory release",
    InventoryReleased.__name__: "compensation",
    PaymentRefunded.__name__: "compensation",
}


class _Change(msgspec.Struct):
    """What one batch does to one order, folded in stream order."""

    order_id: str
    # Timeline steps: {"type": event name, "at": its time}.
    steps: list[dict[str, object]] = msgspec.field(default_factory=list)
    # The first terminal status of the batch and its reason; later ones cannot override it.
    status: str | None = None
    reason: str | None = None
    waiting_for: str | None = None
    waiting_since: datetime | None = None
    updated_at: datetime | None = None
    # The order's row as its OrderPlaced made it, when that event is in this batch.
    placed: dict[str, Any] | None = None


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
    rows_of = recordset(
        *(sa.column(column.name, column.type) for column in orders.columns), name="r"
    )
    place = (
        insert(orders)
        .from_select([c.name for c in orders.columns], sa.select(*rows_of.c))
        .on_conflict_do_nothing(index_elements=[orders.c.order_id])
        .returning(orders.c.order_id)
    )

    async def apply(connection: AsyncConnection, records: list[Recorded]) -> None:
        changes: dict[str, _Change] = {}
        for record in records:
            if record.category != ORDERS:
                continue
            name = record.name
            change = changes.get(record.subject)
            if change is None:
                change = changes[record.subject] = _Change(record.subject)
            if name == OrderPlaced.__name__:
                change.placed = _placed_row(record)
            change.steps.append({"type": name, "at": record.time})
            change.updated_at = record.time
            terminal = _TERMINAL_STATUS.get(name)
            if terminal is not None and change.status is None:
                change.status = terminal
                # Only rejections and cancellations carry one; decode just for those.
                if terminal != CONFIRMED:
                    change.reason = getattr(record.event, "reason", None)
            waits_for = WAITS_FOR.get(name)
            if waits_for is not None:
                change.waiting_for, change.waiting_since = waits_for, record.time
        # An order's later events only ever follow its OrderPlaced in the same stream. Orders
        # placed in this batch are inserted as they stand at its end, which in a replay is
        # most of them (few sagas span two pages); the others are updated.
        new = [_new_row(change) for change in changes.values() if change.placed is not None]
        known = [change for change in changes.values() if change.placed is None]
        if new:
            inserted = set((await connection.execute(place, rows_parameter(new))).scalars())
            # An order placed twice (a second OrderPlaced under another event id) exists
            # already: this batch's steps still go onto its row.
            known += [c for c in changes.values() if c.placed and c.order_id not in inserted]
        if known:
            await connection.execute(update, rows_parameter(known))

    return apply


def _new_row(change: _Change) -> dict[str, Any]:
    assert change.placed is not None
    ended = change.status is not None
    return {
        **change.placed,
        "status": change.status or PENDING,
        "reason": change.reason,
        "timeline": change.steps,
        "waiting_for": None if ended else change.waiting_for,
        "waiting_since": None if ended else change.waiting_since,
        "updated_at": change.updated_at,
    }


def _placed_row(record: Recorded) -> dict[str, Any]:
    event = record.event
    assert isinstance(event, OrderPlaced)  # an upcast OrderPlaced.v1 is one too
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
        "placed_at": record.time,
    }


ORDERS_PROJECTION = Projection(
    "orders",
    (tables.orders,),
    orders_writer,
    # OrderPlaced for the row; rejections and cancellations for their reason.
    decodes=frozenset({OrderPlaced.__name__, OrderRejected.__name__, OrderCancelled.__name__}),
)
