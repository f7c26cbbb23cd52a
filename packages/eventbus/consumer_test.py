"""The consumer-group runtime against a real Redis, in one process."""

import asyncio
from collections.abc import Callable, Sequence

import pytest
import redis.asyncio as aioredis

from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.dead_letters import DeadLetters
from eventbus.inspection import stream_states
from eventbus.leases import members_key
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
    settings = {
        "group": "g",
        "consumer": "c1",
        "block_ms": 10,
        "retry_backoff_s": 0.0,
        **config,
    }
    return StreamConsumer(redis, PARTITIONS, handler, ConsumerConfig(**settings))  # type: ignore[arg-type]


async def drain(runner: StreamConsumer) -> None:
    """Cycles until one handles nothing: retries are due at once (no backoff in these tests)."""
    await runner.ensure_groups()
    while await runner.run_once():
        pass


async def skus_by_partition(redis: aioredis.Redis) -> dict[str, list[str]]:
    """Each partition's SKUs in stream order."""
    order: dict[str, list[str]] = {}
    for partition in PARTITIONS:
        for _, fields in await redis.xrange(partition.stream):
            envelope = StreamEntry(partition, "0-0", fields[b"event"]).envelope()
            order.setdefault(partition.stream, []).append(envelope.data.sku)  # type: ignore[union-attr]
    return order


async def test_entries_are_handled_in_batches_and_acked(redis: aioredis.Redis) -> None:
    skus = [f"SKU-{n}" for n in range(30)]
    await append_skus(redis, skus)
    handler = Recorder()
    runner = consumer(redis, handler, batch_size=8)
    await drain(runner)
    assert sorted(handler.applied) == sorted(skus)
    # The batch size counts per partition: a batch holds at most batch_size per partition.
    assert all(len(call) <= 8 * len(PARTITIONS) for call in handler.calls)
    assert len(handler.calls) >= 30 / (8 * len(PARTITIONS))
    assert runner.stats.processed == 30
    states = await stream_states(redis, PARTITIONS)
    assert all(group.pending == 0 and group.lag == 0 for s in states for group in s.groups)


async def test_a_failure_holds_back_only_the_later_entries_of_its_partition(
    redis: aioredis.Redis,
) -> None:
    skus = [f"SKU-{n}" for n in range(20)]
    await append_skus(redis, skus)
    order = await skus_by_partition(redis)
    [poisoned] = [stream for stream, in_order in order.items() if "SKU-3" in in_order]
    behind = order[poisoned][order[poisoned].index("SKU-3") + 1 :]
    assert behind, "the test needs entries after the poison in its partition"
    handler = Recorder(poison={"SKU-3"})
    runner = consumer(redis, handler, max_deliveries=100, retry_backoff_s=60.0)
    await runner.ensure_groups()
    await runner.run_once()

    # The other partition flowed; the poisoned one stopped at the poison and waits for it.
    [other] = [stream for stream in order if stream != poisoned]
    assert set(order[other]) <= set(handler.applied)
    assert not set(behind) & set(handler.applied)
    assert await runner.run_once() == 0  # its retry is not due: nothing passes it meanwhile
    assert not set(behind) & set(handler.applied)

    # Fixed: the retry handles the poison first, then what waited behind it, in order.
    handler.poison.clear()
    runner._recovering[PARTITIONS[[p.stream for p in PARTITIONS].index(poisoned)]].due = 0
    await drain(runner)
    applied_here = [sku for sku in handler.applied if sku in order[poisoned]]
    assert applied_here == order[poisoned]
    assert runner.stats.dead_lettered == 0


