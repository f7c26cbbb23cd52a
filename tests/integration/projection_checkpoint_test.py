"""Exactly-once application against real Redis entries and a real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import migrations
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.archive import ARCHIVE
from projections.checkpointed import apply_exactly_once, checkpoint_of
from projections.positions import StreamPosition
from projections.recorded import Recorded
from projections.tables import event_archive

TOPOLOGY = Topology(partitions=2)
PARTITIONS = TOPOLOGY.partitions_of(CATALOG)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE event_archive, projection_checkpoints"))
    yield engine
    await engine.dispose()


async def read_all(redis: aioredis.Redis, skus: list[str]) -> list[Recorded]:
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(stock_received(s)) for s in skus]
    )
    entries: list[StreamEntry] = []

    async def collect(batch: Sequence[StreamEntry]) -> None:
        entries.extend(batch)

    runner = StreamConsumer(
        redis, PARTITIONS, collect, ConsumerConfig(group="g", consumer="c", block_ms=10)
    )
    await runner.ensure_groups()
    while await runner.run_once():
        pass
    return [Recorded.of(entry) for entry in entries]


async def archived_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(event_archive.c.id).order_by(event_archive.c.id))
        return [row.id for row in rows]


async def test_a_redelivered_batch_is_not_applied_twice(
    engine: AsyncEngine, redis: aioredis.Redis
) -> None:
    entries = await read_all(redis, [f"SKU-{n}" for n in range(20)])
    calls: list[int] = []

    async def counting_archive(connection: AsyncConnection, fresh: list[Recorded]) -> None:
        calls.append(len(fresh))
        await ARCHIVE.apply(connection, fresh)

    assert await apply_exactly_once(engine, ARCHIVE.name, entries, counting_archive) == 20
    assert await apply_exactly_once(engine, ARCHIVE.name, entries, counting_archive) == 0
    assert await apply_exactly_once(engine, ARCHIVE.name, entries[5:12], counting_archive) == 0
    assert calls == [20]
    assert len(await archived_ids(engine)) == 20
    for partition in PARTITIONS:
        mine = [r.position for r in entries if r.stream == partition.stream]
        assert await checkpoint_of(engine, ARCHIVE.name, partition.stream) == max(mine)


async def test_a_failing_projection_commits_neither_rows_nor_checkpoint(
    engine: AsyncEngine, redis: aioredis.Redis
) -> None:
    entries = await read_all(redis, ["SKU-A", "SKU-B"])

    async def archive_then_fail(connection: AsyncConnection, fresh: list[Recorded]) -> None:
        await ARCHIVE.apply(connection, fresh)
        raise RuntimeError("crash after writing, before commit")

    with pytest.raises(RuntimeError, match="crash after writing"):
        await apply_exactly_once(engine, ARCHIVE.name, entries, archive_then_fail)
    assert await archived_ids(engine) == []
    for partition in PARTITIONS:
        assert await checkpoint_of(engine, ARCHIVE.name, partition.stream) == StreamPosition(0, 0)
    assert await apply_exactly_once(engine, ARCHIVE.name, entries, ARCHIVE.apply) == 2


async def test_the_same_event_under_a_new_entry_is_archived_once(
    engine: AsyncEngine, redis: aioredis.Redis
) -> None:
    [entry] = await read_all(redis, ["SKU-R"])
    requeued_id = await redis.xadd(entry.stream, {"event": entry.payload})
    requeued = Recorded.decode(
        entry.stream, StreamPosition.parse(requeued_id.decode()), entry.payload
    )
    assert await apply_exactly_once(engine, ARCHIVE.name, [entry], ARCHIVE.apply) == 1
    assert await apply_exactly_once(engine, ARCHIVE.name, [requeued], ARCHIVE.apply) == 1
    assert len(await archived_ids(engine)) == 1
    assert await checkpoint_of(engine, ARCHIVE.name, entry.stream) == (requeued.position)
