"""The consumer-group runtime against a real Redis, in one process."""

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis

from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.dead_letters import DeadLetters
from eventbus.inspection import stream_states
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology

TOPOLOGY = Topology(partitions=2)
PARTITIONS = TOPOLOGY.partitions_of(CATALOG)


class Recorder:
    """A handler that records what it saw and fails on chosen SKUs."""

    def __init__(self, poison: set[str] | None = None) -> None:
        self.poison = poison or set()
        self.calls: list[list[str]] = []
        self.applied: list[str] = []
        self.deliveries: list[int] = []

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        skus = [entry.envelope().data.sku for entry in entries]  # type: ignore[union-attr]
        self.calls.append(skus)
        self.deliveries += [entry.deliveries for entry in entries]
        bad = self.poison.intersection(skus)
        if bad:
            raise ValueError(f"cannot apply {sorted(bad)}")
        self.applied += skus


async def append_skus(redis: aioredis.Redis, skus: list[str]) -> None:
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(stock_received(s)) for s in skus]
    )


def consumer(redis: aioredis.Redis, handler: Recorder, **config: object) -> StreamConsumer:
    settings = {"group": "g", "consumer": "c1", "block_ms": 10, "claim_idle_ms": 0, **config}
    return StreamConsumer(redis, PARTITIONS, handler, ConsumerConfig(**settings))  # type: ignore[arg-type]


async def test_entries_are_handled_in_batches_and_acked(redis: aioredis.Redis) -> None:
    skus = [f"SKU-{n}" for n in range(30)]
    await append_skus(redis, skus)
    handler = Recorder()
    runner = consumer(redis, handler, batch_size=8)
    await runner.ensure_groups()
    while await runner.run_once():
        pass
    assert sorted(handler.applied) == sorted(skus)
    # XREADGROUP's COUNT is per stream: a batch holds at most batch_size per partition.
    assert all(len(call) <= 8 * len(PARTITIONS) for call in handler.calls)
    assert len(handler.calls) >= 30 / (8 * len(PARTITIONS))
    assert runner.stats.processed == 30
    states = await stream_states(redis, PARTITIONS)
    assert all(group.pending == 0 and group.lag == 0 for s in states for group in s.groups)


async def test_a_poison_entry_is_dead_lettered_and_the_rest_flows(redis: aioredis.Redis) -> None:
    skus = [f"SKU-{n}" for n in range(10)]
    await append_skus(redis, skus)
    handler = Recorder(poison={"SKU-3"})
    runner = consumer(redis, handler, max_deliveries=3)
    await runner.ensure_groups()
    await runner.run_once()
    assert sorted(handler.applied) == sorted(set(skus) - {"SKU-3"})

    # Each claim pass redelivers the poison entry until it has been delivered too often.
    for _ in range(3):
        await runner._claim_and_process()
    assert runner.stats.dead_lettered == 1
    letters = await DeadLetters(redis, PARTITIONS).list()
    assert len(letters) == 1
    letter = letters[0]
    assert letter.deliveries == 4
    assert letter.group == "g" and letter.consumer == "c1"
    assert "ValueError: cannot apply ['SKU-3']" in letter.error
    states = await stream_states(redis, PARTITIONS)
    assert sum(g.pending for s in states for g in s.groups) == 0
    assert sum(s.dead_letters for s in states) == 1

    # Requeue puts it back on its stream as a new entry, and a fixed handler applies it.
    dead_letters = DeadLetters(redis, PARTITIONS)
    new_id = await dead_letters.requeue(letter.address)
    assert await dead_letters.count() == 0
    [(entry_id, fields)] = await redis.xrange(letter.stream, new_id, new_id)
    assert fields[b"event"] == letter.payload
    handler.poison.clear()
    await runner.run_once()
    assert handler.applied.count("SKU-3") == 1


async def test_dropping_a_dead_letter_removes_only_it(redis: aioredis.Redis) -> None:
    await append_skus(redis, ["SKU-X", "SKU-Y"])
    runner = consumer(redis, Recorder(poison={"SKU-X", "SKU-Y"}), max_deliveries=1)
    await runner.ensure_groups()
    await runner.run_once()
    await runner._claim_and_process()
    dead_letters = DeadLetters(redis, PARTITIONS)
    letters = await dead_letters.list()
    assert len(letters) == 2
    await dead_letters.drop(letters[0].address)
    assert [letter.address for letter in await dead_letters.list()] == [letters[1].address]


async def test_a_restarted_consumer_handles_its_own_pending_entries_first(
    redis: aioredis.Redis,
) -> None:
    await append_skus(redis, ["SKU-P"])
    failing = consumer(redis, Recorder(poison={"SKU-P"}), claim_idle_ms=3_600_000)
    await failing.ensure_groups()
    await failing.run_once()  # fails: the entry stays pending for consumer c1
    await append_skus(redis, ["SKU-NEW"])

    handler = Recorder()
    restarted = consumer(redis, handler, claim_idle_ms=3_600_000)

    async def stop_when_both_seen(entries: Sequence[StreamEntry]) -> None:
        await handler(entries)
        if len(handler.applied) == 2:
            restarted.stop()

    restarted.handler = stop_when_both_seen
    await asyncio.wait_for(restarted.run(), 30)
    assert handler.calls == [["SKU-P"], ["SKU-NEW"]]
    assert handler.deliveries == [2, 1]


async def test_an_entry_not_written_by_the_appender_is_dead_lettered_not_fatal(
    redis: aioredis.Redis,
) -> None:
    await append_skus(redis, ["SKU-OK"])
    foreign_id = await redis.xadd(PARTITIONS[0].stream, {"something": "else"})
    handler = Recorder()
    runner = consumer(redis, handler, max_deliveries=1)
    await runner.ensure_groups()
    await runner.run_once()  # the foreign entry fails to decode; SKU-OK is applied
    await runner._claim_and_process()  # second delivery of the foreign entry: dead letter
    assert handler.applied == ["SKU-OK"]
    [letter] = await DeadLetters(redis, PARTITIONS).list()
    assert letter.entry_id == foreign_id.decode()
    assert "MalformedJson" in letter.error


async def test_an_entry_acked_meanwhile_is_not_dead_lettered(redis: aioredis.Redis) -> None:
    await append_skus(redis, ["SKU-Z"])
    runner = consumer(redis, Recorder(poison={"SKU-Z"}), max_deliveries=0)
    await runner.ensure_groups()
    [(_, [(entry_id, fields)])] = await redis.xreadgroup(
        "g", "c1", {s.stream: ">" for s in PARTITIONS}
    )
    [partition] = [p for p in PARTITIONS if await redis.xlen(p.stream)]
    await redis.xack(partition.stream, "g", entry_id)  # a peer finished it after all
    entry = StreamEntry(partition, entry_id.decode(), fields[b"event"], deliveries=9)
    await runner._move_to_dead_letters(entry)
    assert await DeadLetters(redis, PARTITIONS).count() == 0
    assert runner.stats.dead_lettered == 0
