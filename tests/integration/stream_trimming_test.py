"""Trimming keeps streams short while the archive keeps every event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.archive import ARCHIVE
from projections.checkpointed import apply_exactly_once
from projections.recorded import Recorded
from projections.tables import event_archive
from projections.trimming import trim_streams

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


def archiver(redis: aioredis.Redis, engine: AsyncEngine) -> StreamConsumer:
    async def handle(entries: Sequence[StreamEntry]) -> None:
        records = [Recorded.of(entry) for entry in entries]
        await apply_exactly_once(engine, ARCHIVE.name, records, ARCHIVE.apply)

    config = ConsumerConfig(group=ARCHIVE.name, consumer="a", block_ms=10, batch_size=100)
    return StreamConsumer(redis, PARTITIONS, handle, config)


def slow_reader(redis: aioredis.Redis, seen: list[str]) -> StreamConsumer:
    async def handle(entries: Sequence[StreamEntry]) -> None:
        seen.extend(entry.entry_id for entry in entries)

    config = ConsumerConfig(group="notifications", consumer="n", block_ms=10, batch_size=10)
    return StreamConsumer(redis, PARTITIONS, handle, config)


async def total_length(redis: aioredis.Redis) -> int:
    return sum([await redis.xlen(p.stream) for p in PARTITIONS])


async def archived(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(sa.select(sa.func.count()).select_from(event_archive))
    return int(count or 0)


async def append(redis: aioredis.Redis, count: int, offset: int) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    await appender.append_batch(
        [PendingAppend(stock_received(f"SKU-{n}")) for n in range(offset, offset + count)]
    )


async def drain(consumer: StreamConsumer) -> None:
    while await consumer.run_once():
        pass


async def test_only_archived_and_everywhere_acked_entries_are_trimmed(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    seen: list[str] = []
    archive, reader = archiver(redis, engine), slow_reader(redis, seen)
    await archive.ensure_groups()
    await reader.ensure_groups()
    await append(redis, 200, 0)

    # Nothing archived yet: nothing may go, whatever the other group did.
    await drain(reader)
    assert await trim_streams(redis, engine, PARTITIONS, approximate=False) == 0

    # Archived, but the reader group has not read the newer half yet.
    await append(redis, 100, 200)
    await drain(archive)
    removed = await trim_streams(redis, engine, PARTITIONS, approximate=False)
    assert removed == 200
    assert await total_length(redis) == 100
    assert await archived(engine) == 300

    await drain(reader)
    assert await trim_streams(redis, engine, PARTITIONS, approximate=False) == 100
    assert await total_length(redis) == 0
    assert await archived(engine) == 300
    assert len(seen) == 300  # the reader lost nothing to trimming


async def test_stream_length_stays_bounded_under_sustained_appends(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    archive = archiver(redis, engine)
    await archive.ensure_groups()
    longest = 0
    for round_number in range(30):
        await append(redis, 100, round_number * 100)
        longest = max(longest, await total_length(redis))
        await drain(archive)
        await trim_streams(redis, engine, PARTITIONS, approximate=False)
    assert longest <= 100  # one round's appends at most, not 3,000
    assert await archived(engine) == 3000