@pytest.mark.parametrize("max_deliveries", [1, 3])
async def test_a_poison_entry_is_dead_lettered_and_the_rest_flows_in_order(
    redis: aioredis.Redis, max_deliveries: int
) -> None:
    skus = [f"SKU-{n}" for n in range(10)]
    await append_skus(redis, skus)
    order = await skus_by_partition(redis)
    handler = Recorder(poison={"SKU-3"})
    runner = consumer(redis, handler, max_deliveries=max_deliveries)
    await drain(runner)
    assert sorted(handler.applied) == sorted(set(skus) - {"SKU-3"})
    for in_order in order.values():
        assert [sku for sku in handler.applied if sku in in_order] == [
            sku for sku in in_order if sku != "SKU-3"
        ]
    # Retried alone: the entries behind it kept their delivery counts while they waited.
    seen = [sku for call in handler.calls for sku in call]
    most = {
        sku: max(d for s, d in zip(seen, handler.deliveries, strict=True) if s == sku)
        for sku in seen
    }
    assert max(d for sku, d in most.items() if sku != "SKU-3") == 1

    assert runner.stats.dead_lettered == 1
    letters = await DeadLetters(redis, PARTITIONS).list()
    assert len(letters) == 1
    letter = letters[0]
    assert letter.deliveries == max_deliveries + 1
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
    await drain(runner)
    assert handler.applied.count("SKU-3") == 1


async def test_a_requeued_entry_is_only_handled_by_the_group_it_was_requeued_for(
    redis: aioredis.Redis,
) -> None:
    await append_skus(redis, ["SKU-A"])
    [stream] = [p.stream for p in PARTITIONS if await redis.xlen(p.stream)]
    [(_, fields)] = await redis.xrange(stream)
    await redis.xadd(stream, {"event": fields[b"event"], "requeued_for": "g"})
    await redis.xadd(stream, {"event": fields[b"event"], "requeued_for": "other"})
    mine, theirs = Recorder(), Recorder()
    await drain(consumer(redis, mine))
    await drain(consumer(redis, theirs, group="other"))
    assert mine.applied == ["SKU-A", "SKU-A"]  # the original, and the copy requeued for g
    assert theirs.applied == ["SKU-A", "SKU-A"]
    for group in ("g", "other"):
        assert (await redis.xpending(stream, group))["pending"] == 0


async def test_dropping_a_dead_letter_removes_only_it(redis: aioredis.Redis) -> None:
    await append_skus(redis, ["SKU-X", "SKU-Y"])
    runner = consumer(redis, Recorder(poison={"SKU-X", "SKU-Y"}), max_deliveries=1)
    await drain(runner)
    dead_letters = DeadLetters(redis, PARTITIONS)
    letters = await dead_letters.list()
    assert len(letters) == 2
    await dead_letters.drop(letters[0].address)
    assert [letter.address for letter in await dead_letters.list()] == [letters[1].address]


async def test_a_consumer_taking_over_handles_the_dead_ones_pending_entries_first(
    redis: aioredis.Redis,
) -> None:
    await append_skus(redis, ["SKU-P"])
    dead = consumer(redis, Recorder(poison={"SKU-P"}), lease_ms=300, retry_backoff_s=60.0)
    await dead.ensure_groups()
    await dead.run_once()  # fails: the entry stays pending for c1, which then "dies"
    await append_skus(redis, ["SKU-NEW"])

    handler = Recorder()
    successor = consumer(redis, handler, consumer="c2", lease_ms=300)

    async def stop_when_both_seen(entries: Sequence[StreamEntry]) -> None:
        await handler(entries)
        if len(handler.applied) == 2:
            successor.stop()

    successor.handler = stop_when_both_seen
    await asyncio.wait_for(successor.run(), 30)
    assert handler.calls == [["SKU-P"], ["SKU-NEW"]]
    assert handler.deliveries == [2, 1]
    assert successor.stats.claimed == 1
    assert dead.leases.held  # it never noticed: the successor took the expired leases


