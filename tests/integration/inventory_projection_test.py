"""The inventory read model from real catalog and warehouse events, applied exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from contracts import CatalogItemUpdated, StockReceived, new_envelope
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.topology import CATALOG, Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.checkpointed import apply_exactly_once
from projections.inventory import INVENTORY
from projections.recorded import Recorded
from projections.tables import inventory

TOPOLOGY = Topology(partitions=2)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE inventory, projection_checkpoints"))
    yield engine
    await engine.dispose()


async def delivered(redis: aioredis.Redis, events: list[Any]) -> list[StreamEntry]:
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(new_envelope(e, source="/tests", subject=e.sku)) for e in events]
    )
    entries: list[StreamEntry] = []

    async def collect(batch: Sequence[StreamEntry]) -> None:
        entries.extend(batch)

    config = ConsumerConfig(group=INVENTORY.name, consumer="t", block_ms=10)
    runner = StreamConsumer(redis, TOPOLOGY.partitions_of(CATALOG), collect, config)
    await runner.ensure_groups()
    while await runner.run_once():
        pass
    return entries


async def row(engine: AsyncEngine, sku: str) -> Any:
    async with engine.connect() as connection:
        return (
            await connection.execute(sa.select(inventory).where(inventory.c.sku == sku))
        ).first()


async def test_catalog_sets_and_warehouses_add_stock_once(
    engine: AsyncEngine, redis: aioredis.Redis
) -> None:
    entries = await delivered(
        redis,
        [
            StockReceived(sku="SKU-1", quantity=5, warehouse="w"),  # before the SKU is priced
            CatalogItemUpdated(sku="SKU-1", price=999, currency="EUR", on_hand=10),
            StockReceived(sku="SKU-1", quantity=3, warehouse="w"),
            StockReceived(sku="SKU-2", quantity=7, warehouse="w"),
        ],
    )
    records = [Recorded.of(entry) for entry in entries]
    assert await apply_exactly_once(engine, INVENTORY.name, records, INVENTORY.apply) == 4
    assert await apply_exactly_once(engine, INVENTORY.name, records, INVENTORY.apply) == 0
    sku1, sku2 = await row(engine, "SKU-1"), await row(engine, "SKU-2")
    assert (sku1.on_hand, sku1.reserved, sku1.price, sku1.currency) == (13, 0, 999, "EUR")
    assert (sku2.on_hand, sku2.price) == (7, None)
