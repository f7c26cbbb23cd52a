"""How many orders the read model holds in each status (the dashboard's headline figures)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.orders import PENDING, TERMINAL
from projections.tables import orders

STATUSES = (PENDING, *TERMINAL)


async def orders_by_status(engine: AsyncEngine) -> dict[str, int]:
    """Every status, with 0 for those no order has, in the order an order goes through them."""
    statement = sa.select(orders.c.status, sa.func.count()).group_by(orders.c.status)
    async with engine.connect() as connection:
        counted = {status: int(count) for status, count in await connection.execute(statement)}
    return {status: counted.pop(status, 0) for status in STATUSES} | counted
