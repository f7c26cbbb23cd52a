"""Group commit against a real Redis: shared round trips, separate outcomes."""

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from eventbus.appender import AlreadyClaimed, Claim, EventAppender, PendingAppend, VersionConflict
from eventbus.coalescing import CoalescingAppender
from eventbus.testing import stock_received
from eventbus.topology import Topology


async def test_concurrent_appends_share_flushes_and_each_gets_its_own_answer(
    redis: aioredis.Redis,
) -> None:
    coalescer = CoalescingAppender(EventAppender(redis, Topology(partitions=4)))
    envelopes = [stock_received(f"SKU-{n}") for n in range(200)]
    results = await asyncio.gather(*(coalescer.append_batch([PendingAppend(e)]) for e in envelopes))
    # All 200 were queued before the first flush left, and fit in its 1,000-event budget.
    assert coalescer.flushes == 1, "concurrent appends were not coalesced"
    for envelope, [appended] in zip(envelopes, results, strict=True):
        assert appended.stream == coalescer.appender.partition_for(envelope).stream
        [(_, fields)] = await redis.xrange(appended.stream, appended.entry_id, appended.entry_id)
        assert b'"id":"' + envelope.id.encode() + b'"' in fields[b"event"]


async def test_a_conflict_fails_only_its_own_caller(redis: aioredis.Redis) -> None:
    appender = EventAppender(redis, Topology(partitions=1))
    await appender.append(stock_received("SKU-V"), expected_version=0)
    coalescer = CoalescingAppender(appender)
    stale = coalescer.append_batch([PendingAppend(stock_received("SKU-V"), expected_version=0)])
    fresh = coalescer.append_batch([PendingAppend(stock_received("SKU-V"), expected_version=1)])
    other = coalescer.append_batch([PendingAppend(stock_received("SKU-W"))])
    outcomes = await asyncio.gather(stale, fresh, other, return_exceptions=True)
    assert coalescer.flushes == 1, "the three appends should have shared one flush"
    assert isinstance(outcomes[0], VersionConflict)
    assert (outcomes[0].expected, outcomes[0].actual) == (0, 1)
    assert not isinstance(outcomes[1], BaseException) and outcomes[1][0].version == 2
    assert not isinstance(outcomes[2], BaseException) and outcomes[2][0].version == 1
    stream = appender.partition_for(stock_received("SKU-V")).stream
    assert await redis.xlen(stream) == 3


async def test_callers_claiming_one_key_in_one_flush_write_once_and_hear_the_winner(
    redis: aioredis.Redis,
) -> None:
    appender = EventAppender(redis, Topology(partitions=2))
    coalescer = CoalescingAppender(appender)
    envelopes = [stock_received("SKU-C") for _ in range(5)]  # five events of one partition
    key = f"test:claim:{appender.partition_for(envelopes[0]).tag}:one"
    outcomes = await asyncio.gather(
        *(
            coalescer.append_batch([PendingAppend(e, claim=Claim(key, e.id.encode()))])
            for e in envelopes
        ),
        return_exceptions=True,
    )
    assert coalescer.flushes == 1
    assert not isinstance(outcomes[0], BaseException)
    for outcome in outcomes[1:]:
        assert isinstance(outcome, AlreadyClaimed)
        assert outcome.value == envelopes[0].id.encode()
    assert await redis.xlen(outcomes[0][0].stream) == 1


async def test_the_same_event_from_two_callers_in_one_flush_is_written_once(
    redis: aioredis.Redis,
) -> None:
    coalescer = CoalescingAppender(EventAppender(redis, Topology(partitions=2)))
    envelope = stock_received("SKU-D")
    first, second = await asyncio.gather(
        coalescer.append_batch([PendingAppend(envelope)]),
        coalescer.append_batch([PendingAppend(envelope)]),
    )
    assert first[0].entry_id == second[0].entry_id
    assert [first[0].duplicate, second[0].duplicate] == [False, True]
    assert await redis.xlen(first[0].stream) == 1


async def test_a_redis_failure_reaches_every_caller_of_the_flush() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    coalescer = CoalescingAppender(EventAppender(client, Topology(partitions=2)))
    outcomes = await asyncio.gather(
        *(coalescer.append_batch([PendingAppend(stock_received(f"S-{n}"))]) for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes
    # The flusher is not left stuck: a later append is attempted (and fails the same way).
    with pytest.raises(RedisConnectionError):
        await coalescer.append_batch([PendingAppend(stock_received("S-x"))])
    assert coalescer.flushes == 2
    await client.aclose()
