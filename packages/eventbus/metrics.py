"""The event bus's Prometheus series: events appended, consumed and dead-lettered, batch
handling time, and each consumer group's lag.

Counters move once per script call or batch (``inc(n)``), never once per event, and their
labelled children are looked up once (``labelled``): appends and acks are the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram

from eventbus.lag import consumer_group_lag
from eventbus.topology import Partition
from orderly_platform.metrics import LATENCY_BUCKETS, ScrapeRefresher, labelled

EVENTS_APPENDED = Counter(
    "orderly_events_appended",
    "Events written to a stream (duplicates of an earlier append are not counted).",
    ["stream"],
)
EVENTS_DEDUPLICATED = Counter(
    "orderly_events_deduplicated",
    "Appends refused as duplicates (same CloudEvents source+id): retries, mostly.",
    ["stream"],
)
EVENTS_CONSUMED = Counter(
    "orderly_events_consumed",
    "Entries a consumer group handled and acknowledged.",
    ["group", "stream"],
)
EVENTS_DEAD_LETTERED = Counter(
    "orderly_events_dead_lettered",
    "Entries moved to the dead letters after max_deliveries failed deliveries.",
    ["group", "stream"],
)
BATCH_DURATION = Histogram(
    "orderly_consumer_batch_duration_seconds",
    "Time a group's handler took for one batch (failed batches included).",
    ["group"],
    buckets=LATENCY_BUCKETS,
)
GROUP_LAG = Gauge(
    "orderly_consumer_group_lag",
    "Entries of the stream not yet delivered to the group (as of the last scrape).",
    ["group", "stream"],
)
GROUP_PENDING = Gauge(
    "orderly_consumer_group_pending",
    "Entries delivered to the group but not acknowledged yet (as of the last scrape).",
    ["group", "stream"],
)


def group_lag_refresher(
    redis: aioredis.Redis, partitions: Sequence[Partition], groups: Sequence[str]
) -> ScrapeRefresher:
    """Sets ``orderly_consumer_group_lag`` and ``_pending`` of ``groups`` on each scrape.

    Each service reports the groups it runs, so a group that no process runs any more does
    not linger in the metrics (``orderly streams`` still shows it).
    """
    wanted = set(groups)

    async def refresh() -> None:
        for state in await consumer_group_lag(redis, partitions):
            if state.group not in wanted:
                continue
            if state.lag is not None:
                labelled(GROUP_LAG, state.group, state.stream).set(state.lag)
            labelled(GROUP_PENDING, state.group, state.stream).set(state.pending)

    return refresh


DEAD_LETTERS = Gauge(
    "orderly_dead_letters",
    "Entries in the dead-letter stream of each partition now (as of the last scrape): "
    "what waits for `orderly dlq requeue` or `drop`.",
    ["stream"],
)


def dead_letters_refresher(
    redis: aioredis.Redis, partitions: Sequence[Partition]
) -> ScrapeRefresher:
    """Sets ``orderly_dead_letters`` per partition on each scrape (one pipelined XLEN each).

    The dead letters of a partition are shared by its groups, so one service reports them
    (the projector, which reads every partition), not each consumer.
    """

    async def refresh() -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.xlen(partition.dead_letters)
            lengths = await pipe.execute()
        for partition, length in zip(partitions, lengths, strict=True):
            labelled(DEAD_LETTERS, partition.stream).set(length)

    return refresh
