"""The event bus's series against a real Redis: appends, consumption, dead letters, lag."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.lag import GroupLag, consumer_group_lag
from eventbus.metrics import dead_letters_refresher, group_lag_refresher
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology

TOPOLOGY = Topology(partitions=2)
PARTITIONS = TOPOLOGY.partitions_of(CATALOG)
STREAMS = [p.stream for p in PARTITIONS]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def summed(name: str, **labels: str) -> float:
    """Over both partitions' streams."""
    return sum(value(name, **labels, stream=stream) for stream in STREAMS)


async def consume(redis: aioredis.Redis, group: str, poison: frozenset[str] = frozenset()) -> None:
    async def handle(entries: Sequence[StreamEntry]) -> None:
        if poison & {e.envelope().data.sku for e in entries}:  # type: ignore[union-attr]
            raise ValueError("poison")

    config = ConsumerConfig(
        group=group, consumer="c1", block_ms=10, retry_backoff_s=0.0, max_deliveries=2
    )
    runner = StreamConsumer(redis, PARTITIONS, handle, config)
    await runner.ensure_groups()
    while await runner.run_once():
        pass


async def test_appends_are_counted_per_stream_and_duplicates_apart(
    redis: aioredis.Redis,
) -> None:
    appended = summed("orderly_events_appended_total")
    deduplicated = summed("orderly_events_deduplicated_total")
    events = [stock_received(f"SKU-{n}") for n in range(7)]
    appender = EventAppender(redis, TOPOLOGY)
    await appender.append_batch([PendingAppend(e) for e in events])
    await appender.append_batch([PendingAppend(events[0]), PendingAppend(events[1])])

    assert summed("orderly_events_appended_total") - appended == 7
    assert summed("orderly_events_deduplicated_total") - deduplicated == 2
    # Each stream's count is what its stream holds.
    for stream in STREAMS:
        assert value("orderly_events_appended_total", stream=stream) >= await redis.xlen(stream)


async def test_consumed_and_dead_lettered_entries_are_counted_per_group(
    redis: aioredis.Redis,
) -> None:
    group = "metrics-consumed"
    consumed = summed("orderly_events_consumed_total", group=group)
    dead = summed("orderly_events_dead_lettered_total", group=group)
    batches = value("orderly_consumer_batch_duration_seconds_count", group=group)
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(stock_received(f"SKU-{n}")) for n in range(10)]
    )
    await consume(redis, group, poison=frozenset({"SKU-4"}))

    assert summed("orderly_events_consumed_total", group=group) - consumed == 9
    assert summed("orderly_events_dead_lettered_total", group=group) - dead == 1
    await dead_letters_refresher(redis, PARTITIONS)()
    assert summed("orderly_dead_letters") == 1  # a gauge: what the dead-letter streams hold
    assert value("orderly_consumer_batch_duration_seconds_count", group=group) > batches


async def test_lag_and_pending_per_group_and_stream(redis: aioredis.Redis) -> None:
    assert await consumer_group_lag(redis, PARTITIONS) == []  # no stream yet: none behind
    events = [stock_received(f"SKU-{n}") for n in range(12)]
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(e) for e in events])
    await consume(redis, "caught-up")
    for stream in STREAMS:
        await redis.xgroup_create(stream, "behind", id="0")
    lengths = {stream: await redis.xlen(stream) for stream in STREAMS}
    # Delivered to the group, never acked: pending, not lag.
    await redis.xreadgroup("behind", "c1", {STREAMS[0]: ">"}, count=2)

    lags = await consumer_group_lag(redis, PARTITIONS)
    assert sorted(lags, key=lambda g: (g.group, g.stream)) == [
        GroupLag("behind", STREAMS[0], lengths[STREAMS[0]] - 2, 2),
        GroupLag("behind", STREAMS[1], lengths[STREAMS[1]], 0),
        GroupLag("caught-up", STREAMS[0], 0, 0),
        GroupLag("caught-up", STREAMS[1], 0, 0),
    ]

    await group_lag_refresher(redis, PARTITIONS, ["behind"])()
    assert value("orderly_consumer_group_lag", group="behind", stream=STREAMS[1]) == (
        lengths[STREAMS[1]]
    )
    assert value("orderly_consumer_group_pending", group="behind", stream=STREAMS[0]) == 2
    # Only the groups a service runs: another service reports "caught-up".
    lag_of_other = REGISTRY.get_sample_value(
        "orderly_consumer_group_lag", {"group": "caught-up", "stream": STREAMS[0]}
    )
    assert lag_of_other is None
