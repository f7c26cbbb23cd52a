"""Blue/green rebuild: fresh tables from the archive and the streams, swapped in atomically."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from contracts.testing import order_mix
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.topology import Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer, RedisServer
from projections.archive import ARCHIVE
from projections.checkpointed import apply_exactly_once
from projections.inventory import INVENTORY
from projections.orders import ORDERS_PROJECTION
from projections.projection import Projection
from projections.rebuild import RebuildRefused, Workers, events_to_replay, rebuild, verify
from projections.recorded import Recorded
from projections.replay import replay
from projections.tables import inventory as inventory_table
from projections.trimming import trim_streams
from tests.databases import fresh_database

TOPOLOGY = Topology(partitions=3)
PARTITIONS = TOPOLOGY.all_partitions()
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
REBUILT = (ORDERS_PROJECTION, INVENTORY)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(
            sa.text("TRUNCATE event_archive, projection_checkpoints, orders, inventory")
        )
    yield engine
    await engine.dispose()


def live(redis: aioredis.Redis, engine: AsyncEngine, projection: Projection) -> StreamConsumer:
    """The projector's consumer for one projection; the archive's also trims, as it does."""

    async def handle(entries: Sequence[StreamEntry]) -> None:
        records = [Recorded.of(entry) for entry in entries]
        await apply_exactly_once(engine, projection.name, records, projection.apply)
        if projection is ARCHIVE:
            await trim_streams(redis, engine, PARTITIONS, approximate=False)

    config = ConsumerConfig(group=projection.name, consumer="p", block_ms=5, batch_size=50)
    return StreamConsumer(redis, PARTITIONS, handle, config)


async def drain(*consumers: StreamConsumer) -> None:
    for consumer in consumers:  # every group first: trimming waits only for existing groups
        await consumer.ensure_groups()
    for consumer in consumers:
        while await consumer.run_once():
            pass


async def rows(engine: AsyncEngine, table: sa.Table) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        result = await connection.execute(sa.select(table).order_by(*table.primary_key.columns))
        return [tuple(row) for row in result]


async def table_shape(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every column and index of the rebuilt tables, as Postgres describes them."""
    names = [t.name for p in REBUILT for t in p.tables]
    async with engine.connect() as connection:
        columns = await connection.execute(
            sa.text(
                "SELECT table_name, column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = ANY(:names) ORDER BY table_name, column_name"
            ),
            {"names": names},
        )
        indexes = await connection.execute(
            sa.text(
                "SELECT tablename, indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename = ANY(:names)"
                " ORDER BY indexname"
            ),
            {"names": names},
        )
        return [tuple(r) for r in columns] + [tuple(r) for r in indexes]


async def schemas(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        result = await connection.execute(sa.text("SELECT nspname FROM pg_namespace"))
        return {row.nspname for row in result}


async def test_a_rebuild_equals_the_live_tables_row_for_row(
    redis: aioredis.Redis,
    engine: AsyncEngine,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
) -> None:
    events = list(order_mix(150, skus=10, start=START))
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(e) for e in events])
    consumers = [live(redis, engine, p) for p in (ARCHIVE, *REBUILT)]
    await drain(*consumers)  # archived, projected and trimmed: the replay reads the archive
    shape = await table_shape(engine)
    before = {p.name: await rows(engine, p.tables[0]) for p in REBUILT}
    assert len(before["orders"]) == 150 and len(before["inventory"]) == 10
    assert await events_to_replay(redis, engine, PARTITIONS) == len(events)

    progress: list[int] = []
    # In two processes, as `orderly projections rebuild` does on a machine with two cores.
    workers = Workers(2, redis_server.url, postgres_server.url)
    result = await rebuild(
        redis, engine, REBUILT, PARTITIONS, on_progress=progress.append, workers=workers
    )
    assert sum(progress) == result.events == len(events)  # one replay for both
    for projection in REBUILT:
        assert await rows(engine, projection.tables[0]) == before[projection.name]

    # Same columns, same index names and definitions: the migrations' tables, not look-alikes.
    assert await table_shape(engine) == shape
    assert not {s for s in await schemas(engine) if s.startswith(("rebuild_", "retired_"))}


