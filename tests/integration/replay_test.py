"""Replay reads the archive, then the live tail, with no gap and no duplicate, while events
keep arriving, the archive keeps filling and trimming keeps cutting the streams' heads."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

import migrations
from contracts import EventEnvelope, OrderPlaced, new_envelope
from contracts.testing import CONFIRMED, order_history, order_mix
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.dead_letters import DeadLetters
from eventbus.topology import ORDERS, Partition, Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.archive import ARCHIVE
from projections.checkpointed import apply_exactly_once
from projections.positions import StreamPosition
from projections.recorded import Recorded
from projections.replay import replay
from projections.trimming import trim_streams

TOPOLOGY = Topology(partitions=3)
PARTITIONS = TOPOLOGY.all_partitions()
START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE event_archive, projection_checkpoints"))
    yield engine
    await engine.dispose()


def archiver(
    redis: aioredis.Redis, engine: AsyncEngine, *, refusing: Collection[str] = ()
) -> StreamConsumer:
    """Archives each batch, then trims exactly as far as is safe, as the projector does.

    It fails on the events whose ids are in ``refusing``, which go to the dead letters."""

    async def handle(entries: Sequence[StreamEntry]) -> None:
        records = [Recorded.of(entry) for entry in entries]
        if any(record.id in refusing for record in records):
            raise ValueError("refused")
        await apply_exactly_once(engine, ARCHIVE.name, records, ARCHIVE.apply)
        await trim_streams(redis, engine, PARTITIONS, approximate=False)

    config = ConsumerConfig(group=ARCHIVE.name, consumer="a", block_ms=10, batch_size=40)
    if refusing:
        config = replace(config, max_deliveries=1, retry_backoff_s=0.0)
    return StreamConsumer(redis, PARTITIONS, handle, config)


async def drain(consumer: StreamConsumer) -> None:
    await consumer.ensure_groups()
    while await consumer.run_once():
        pass


async def archive_and_trim(
    redis: aioredis.Redis, engine: AsyncEngine, *, refusing: Collection[str] = ()
) -> None:
    """Archive all there is, then trim once more: a batch cannot trim itself (it is pending
    while it is handled)."""
    await drain(archiver(redis, engine, refusing=refusing))
    await trim_streams(redis, engine, PARTITIONS, approximate=False)


async def replay_everything(
    redis: aioredis.Redis, engine: AsyncEngine, after: dict[str, StreamPosition], page: int
) -> dict[str, list[str]]:
    """One replay of every partition from ``after``, which it moves forward."""
    seen: dict[str, list[str]] = defaultdict(list)
    async with engine.connect() as connection:
        for partition in PARTITIONS:
            stream = partition.stream
            async for batch in replay(redis, connection, partition, after=after[stream], page=page):
                seen[stream] += [str(record.position) for record in batch]
                after[stream] = batch[-1].position
    return seen


async def test_replay_while_appending_archiving_and_trimming_has_no_gap_or_duplicate(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    archive = archiver(redis, engine)
    await archive.ensure_groups()
    events = list(order_mix(300, skus=20, start=START))
    appended: dict[str, list[str]] = defaultdict(list)
    shortest_stream_seen = len(events)
    half_written = asyncio.Event()

    async def append_archive_and_trim() -> None:
        nonlocal shortest_stream_seen
        for start in range(0, len(events), 25):
            if start >= len(events) // 2:
                half_written.set()
            for result in await appender.append_batch(
                [PendingAppend(e) for e in events[start : start + 25]]
            ):
                appended[result.stream].append(result.entry_id)
            while await archive.run_once():
                pass
            lengths = [await redis.xlen(p.stream) for p in PARTITIONS]
            shortest_stream_seen = min(shortest_stream_seen, sum(lengths))

    # Half the history first, so the replay starts with most of it only in the archive.
    writer = asyncio.create_task(append_archive_and_trim())
    await asyncio.wait_for(half_written.wait(), 60)
    replayed: dict[str, list[str]] = defaultdict(list)
    after = {p.stream: StreamPosition(0, 0) for p in PARTITIONS}
    rounds_while_writing = 0
    while not writer.done():
        for stream, ids in (await replay_everything(redis, engine, after, page=7)).items():
            replayed[stream] += ids
        rounds_while_writing += 1
    await writer
    for stream, ids in (await replay_everything(redis, engine, after, page=7)).items():
        replayed[stream] += ids

    assert rounds_while_writing >= 1
    assert dict(replayed) == dict(appended)  # every event, once, in stream order
    # The streams were cut while the replay ran, so part of what it read was only archived.
    assert shortest_stream_seen < 25 * 2
    assert sum(map(len, appended.values())) == len(events)


async def test_replay_stops_at_until_inclusive(redis: aioredis.Redis, engine: AsyncEngine) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    archive = archiver(redis, engine)
    await archive.ensure_groups()
    events = list(order_mix(40, skus=5, start=START))
    results = await appender.append_batch([PendingAppend(e) for e in events[:100]])
    while await archive.run_once():  # archived, and trimmed to nothing
        pass
    await appender.append_batch([PendingAppend(e) for e in events[100:]])
    partition = PARTITIONS[0]
    # Every entry of the partition, whether it is still in Redis or only in the archive.
    in_redis = {entry_id.decode() for entry_id, _ in await redis.xrange(partition.stream)}
    assert {r.entry_id for r in results} - in_redis  # trimmed: the replay needs the archive
    ids = sorted(
        {r.entry_id for r in results if r.stream == partition.stream} | in_redis,
        key=StreamPosition.parse,
    )
    until = StreamPosition.parse(ids[len(ids) // 2])
    async with engine.connect() as connection:
        got = [
            str(record.position)
            async for batch in replay(redis, connection, partition, until=until, page=3)
            for record in batch
        ]
    assert got == ids[: len(ids) // 2 + 1]


async def test_only_the_named_events_bring_their_payload_from_the_archive(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    archive = archiver(redis, engine)
    await archive.ensure_groups()
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(e) for e in order_mix(20, skus=3, start=START)]
    )
    while await archive.run_once():  # archived, and trimmed to nothing
        pass
    records = []
    async with engine.connect() as connection:
        for partition in PARTITIONS:
            async for batch in replay(redis, connection, partition, payloads_of={"OrderPlaced"}):
                records += batch
    in_redis = {
        (partition.stream, entry_id.decode())
        for partition in PARTITIONS
        for entry_id, _ in await redis.xrange(partition.stream)
    }
    placed = [r for r in records if r.name == "OrderPlaced"]
    # From the archive (what Redis still holds comes whole, as the stream has it).
    others = [
        r
        for r in records
        if r.name != "OrderPlaced" and (r.stream, str(r.position)) not in in_redis
    ]
    assert len(placed) == 20 and others
    assert all(isinstance(r.event, OrderPlaced) and r.event.order_id == r.subject for r in placed)
    assert all(r.payload == b"" for r in others)
    assert all(r.type and r.time for r in others)  # their attributes are all there


# --- what in Redis is not history: requeued copies, undecodable entries ---------------------


def one_order(order_id: str = "o-1") -> list[EventEnvelope]:
    return [
        new_envelope(event, source="/replay", subject=order_id)
        for event in order_history(order_id, CONFIRMED)
    ]


def partition_of(envelope: EventEnvelope) -> Partition:
    return TOPOLOGY.partition(ORDERS, envelope.subject)


async def replayed(
    redis: aioredis.Redis, engine: AsyncEngine, partition: Partition, page: int = 3
) -> list[Recorded]:
    async with engine.connect() as connection:
        return [
            record
            async for batch in replay(redis, connection, partition, page=page)
            for record in batch
        ]


async def requeue_the_dead_letter(redis: aioredis.Redis, group: str) -> None:
    dead_letters = DeadLetters(redis, PARTITIONS)
    [letter] = await dead_letters.list()
    assert letter.group == group
    await dead_letters.requeue(letter.address)


async def test_a_copy_requeued_for_another_group_is_not_replayed(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    events = one_order()
    failed = events[2]
    partition = partition_of(failed)
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(e) for e in events])

    async def refuse(entries: Sequence[StreamEntry]) -> None:
        if any(Recorded.of(entry).id == failed.id for entry in entries):
            raise ValueError("refused")

    config = ConsumerConfig(
        group="orders", consumer="o", block_ms=10, max_deliveries=1, retry_backoff_s=0.0
    )
    await drain(StreamConsumer(redis, PARTITIONS, refuse, config))
    await archive_and_trim(redis, engine)  # every original, trimmed from Redis
    await requeue_the_dead_letter(redis, "orders")
    [(_, copy)] = await redis.xrange(partition.stream)
    assert copy[b"requeued_for"] == b"orders"

    # The original, from the archive, is the record; the copy in Redis is skipped.
    assert [r.id for r in await replayed(redis, engine, partition)] == [e.id for e in events]
    await archive_and_trim(redis, engine)  # acks the copy unhandled: it stays
    assert await redis.xlen(partition.stream) == 1
    assert [r.id for r in await replayed(redis, engine, partition)] == [e.id for e in events]


async def test_a_copy_requeued_for_the_archive_is_replayed_once(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    events = one_order()
    failed = events[2]
    partition = partition_of(failed)
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(e) for e in events])
    await archive_and_trim(redis, engine, refusing={failed.id})
    # Trimming passed the original: the archive applied the entries after it.
    assert await redis.xlen(partition.stream) == 0
    await requeue_the_dead_letter(redis, ARCHIVE.name)
    [(copy_id, copy)] = await redis.xrange(partition.stream)
    assert copy[b"requeued_for"] == ARCHIVE.name.encode()
    history = [e.id for e in events if e is not failed] + [failed.id]

    # The copy, from Redis, is the only record of the event: once, at the copy's place.
    records = await replayed(redis, engine, partition)
    assert [r.id for r in records] == history
    assert str(records[-1].position) == copy_id.decode()
    await archive_and_trim(redis, engine)  # archives the copy, and trims it
    assert await redis.xlen(partition.stream) == 0
    records = await replayed(redis, engine, partition)
    assert [r.id for r in records] == history
    assert str(records[-1].position) == copy_id.decode()


async def test_replay_skips_an_undecodable_entry_with_a_warning(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    events = one_order()
    partition = partition_of(events[0])
    appender = EventAppender(redis, TOPOLOGY)
    await appender.append_batch([PendingAppend(e) for e in events[:2]])
    # Consumers dead-letter each of these: no event field, not JSON, not a CloudEvent.
    bad = [
        (await redis.xadd(partition.stream, fields)).decode()
        for fields in (
            {"note": "written by hand"},
            {"event": b"not json"},
            {"event": b'{"specversion": "1.0"}'},
        )
    ]
    await appender.append_batch([PendingAppend(e) for e in events[2:]])

    with capture_logs() as logs:
        records = await replayed(redis, engine, partition, page=2)  # one page all bad

    assert [r.id for r in records] == [e.id for e in events]
    warnings = [log for log in logs if log["log_level"] == "warning"]
    assert [(w["stream"], w["entry_id"]) for w in warnings] == [
        (partition.stream, entry_id) for entry_id in bad
    ]


async def test_a_time_sent_with_an_offset_replays_as_it_was_applied_live(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    sent = datetime(2026, 11, 28, 11, 30, tzinfo=timezone(timedelta(hours=2)))
    event = order_history("o-1", CONFIRMED)[0]
    placed = new_envelope(event, source="/replay", subject="o-1", time=sent)
    partition = partition_of(placed)
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(placed)])
    [(entry_id, fields)] = await redis.xrange(partition.stream)
    assert b"+02:00" in fields[b"event"]  # the stream keeps what the sender wrote
    position = StreamPosition.parse(entry_id.decode())
    live = Recorded.decode(partition.stream, position, fields[b"event"])
    await archive_and_trim(redis, engine)  # the replay reads the archive
    assert await redis.xlen(partition.stream) == 0

    [from_archive] = await replayed(redis, engine, partition)
    assert live.time == from_archive.time == sent
    assert live.time.isoformat() == from_archive.time.isoformat() == "2026-11-28T09:30:00+00:00"
