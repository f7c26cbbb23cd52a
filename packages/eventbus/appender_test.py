"""Appends against a real Redis: dedupe, optimistic concurrency, batches."""

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis

from contracts import decode_envelope
from eventbus.appender import (
    DEFAULT_DEDUPE_TTL,
    AlreadyClaimed,
    AppendRefused,
    Claim,
    EventAppender,
    PendingAppend,
    SideWrite,
    VersionConflict,
)
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology
from orderly_platform.embedded import RedisServer


def appender(redis: aioredis.Redis) -> EventAppender:
    return EventAppender(redis, Topology(partitions=4))


async def test_append_writes_the_event_and_reports_its_position(redis: aioredis.Redis) -> None:
    envelope = stock_received("SKU-A", 5)
    result = await appender(redis).append(envelope, expected_version=0)

    entries = await redis.xrange(result.stream)
    assert [entry_id.decode() for entry_id, _ in entries] == [result.entry_id]
    stored = decode_envelope(entries[0][1][b"event"])
    assert stored == msgspec.structs.replace(envelope, aggregateversion=1)
    assert (result.duplicate, result.version) == (False, 1)


async def test_a_repeated_event_returns_the_first_answer_and_writes_nothing(
    redis: aioredis.Redis,
) -> None:
    envelope = stock_received("SKU-A")
    first = await appender(redis).append(envelope)
    again = await appender(redis).append(envelope)
    assert again.entry_id == first.entry_id
    assert again.duplicate and not first.duplicate
    assert await redis.xlen(first.stream) == 1


