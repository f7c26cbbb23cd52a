"""Stuck sagas: the orders not yet terminal whose saga has waited on one step too long.

Read from the saga-health columns of the orders read model (``waiting_for``,
``waiting_since``), so it is one query on Postgres however many sagas Temporal holds, and
``orderly sagas stuck`` and the dashboard answer the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.orders import PENDING
from projections.tables import orders


@dataclass(frozen=True)
class StuckSaga:
    order_id: str
    customer_id: str
    # The step its saga waits on ("payment", "inventory reservation", ...) and since when.
    waiting_for: str | None
    waiting_since: datetime
    # How long it has waited, by the database's clock (the one every row was written with).
    waiting_ms: int
    placed_at: datetime
    total: int
    currency: str


async def stuck_sagas(
    engine: AsyncEngine, older_than: timedelta, *, limit: int = 100
) -> list[StuckSaga]:
    """PENDING orders waiting on their current step for at least ``older_than``, the longest
    wait first, at most ``limit`` of them."""
    # Every PENDING row gets a waiting_since from its OrderPlaced on; rows projected before
    # the saga-health columns existed have none and count from when they were placed.
    since = sa.func.coalesce(orders.c.waiting_since, orders.c.placed_at)
    waited_ms = sa.func.floor(sa.extract("epoch", sa.func.now() - since) * 1000)
    statement = (
        sa.select(
            orders.c.order_id,
            orders.c.customer_id,
            orders.c.waiting_for,
            since.label("waiting_since"),
            waited_ms.label("waiting_ms"),
            orders.c.placed_at,
            orders.c.total,
            orders.c.currency,
        )
        .where(orders.c.status == PENDING, since <= sa.func.now() - older_than)
        .order_by(since, orders.c.order_id)
        .limit(limit)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(statement)).all()
    return [
        StuckSaga(
            order_id=row.order_id,
            customer_id=row.customer_id,
            waiting_for=row.waiting_for,
            waiting_since=row.waiting_since,
            waiting_ms=max(0, int(row.waiting_ms)),
            placed_at=row.placed_at,
            total=row.total,
            currency=row.currency,
        )
        for row in rows
    ]


async def pending_count(engine: AsyncEngine) -> int:
    """Orders not yet terminal, stuck or not (the denominator next to the stuck list)."""
    async with engine.connect() as connection:
        count = await connection.scalar(
            sa.select(sa.func.count()).select_from(orders).where(orders.c.status == PENDING)
        )
    return int(count or 0)
