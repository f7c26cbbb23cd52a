"""Order events in, customer notifications out: logged once in Postgres, published on Redis.

Each notification goes to the customer's channel ``orderly:notifications:<customer id>`` and
to the live feed ``orderly:notifications`` (what a dashboard shows), as JSON
``{"order_id", "customer_id", "kind", "message", "at"}``. It is published after its log row
commits, and only by the delivery that inserted that row: a redelivered event publishes
nothing twice. Pub/sub is fire-and-forget (a subscriber that is away misses it), so the log
is the record; a crash between the commit and the publish loses that one live message, not
the notification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    EventEnvelope,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    PaymentCaptured,
    PaymentRefunded,
)
from eventbus.consumer import StreamEntry
from notification_service.log import notification_log
from orderly_platform.logs import get_logger

log = get_logger(__name__)

FEED = "orderly:notifications"
PLACED = "placed"
# Built once and run as an executemany: compiled on first use only, whatever the batch's size
# (a multi-row VALUES of its own would be compiled again for each batch). The rows it returns
# are the ones inserted: a redelivered event is logged, and published, once.
_LOG_NEW = insert(notification_log).on_conflict_do_nothing().returning(*notification_log.c)


def customer_channel(customer_id: str) -> str:
    return f"{FEED}:{customer_id}"


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency}"


# What a customer hears about, by event: (kind, message).
_DESCRIPTIONS: dict[type, Callable[[Any], tuple[str, str]]] = {
    OrderPlaced: lambda e: (PLACED, f"We received your order ({_money(e.total, e.currency)})."),
    PaymentCaptured: lambda e: (
        "payment_captured",
        f"Your payment of {_money(e.amount, e.currency)} went through.",
    ),
    PaymentRefunded: lambda e: ("refunded", f"We refunded {_money(e.amount, e.currency)}."),
    OrderConfirmed: lambda e: ("confirmed", "Your order is confirmed."),
    OrderRejected: lambda e: ("rejected", f"We could not take your order: {e.reason}."),
    OrderCancelled: lambda e: ("cancelled", f"Your order was cancelled: {e.reason}."),
}


def describe(event: object) -> tuple[str, str] | None:
    """(kind, message) for the events a customer hears about; None for the others."""
    describer = _DESCRIPTIONS.get(type(event))
    return None if describer is None else describer(event)


@dataclass(frozen=True)
class _Note:
    envelope: EventEnvelope
    kind: str
    message: str


class Notifier:
    def __init__(self, redis: aioredis.Redis, engine: AsyncEngine) -> None:
        self.redis = redis
        self.engine = engine

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        notes = []
        for entry in entries:
            envelope = entry.envelope()
            described = describe(envelope.data)
            if described is not None:
                notes.append(_Note(envelope, *described))
        if not notes:
            return
        async with self.engine.begin() as connection:
            customers = {
                n.envelope.subject: n.envelope.data.customer_id
                for n in notes
                if isinstance(n.envelope.data, OrderPlaced)
            }
            unknown = {n.envelope.subject for n in notes} - customers.keys()
            if unknown:
                rows = await connection.execute(
                    sa.select(notification_log.c.order_id, notification_log.c.customer_id).where(
                        notification_log.c.order_id.in_(unknown),
                        notification_log.c.kind == PLACED,
                    )
                )
                customers |= {row.order_id: row.customer_id for row in rows}
            rows_to_log = []
            for note in notes:
                customer_id = customers.get(note.envelope.subject)
                if customer_id is None:  # placed before this service kept a log
                    log.warning("no customer known for order", order_id=note.envelope.subject)
                    continue
                rows_to_log.append(_row(note, customer_id))
            if not rows_to_log:
                return
            inserted = await connection.execute(_LOG_NEW, rows_to_log)
            fresh = [dict(row._mapping) for row in inserted]
        await self._publish(fresh)

    async def _publish(self, rows: list[dict[str, Any]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in sorted(rows, key=lambda r: r["event_time"]):
                message = msgspec.json.encode(
                    {
                        "order_id": row["order_id"],
                        "customer_id": row["customer_id"],
                        "kind": row["kind"],
                        "message": row["message"],
                        "at": row["event_time"].isoformat(),
                    }
                )
                pipe.publish(customer_channel(row["customer_id"]), message)
                pipe.publish(FEED, message)
            await pipe.execute()


def _row(note: _Note, customer_id: str) -> dict[str, Any]:
    return {
        "event_source": note.envelope.source,
        "event_id": note.envelope.id,
        "order_id": note.envelope.subject,
        "customer_id": customer_id,
        "kind": note.kind,
        "message": note.message,
        "event_time": note.envelope.time,
    }
