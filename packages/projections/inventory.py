"""The inventory read model: on hand, reserved and price per SKU."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import CatalogItemUpdated, StockReceived
from eventbus.consumer import StreamEntry
from projections.tables import inventory

INVENTORY = "inventory"


async def apply_inventory(connection: AsyncConnection, entries: list[StreamEntry]) -> None:
    """Apply catalog and warehouse events in stream order; other events do not touch stock."""
    for entry in entries:
        event = entry.envelope().data
        if isinstance(event, CatalogItemUpdated):
            values = {"price": event.price, "currency": event.currency, "on_hand": event.on_hand}
            statement = insert(inventory).values(sku=event.sku, **values)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[inventory.c.sku], set_={**values, "updated_at": sa.func.now()}
                )
            )
        elif isinstance(event, StockReceived):
            statement = insert(inventory).values(sku=event.sku, on_hand=event.quantity)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[inventory.c.sku],
                    set_={
                        "on_hand": inventory.c.on_hand + event.quantity,
                        "updated_at": sa.func.now(),
                    },
                )
            )
