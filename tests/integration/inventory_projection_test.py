"""The inventory read model from real catalog, warehouse and stock-move events, applied exactly
once, equal to the SKUs' live Redis entries and to a replay in one batch."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from contracts import (
    CatalogItemUpdated,
    InventoryReserved,
    OrderItem,
    StockReceived,
    new_envelope,
)
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.topology import CATALOG, Topology
from inventory.catalog_copy import ON_HAND, RESERVED, catalog_item_key, catalog_side_writes
from inventory.stock import StockLedger
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.archive import ARCHIVE
from projections.checkpointed import apply_exactly_once
from projections.inventory import INVENTORY
from projections.projection import Projection
from projections.rebuild import rebuild
from projections.recorded import Recorded
from projections.tables import event_archive, inventory
from projections.trimming import trim_streams
from tests.databases import fresh_database

TOPOLOGY = Topology(partitions=2)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("TRUNCATE inventory, projection_checkpoints, event_archive")
        )
    yield engine
    await engine.dispose()


async def delivered(redis: aioredis.Redis, events: list[Any]) -> list[StreamEntry]:
    """``events`` appended, then every entry of the catalog streams, as the projection reads."""
    if events:
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


async def consumed(
    redis: aioredis.Redis, handle: Any, *, batch_size: int, group: str = INVENTORY.name
) -> None:
    """Every partition through ``handle`` in batches of ``batch_size``, as the projector reads."""
    config = ConsumerConfig(group=group, consumer="t", block_ms=10, batch_size=batch_size)
    runner = StreamConsumer(redis, TOPOLOGY.all_partitions(), handle, config)
    await runner.ensure_groups()
    while await runner.run_once():
        pass


class StockMix:
    """Deliveries, recounts (some below what is reserved) and orders' reservations, commits
    and releases on a few SKUs, through the real appender and stock scripts."""

    def __init__(self, redis: aioredis.Redis, skus: int, seed: int) -> None:
        self.redis = redis
        self.appender = EventAppender(redis, TOPOLOGY)
        self.ledger = StockLedger(redis, TOPOLOGY)
        self.rng = random.Random(seed)
        self.skus = [f"SKU-{n}" for n in range(skus)]
        self.held: list[tuple[str, list[OrderItem]]] = []
        self.rejected = self.clamped = 0

    async def run(self, steps: int) -> None:
        rng = self.rng
        for sku in self.skus:
            await self.count(sku, rng.randrange(30))
        for step in range(steps):
            roll, sku = rng.random(), rng.choice(self.skus)
            if roll < 0.2:
                await self.catalog_event(
                    StockReceived(sku=sku, quantity=rng.randint(1, 9), warehouse="w")
                )
            elif roll < 0.25:
                await self.count(sku, rng.randrange(6))
            elif roll < 0.7 or not self.held:
                await self.reserve(f"o-{step}")
            elif rng.random() < 0.6:
                await self.commit(*self.held.pop(rng.randrange(len(self.held))))
            else:
                await self.ledger.release(*self.held.pop(rng.randrange(len(self.held))))
        # Then a count finds fewer units than are held, and half the held orders commit, with
        # no count after them to hide a commit that went wrong.
        for sku in self.skus:
            await self.count(sku, rng.randrange(3))
        for order_id, items in self.held[::2]:
            await self.commit(order_id, items)
        del self.held[::2]

    async def catalog_event(self, event: CatalogItemUpdated | StockReceived) -> None:
        envelope = new_envelope(event, source="/tests", subject=event.sku)
        side_writes = catalog_side_writes(envelope, TOPOLOGY)
        await self.appender.append_batch([PendingAppend(envelope, side_writes=side_writes)])

    async def count(self, sku: str, on_hand: int) -> None:
        await self.catalog_event(
            CatalogItemUpdated(sku=sku, price=100, currency="EUR", on_hand=on_hand)
        )

    async def reserve(self, order_id: str) -> None:
        items = [
            OrderItem(sku=sku, quantity=self.rng.randint(1, 3))
            for sku in self.rng.sample(self.skus, self.rng.randint(1, 3))
        ]
        if not (await self.ledger.reserve(order_id, items)).reserved:
            self.rejected += 1
            return
        self.held.append((order_id, items))
        # The order-level answer: on an order stream, and no business of this model.
        answer = InventoryReserved(order_id=order_id, items=tuple(items))
        await self.appender.append(new_envelope(answer, source="/tests", subject=order_id))

    async def commit(self, order_id: str, items: list[OrderItem]) -> None:
        for item in items:
            if await self.on_hand(item.sku) < item.quantity:
                self.clamped += 1
        await self.ledger.commit(order_id, items)

    async def on_hand(self, sku: str) -> int:
        return int(await self.redis.hget(catalog_item_key(TOPOLOGY, sku), ON_HAND) or 0)


async def test_stock_moves_fold_into_what_redis_holds_however_they_are_batched(
    engine: AsyncEngine, redis: aioredis.Redis, postgres_server: PostgresServer
) -> None:
    """The projection applied live in small batches equals the SKUs' live Redis entries, and
    a replay of the same events in one batch."""
    mix = StockMix(redis, skus=6, seed=11)
    await mix.run(300)
    # The mix has it all: orders held at the end, refused ones, commits that hit zero.
    assert mix.held and mix.rejected and mix.clamped, (mix.held, mix.rejected, mix.clamped)

    async def apply_live(entries: Sequence[StreamEntry]) -> None:
        records = [Recorded.of(entry) for entry in entries]
        await apply_exactly_once(engine, INVENTORY.name, records, INVENTORY.apply)

    await consumed(redis, apply_live, batch_size=5)
    live = await stock_rows(engine)
    for sku in mix.skus:
        on_hand, reserved = await redis.hmget(catalog_item_key(TOPOLOGY, sku), ON_HAND, RESERVED)
        assert live[sku] == (int(on_hand), int(reserved or 0)), sku

    everything: list[StreamEntry] = []

    async def collect(entries: Sequence[StreamEntry]) -> None:
        everything.extend(entries)

    await consumed(redis, collect, batch_size=10_000, group="replay")
    replay = create_engine(await fresh_database(postgres_server, "inventory_replay"))
    try:
        records = [Recorded.of(entry) for entry in everything]
        await apply_exactly_once(replay, INVENTORY.name, records, INVENTORY.apply)
        assert await stock_rows(replay) == live
    finally:
        await replay.dispose()


async def test_a_rebuild_from_the_archive_gives_the_live_rows(
    engine: AsyncEngine, redis: aioredis.Redis
) -> None:
    mix = StockMix(redis, skus=4, seed=5)
    await mix.run(120)
    partitions = TOPOLOGY.all_partitions()

    def applying(projection: Projection) -> Any:
        async def apply(entries: Sequence[StreamEntry]) -> None:
            records = [Recorded.of(entry) for entry in entries]
            await apply_exactly_once(engine, projection.name, records, projection.apply)

        return apply

    # Archived and projected, then trimmed: the rebuild replays the archive.
    await consumed(redis, applying(ARCHIVE), batch_size=50, group=ARCHIVE.name)
    await consumed(redis, applying(INVENTORY), batch_size=50)
    await trim_streams(redis, engine, partitions, approximate=False)
    assert all([await redis.xlen(p.stream) == 0 for p in partitions])
    live = await stock_rows(engine)
    assert len(live) == 4

    async with engine.connect() as connection:
        archived = await connection.scalar(sa.select(sa.func.count()).select_from(event_archive))
    result = await rebuild(redis, engine, [INVENTORY], partitions)
    assert result.events == archived
    assert await stock_rows(engine) == live


async def stock_rows(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            sa.select(inventory.c.sku, inventory.c.on_hand, inventory.c.reserved)
        )
        return {row.sku: (row.on_hand, row.reserved) for row in result}


async def test_a_commit_past_a_count_below_the_reservation_stops_at_zero_in_any_batching(
    engine: AsyncEngine, redis: aioredis.Redis, postgres_server: PostgresServer
) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    ledger = StockLedger(redis, TOPOLOGY)

    async def catalog_event(event: Any) -> None:
        envelope = new_envelope(event, source="/tests", subject=event.sku)
        side_writes = catalog_side_writes(envelope, TOPOLOGY)
        await appender.append_batch([PendingAppend(envelope, side_writes=side_writes)])

    await catalog_event(CatalogItemUpdated(sku="SKU-1", price=1, currency="EUR", on_hand=5))
    await ledger.reserve("o-1", [OrderItem(sku="SKU-1", quantity=4)])
    await ledger.reserve("o-2", [OrderItem(sku="SKU-1", quantity=1)])
    await catalog_event(CatalogItemUpdated(sku="SKU-1", price=1, currency="EUR", on_hand=2))
    await ledger.commit("o-1", [OrderItem(sku="SKU-1", quantity=4)])  # 2 - 4: stops at 0
    await catalog_event(StockReceived(sku="SKU-1", quantity=3, warehouse="w"))
    await ledger.commit("o-2", [OrderItem(sku="SKU-1", quantity=1)])  # 3 - 1
    on_hand, reserved = await redis.hmget(catalog_item_key(TOPOLOGY, "SKU-1"), ON_HAND, RESERVED)
    assert (int(on_hand), int(reserved)) == (2, 0)

    entries = await delivered(redis, [])
    assert len(entries) == 7
    records = [Recorded.of(entry) for entry in entries]
    for size in (1, 2, 3, 7):  # every way of cutting the stream into batches of one size
        url = await fresh_database(postgres_server, f"inventory_batches_{size}")
        batched = create_engine(url)
        try:
            for start in range(0, len(records), size):
                batch = records[start : start + size]
                await apply_exactly_once(batched, INVENTORY.name, batch, INVENTORY.apply)
            assert await stock_rows(batched) == {"SKU-1": (2, 0)}, size
        finally:
            await batched.dispose()