async def test_consumers_of_a_group_share_the_partitions_and_never_read_each_others(
    redis: aioredis.Redis,
) -> None:
    first_handler, second_handler = Recorder(), Recorder()
    first = consumer(redis, first_handler, lease_ms=60_000)
    second = consumer(redis, second_handler, consumer="c2", lease_ms=60_000)
    await first.ensure_groups()
    await first.refresh_leases()
    assert len(first.leases.held) == 2
    await second.refresh_leases()
    assert second.leases.held == []  # both are first's until it hands one back
    await first.refresh_leases()  # sees two members: keeps its fair share of one
    await second.refresh_leases()
    assert len(first.leases.held) == len(second.leases.held) == 1
    assert first.leases.held != second.leases.held

    skus = [f"SKU-{n}" for n in range(20)]
    await append_skus(redis, skus)
    await drain(first)
    await drain(second)
    order = await skus_by_partition(redis)
    assert first_handler.applied == order[first.leases.held[0].stream]
    assert second_handler.applied == order[second.leases.held[0].stream]


async def test_a_consumer_that_lost_its_lease_cannot_read_the_partition(
    redis: aioredis.Redis,
) -> None:
    stalled_handler = Recorder()
    stalled = consumer(redis, stalled_handler, lease_ms=60_000)
    await stalled.ensure_groups()
    await stalled.refresh_leases()
    # Its leases and membership lapse while it is stalled, and a successor takes over.
    await redis.delete(*[p.lease_key("g") for p in PARTITIONS])
    await redis.zrem(members_key("g"), "c1")
    successor = consumer(redis, Recorder(), consumer="c2", lease_ms=60_000)
    await successor.refresh_leases()
    await append_skus(redis, ["SKU-1", "SKU-2", "SKU-3"])

    assert await stalled.run_once() == 0  # the fenced read refuses it
    assert stalled_handler.calls == []
    assert stalled.leases.held == []
    await drain(successor)
    assert sorted(successor.handler.applied) == ["SKU-1", "SKU-2", "SKU-3"]  # type: ignore[attr-defined]


async def test_an_entry_not_written_by_the_appender_is_dead_lettered_not_fatal(
    redis: aioredis.Redis,
) -> None:
    await append_skus(redis, ["SKU-OK"])
    foreign_id = await redis.xadd(PARTITIONS[0].stream, {"something": "else"})
    handler = Recorder()
    runner = consumer(redis, handler, max_deliveries=1)
    await drain(runner)  # the foreign entry fails to decode, then its retry dead-letters it
    assert handler.applied == ["SKU-OK"]
    [letter] = await DeadLetters(redis, PARTITIONS).list()
    assert letter.entry_id == foreign_id.decode()
    assert "MalformedJson" in letter.error


async def test_an_entry_acked_meanwhile_is_not_dead_lettered(redis: aioredis.Redis) -> None:
    await append_skus(redis, ["SKU-Z"])
    runner = consumer(redis, Recorder(poison={"SKU-Z"}), max_deliveries=0)
    await runner.ensure_groups()
    await runner.refresh_leases()
    [(_, [(entry_id, fields)])] = await redis.xreadgroup(
        "g", "c1", {s.stream: ">" for s in PARTITIONS}
    )
    [partition] = [p for p in PARTITIONS if await redis.xlen(p.stream)]
    await redis.xack(partition.stream, "g", entry_id)  # a peer finished it after all
    entry = StreamEntry(partition, entry_id.decode(), fields[b"event"], deliveries=9)
    await runner._move_to_dead_letters(entry)
    assert await DeadLetters(redis, PARTITIONS).count() == 0
    assert runner.stats.dead_lettered == 0


async def test_lingering_gathers_light_traffic_into_one_batch(redis: aioredis.Redis) -> None:
    await append_skus(redis, ["SKU-FIRST"])
    handler = Recorder()
    runner = consumer(redis, handler, linger_ms=1_000, block_ms=100)
    running = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(_until(lambda: handler.applied == ["SKU-FIRST"]), 10)
        # Appended one by one while the consumer lingers after its small batch.
        for n in range(5):
            await append_skus(redis, [f"SKU-{n}"])
        await asyncio.wait_for(_until(lambda: len(handler.applied) == 6), 10)
    finally:
        runner.stop()
        await running
    assert len(handler.calls) == 2  # the first entry, then the five together
    assert sorted(handler.calls[1]) == [f"SKU-{n}" for n in range(5)]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