async def test_the_same_event_sent_concurrently_is_written_once(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    envelope = stock_received("SKU-B")
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(20)]
    try:
        results = await asyncio.gather(*(appender(c).append(envelope) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    assert len({r.entry_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await redis.xlen(results[0].stream) == 1


async def test_two_writers_racing_on_one_version_exactly_one_wins_every_time(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    writers = [appender(aioredis.Redis.from_url(redis_server.url)) for _ in range(2)]
    rounds = 200
    try:
        for version in range(rounds):
            outcomes = await asyncio.gather(
                *(w.append(stock_received("SKU-RACE"), expected_version=version) for w in writers),
                return_exceptions=True,
            )
            wins = [o for o in outcomes if not isinstance(o, BaseException)]
            losses = [o for o in outcomes if isinstance(o, VersionConflict)]
            assert len(wins) == 1 and len(losses) == 1, outcomes
            assert losses[0].actual == version + 1
            assert wins[0].version == version + 1
    finally:
        for writer in writers:
            await writer.redis.aclose()
    stream = writers[0].partition_for(stock_received("SKU-RACE")).stream
    assert await redis.xlen(stream) == rounds


async def test_a_conflict_in_a_batch_writes_nothing_of_that_partition(
    redis: aioredis.Redis,
) -> None:
    bus = appender(redis)
    await bus.append(stock_received("SKU-C"), expected_version=0)
    batch = [
        PendingAppend(stock_received("SKU-C"), expected_version=1),  # would succeed alone
        PendingAppend(stock_received("SKU-C"), expected_version=5),  # stale
    ]
    with pytest.raises(VersionConflict) as conflict:
        await bus.append_batch(batch)
    assert (conflict.value.expected, conflict.value.actual) == (5, 1)  # what is stored
    assert await redis.xlen(bus.partition_for(batch[0].envelope).stream) == 1


async def test_a_batch_spans_partitions_and_keeps_the_callers_order(
    redis: aioredis.Redis,
) -> None:
    bus = appender(redis)
    envelopes = [stock_received(f"SKU-{n}") for n in range(50)]
    duplicate = envelopes[7]
    results = await bus.append_batch([PendingAppend(e) for e in [*envelopes, duplicate]])
    assert len(results) == 51
    assert len({r.stream for r in results}) > 1
    for envelope, result in zip(envelopes, results, strict=False):
        assert result.stream == bus.partition_for(envelope).stream
        [(_, fields)] = await redis.xrange(result.stream, result.entry_id, result.entry_id)
        assert decode_envelope(fields[b"event"]).id == envelope.id
    assert results[-1].duplicate and results[-1].entry_id == results[7].entry_id
    total = sum([await redis.xlen(p.stream) for p in bus.topology.partitions_of("catalog")])
    assert total == 50


async def test_units_in_one_call_succeed_or_fail_alone(redis: aioredis.Redis) -> None:
    bus = EventAppender(redis, Topology(partitions=1))
    await bus.append(stock_received("SKU-U"), expected_version=0)
    refused_unit = [
        PendingAppend(stock_received("SKU-U2"), expected_version=0),  # fine on its own
        PendingAppend(stock_received("SKU-U"), expected_version=7),  # stale: refuses the unit
    ]
    accepted_unit = [PendingAppend(stock_received("SKU-U"), expected_version=1)]
    refused, accepted = await bus.append_units([refused_unit, accepted_unit])
    assert isinstance(refused, VersionConflict)
    assert (refused.aggregate_id, refused.expected, refused.actual) == ("SKU-U", 7, 1)
    assert not isinstance(accepted, AppendRefused) and accepted[0].version == 2
    stream = bus.partition_for(stock_received("SKU-U")).stream
    subjects = [decode_envelope(f[b"event"]).subject for _, f in await redis.xrange(stream)]
    assert subjects == ["SKU-U", "SKU-U"]  # nothing of the refused unit, SKU-U2 included


async def test_scripts_are_reloaded_after_redis_forgets_them(redis: aioredis.Redis) -> None:
    bus = EventAppender(redis, Topology(partitions=2))
    await bus.append(stock_received("SKU-F1"))
    await redis.script_flush()  # as after a restart without the script cache
    envelope = stock_received("SKU-F2")
    appended = await bus.append(envelope)
    assert not appended.duplicate
    [(_, fields)] = await redis.xrange(appended.stream, appended.entry_id, appended.entry_id)
    assert decode_envelope(fields[b"event"]).id == envelope.id


# --- claims and side writes -----------------------------------------------------------------


def claimed(bus: EventAppender, sku: str, name: str, value: bytes) -> PendingAppend:
    """A StockReceived event that claims ``name`` in its own partition."""
    envelope = stock_received(sku)
    key = f"test:claim:{bus.partition_for(envelope).tag}:{name}"
    return PendingAppend(envelope, claim=Claim(key, value))


async def test_a_claim_is_set_with_its_event_and_kept_like_a_dedupe_key(
    redis: aioredis.Redis,
) -> None:
    bus = appender(redis)
    pending = claimed(bus, "SKU-K", "k1", b"first")
    assert pending.claim is not None
    [appended] = await bus.append_batch([pending])
    assert not appended.duplicate
    assert await redis.get(pending.claim.key) == b"first"
    assert 0 < await redis.ttl(pending.claim.key) <= DEFAULT_DEDUPE_TTL


async def test_a_held_claim_refuses_its_unit_with_the_holders_value_and_writes_nothing(
    redis: aioredis.Redis,
) -> None:
    bus = EventAppender(redis, Topology(partitions=1))
    await bus.append_batch([claimed(bus, "SKU-K", "k1", b"first")])
    partition = bus.topology.partition(CATALOG, "SKU-K")
    before = await redis.xlen(partition.stream)
    second = claimed(bus, "SKU-K", "k1", b"second")
    item = partition.catalog_item_key("SKU-K2")
    # Fine on its own, refused with the rest of its unit.
    unit = [PendingAppend(stock_received("SKU-K2"), side_writes=(SideWrite.hset(item, {"a": 1}),))]
    unit.append(second)
    with pytest.raises(AlreadyClaimed) as refusal:
        await bus.append_batch(unit)
    assert refusal.value.value == b"first"
    assert second.claim is not None and refusal.value.key == second.claim.key
    assert await redis.xlen(partition.stream) == before
    assert await redis.get(partition.version_key("SKU-K2")) is None
    assert await redis.exists(item) == 0
    assert await redis.get(second.claim.key) == b"first"


async def test_units_racing_for_one_claim_in_one_call_exactly_one_wins(
    redis: aioredis.Redis,
) -> None:
    bus = EventAppender(redis, Topology(partitions=1))
    units = [[claimed(bus, f"SKU-{n}", "race", f"unit-{n}".encode())] for n in range(5)]
    outcomes = await bus.append_units(units)
    assert not isinstance(outcomes[0], BaseException)
    for outcome in outcomes[1:]:
        assert isinstance(outcome, AlreadyClaimed) and outcome.value == b"unit-0"
    assert await redis.xlen(bus.topology.partition(CATALOG, "SKU-0").stream) == 1


async def test_concurrent_callers_claiming_one_key_write_one_event(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(10)]
    try:
        buses = [appender(c) for c in clients]
        outcomes = await asyncio.gather(
            *(
                bus.append_batch([claimed(bus, "SKU-R", "race", f"caller-{n}".encode())])
                for n, bus in enumerate(buses)
            ),
            return_exceptions=True,
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, AlreadyClaimed)]
    assert len(winners) == 1 and len(losers) == 9, outcomes
    assert len({loser.value for loser in losers}) == 1
    assert await redis.xlen(winners[0][0].stream) == 1


async def test_side_writes_are_done_with_the_event_and_never_for_a_duplicate(
    redis: aioredis.Redis,
) -> None:
    bus = appender(redis)
    envelope = stock_received("SKU-S", 3)
    key = bus.partition_for(envelope).catalog_item_key("SKU-S")
    writes = (
        SideWrite.hset(key, {"price": 250, "currency": "EUR"}),
        SideWrite.hincrby(key, "on_hand", 3),
    )
    pending = PendingAppend(envelope, side_writes=writes)
    [first] = await bus.append_batch([pending])
    assert await redis.hgetall(key) == {b"price": b"250", b"currency": b"EUR", b"on_hand": b"3"}
    [again] = await bus.append_batch([pending])  # a retry: same source and id
    assert again.duplicate and again.entry_id == first.entry_id
    assert (await redis.hget(key, "on_hand")) == b"3"


async def test_side_writes_of_a_refused_unit_are_not_done(redis: aioredis.Redis) -> None:
    bus = appender(redis)
    envelope = stock_received("SKU-S")
    key = bus.partition_for(envelope).catalog_item_key("SKU-S")
    pending = PendingAppend(
        envelope, expected_version=4, side_writes=(SideWrite.hincrby(key, "on_hand", 1),)
    )
    with pytest.raises(VersionConflict):
        await bus.append_batch([pending])
    assert await redis.exists(key) == 0


async def test_a_key_outside_the_events_hash_slot_is_refused_before_anything_runs(
    redis: aioredis.Redis,
) -> None:
    bus = appender(redis)
    envelope = stock_received("SKU-S")
    elsewhere = next(
        p for p in bus.topology.partitions_of(CATALOG) if p != bus.partition_for(envelope)
    )
    outside = elsewhere.catalog_item_key("SKU-S")
    with pytest.raises(ValueError, match="hash slot"):
        await bus.append_batch(
            [PendingAppend(envelope, side_writes=(SideWrite.hincrby(outside, "on_hand", 1),))]
        )
    with pytest.raises(ValueError, match="hash slot"):
        await bus.append_batch([PendingAppend(envelope, claim=Claim(outside, b"x"))])
    assert await redis.xlen(bus.partition_for(envelope).stream) == 0
