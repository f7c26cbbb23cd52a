"""The orders read model: each order's status, reason, items, totals and event timeline.

Status moves PENDING -> CONFIRMED | REJECTED | CANCELLED and never back: a terminal status is
final, so a late or replayed event cannot reopen an order. Every event of an order, whatever
its type, adds a step to the timeline.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import EventEnvelope, OrderCancelled, OrderConfirmed, OrderPlaced, OrderRejected
from eventbus.consumer import StreamEntry
from eventbus.topology import ORDERS, category_of
from projections.tables import orders

ORDERS_PROJECTION = "orders"
PENDING, CONFIRMED, REJECTED, CANCELLED = "PENDING", "CONFIRMED", "REJECTED", "CANCELLED"
TERMINAL = (CONFIRMED, REJECTED, CANCELLED)


async def apply_orders(connection: AsyncConnection, entries: list[StreamEntry]) -> None:
    for entry in entries:
        envelope = entry.envelope()
        if category_of(envelope.type) != ORDERS:
            continue
        event = envelope.data
        step = sa.cast(sa.literal([_step(envelope)], type_=JSONB), JSONB)
        if isinstance(event, OrderPlaced):
            await connection.execute(_placed(envelope, event))
        values: dict[str, object] = {
            "timeline": orders.c.timeline.op("||")(step),
            "updated_at": envelope.time,
        }
        if isinstance(event, OrderConfirmed | OrderRejected | OrderCancelled):
            status = {OrderConfirmed: CONFIRMED, OrderRejected: REJECTED, OrderCancelled: CANCELLED}
            values["status"] = sa.case(
                (orders.c.status.in_(TERMINAL), orders.c.status), else_=status[type(event)]
            )
            if not isinstance(event, OrderConfirmed):
                values["reason"] = sa.case(
                    (orders.c.status.in_(TERMINAL), orders.c.reason), else_=event.reason
                )
        # An order's later events only ever follow its OrderPlaced in the same stream.
        await connection.execute(
            sa.update(orders).where(orders.c.order_id == envelope.subject).values(**values)
        )


def _placed(envelope: EventEnvelope, event: OrderPlaced) -> sa.Insert:
    return (
        insert(orders)
        .values(
            order_id=event.order_id,
            customer_id=event.customer_id,
            status=PENDING,
            items=[
                {
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "line_total": line.line_total,
                }
                for line in event.items
            ],
            total=event.total,
            currency=event.currency,
            placed_at=envelope.time,
            updated_at=envelope.time,
        )
        .on_conflict_do_nothing()
    )


def _step(envelope: EventEnvelope) -> dict[str, str]:
    # "orderly.OrderPlaced.v2" -> "OrderPlaced": the timeline speaks the domain, not the wire.
    return {"type": envelope.type.split(".")[1], "at": envelope.time.isoformat()}
