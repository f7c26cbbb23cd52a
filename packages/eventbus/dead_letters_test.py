"""Dead letters against a real Redis: what a requeue puts back on the stream."""

from collections.abc import Sequence

import redis.asyncio as aioredis

from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.dead_letters import DeadLetters
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology

TOPOLOGY = Topology(partitions=1)
PARTITIONS = TOPOLOGY.partitions_of(CATALOG)
[PARTITION] = PARTITIONS


async def refuse(entries: Sequence[StreamEntry]) -> None:
    raise ValueError("cannot apply")


async def dead_letter_one_event(redis: aioredis.Redis, group: str) -> bytes:
    """Append one event and let ``group`` fail it into the dead letters; its payload."""
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(stock_received())])
    config = ConsumerConfig(
        group=group, consumer="c1", block_ms=10, max_deliveries=1, retry_backoff_s=0.0
    )
    runner = StreamConsumer(redis, PARTITIONS, refuse, config)
    await runner.ensure_groups()
    while await runner.run_once():
        pass
    assert runner.stats.dead_lettered == 1
    [(_, fields)] = await redis.xrange(PARTITION.stream)
    payload: bytes = fields[b"event"]
    return payload


async def test_a_requeued_event_is_marked_for_the_group_that_dead_lettered_it(
    redis: aioredis.Redis,
) -> None:
    payload = await dead_letter_one_event(redis, group="orders")
    dead_letters = DeadLetters(redis, PARTITIONS)
    [letter] = await dead_letters.list()
    assert letter.group == "orders"

    new_id = await dead_letters.requeue(letter.address)

    [(_, fields)] = await redis.xrange(PARTITION.stream, new_id, new_id)
    assert fields == {b"event": payload, b"requeued_for": b"orders"}
    assert await dead_letters.count() == 0


async def test_a_dead_letter_without_a_group_goes_back_to_every_group(
    redis: aioredis.Redis,
) -> None:
    # dead_letter.lua always records the group; one added by hand may not.
    await redis.xadd(PARTITION.dead_letters, {"event": b"{}", "stream": PARTITION.stream})
    dead_letters = DeadLetters(redis, PARTITIONS)
    [letter] = await dead_letters.list()

    new_id = await dead_letters.requeue(letter.address)

    [(_, fields)] = await redis.xrange(PARTITION.stream, new_id, new_id)
    assert fields == {b"event": b"{}"}