async def test_a_rebuild_while_events_keep_arriving_equals_a_clean_replay(
    redis: aioredis.Redis, engine: AsyncEngine, postgres_server: PostgresServer
) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    archive, orders, inventory = (live(redis, engine, p) for p in (ARCHIVE, *REBUILT))
    await drain(archive, orders, inventory)
    events = list(order_mix(400, skus=10, start=START))
    first_half_written = asyncio.Event()

    async def keep_appending() -> None:
        for start in range(0, len(events), 40):
            await appender.append_batch([PendingAppend(e) for e in events[start : start + 40]])
            await drain(archive)
            if start >= len(events) // 2:
                first_half_written.set()

    projectors = [asyncio.create_task(c.run()) for c in (orders, inventory)]
    writer = asyncio.create_task(keep_appending())
    await asyncio.wait_for(first_half_written.wait(), 60)
    await rebuild(redis, engine, [ORDERS_PROJECTION], PARTITIONS)
    await rebuild(redis, engine, [INVENTORY], PARTITIONS)
    await writer
    for consumer in (orders, inventory):
        consumer.stop()
    await asyncio.gather(*projectors)
    await drain(archive, orders, inventory)

    clean = create_engine(await fresh_database(postgres_server, "rebuild_clean"))
    try:
        async with engine.connect() as connection:
            for partition in PARTITIONS:
                async for batch in replay(redis, connection, partition):
                    for projection in REBUILT:
                        await apply_exactly_once(clean, projection.name, batch, projection.apply)
        for projection in REBUILT:
            table = projection.tables[0]
            assert await rows(engine, table) == await rows(clean, table)
        assert len(await rows(clean, ORDERS_PROJECTION.tables[0])) == 400
    finally:
        await clean.dispose()


async def test_the_archive_is_not_rebuilt_and_one_rebuild_runs_at_a_time(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    with pytest.raises(RebuildRefused, match="source of replays"):
        await rebuild(redis, engine, [ORDERS_PROJECTION, ARCHIVE], PARTITIONS)
    async with engine.connect() as holder:
        key = sa.func.hashtext("orderly.rebuild.orders")
        assert await holder.scalar(sa.select(sa.func.pg_try_advisory_lock(key)))
        with pytest.raises(RebuildRefused, match="already running"):
            await rebuild(redis, engine, [INVENTORY, ORDERS_PROJECTION], PARTITIONS)
        await holder.execute(sa.select(sa.func.pg_advisory_unlock(key)))
    # The refused rebuild released the lock it had taken on inventory.
    result = await rebuild(redis, engine, [INVENTORY, ORDERS_PROJECTION], PARTITIONS)
    assert result.events == 0


async def test_verify_finds_live_tables_equal_to_a_replay_until_a_row_is_damaged(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    events = list(order_mix(60, skus=5, start=START))
    appender = EventAppender(redis, TOPOLOGY)
    await appender.append_batch([PendingAppend(e) for e in events[:200]])
    consumers = [live(redis, engine, p) for p in (ARCHIVE, *REBUILT)]
    await drain(*consumers)  # partly archived and trimmed: the replay reads both sources
    await appender.append_batch([PendingAppend(e) for e in events[200:]])
    await drain(*consumers[1:])  # the read models are ahead of the archive

    assert await verify(redis, engine, REBUILT, PARTITIONS) == []
    assert not {s for s in await schemas(engine) if s.startswith("rebuild_")}

    async with engine.begin() as connection:
        damaged = await connection.scalar(
            sa.update(inventory_table)
            .where(
                inventory_table.c.sku
                == sa.select(sa.func.min(inventory_table.c.sku)).scalar_subquery()
            )
            .values(on_hand=inventory_table.c.on_hand + 1)
            .returning(inventory_table.c.sku)
        )
    [difference] = await verify(redis, engine, REBUILT, PARTITIONS)
    assert (difference.projection, difference.table) == ("inventory", "inventory")
    assert (difference.only_live, difference.only_replayed) == (1, 1)
    assert difference.examples == [damaged]
