"""The inventory read model: on hand, reserved and price per SKU.

The catalog sets a SKU's price and on-hand count; warehouse deliveries add stock; the
inventory service's per-SKU stock events move units into ``reserved`` (``StockReserved``),
out of it (``StockReleased``) and out of stock altogether (``StockCommitted``); available =
on_hand - reserved. A batch is folded per SKU and written with two statements, whatever its
size.

A read model must equal a replay of its events, and only events of one stream have an order
that every reader agrees on. So every column follows only the SKU's own catalog stream, where
the inventory service appends each stock move in the same atomic step as it moves the SKU's
live Redis entry (``inventory.stock``): folding that stream gives exactly what Redis holds.
The order-level Inventory* events are not read: an order stream has no defined order
relative to a catalog stream, so a rebuild could apply them elsewhere among a SKU's catalog
updates and come out different.

A commit takes ``on_hand`` down by its quantity but not below zero, as the Redis script does
(a catalog count may be set below what is reserved). Clamped subtractions do not commute with
additions, so the fold keeps the composition of a batch's steps in a form that does compose:
``on_hand -> max(on_hand + delta, floor)``, with no floor until a commit sets one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TIMESTAMP, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import (
    CatalogItemUpdated,
    StockCommitted,
    StockReceived,
    StockReleased,
    StockReserved,
)
from projections import tables
from projections.projection import Apply, Projection
from projections.recorded import Recorded
from projections.recordsets import recordset, rows_parameter

_STOCK_EVENTS = frozenset(
    e.__name__
    for e in (
        CatalogItemUpdated,
        StockReceived,
        StockReserved,
        StockCommitted,
        StockReleased,
    )
)


class _Change(msgspec.Struct):
    """What one batch does to one SKU, folded in stream order."""

    sku: str
    # Set by a catalog update: the values it set, before the deltas that followed it.
    catalogued: bool = False
    price: int | None = None
    currency: str | None = None
    on_hand: int = 0
    # on_hand after the batch = max(on_hand before (or as set) + on_hand_delta, on_hand_floor)
    on_hand_delta: int = 0
    on_hand_floor: int | None = None
    reserved_delta: int = 0
    # The latest time among the SKU's events, not the time of the write, and the latest rather
    # than the last, so that the value does not depend on how streams interleave.
    updated_at: datetime | None = None


def inventory_writer(inventory: sa.Table) -> Apply:
    changes_of = recordset(
        sa.column("sku", sa.Text),
        sa.column("catalogued", sa.Boolean),
        sa.column("price", sa.BigInteger),
        sa.column("currency", sa.Text),
        sa.column("on_hand", sa.BigInteger),
        sa.column("on_hand_delta", sa.BigInteger),
        sa.column("on_hand_floor", sa.BigInteger),
        sa.column("reserved_delta", sa.BigInteger),
        sa.column("updated_at", TIMESTAMP(timezone=True)),
    )
    d = changes_of.c
    # Rows first, so that the update below has one to change for every SKU of the batch.
    create = (
        insert(inventory)
        .from_select([inventory.c.sku, inventory.c.updated_at], sa.select(d.sku, d.updated_at))
        .on_conflict_do_nothing(index_elements=[inventory.c.sku])
    )
    update = (
        sa.update(inventory)
        .where(inventory.c.sku == d.sku)
        .values(
            # GREATEST ignores a NULL floor.
            on_hand=sa.func.greatest(
                sa.case((d.catalogued, d.on_hand), else_=inventory.c.on_hand) + d.on_hand_delta,
                d.on_hand_floor,
            ),
            reserved=inventory.c.reserved + d.reserved_delta,
            price=sa.case((d.catalogued, d.price), else_=inventory.c.price),
            currency=sa.case((d.catalogued, d.currency), else_=inventory.c.currency),
            updated_at=sa.func.greatest(inventory.c.updated_at, d.updated_at),
        )
    )

    async def apply(connection: AsyncConnection, records: list[Recorded]) -> None:
        changes: dict[str, _Change] = {}

        for record in records:
            if record.name not in _STOCK_EVENTS:
                continue  # not decoded: most events of a replay are not about stock
            event, at = record.event, record.time
            if isinstance(event, CatalogItemUpdated):
                change = _change(changes, event.sku, at)
                change.catalogued, change.price, change.currency = True, event.price, event.currency
                change.on_hand, change.on_hand_delta, change.on_hand_floor = event.on_hand, 0, None
            elif isinstance(event, StockReceived):
                change = _change(changes, event.sku, at)
                change.on_hand_delta += event.quantity
                if change.on_hand_floor is not None:
                    change.on_hand_floor += event.quantity
            elif isinstance(event, StockReserved):
                _change(changes, event.sku, at).reserved_delta += event.quantity
            elif isinstance(event, StockReleased):
                _change(changes, event.sku, at).reserved_delta -= event.quantity
            elif isinstance(event, StockCommitted):
                change = _change(changes, event.sku, at)
                change.reserved_delta -= event.quantity
                # max(max(x + d, f) - q, 0) = max(x + (d - q), max(f - q, 0))
                change.on_hand_delta -= event.quantity
                floor = change.on_hand_floor
                change.on_hand_floor = 0 if floor is None else max(floor - event.quantity, 0)
        if changes:
            # Sorted, so concurrent batches lock shared SKUs in one order.
            parameters: dict[str, Any] = rows_parameter(sorted(changes.values(), key=_sku))
            await connection.execute(create, parameters)
            await connection.execute(update, parameters)

    return apply


def _change(changes: dict[str, _Change], sku: str, at: datetime) -> _Change:
    change = changes.get(sku)
    if change is None:
        change = changes[sku] = _Change(sku)
    change.updated_at = at if change.updated_at is None else max(change.updated_at, at)
    return change


def _sku(change: _Change) -> str:
    return change.sku


INVENTORY = Projection("inventory", (tables.inventory,), inventory_writer, decodes=_STOCK_EVENTS)
