"""A consumer run as its own process, so tests can kill it at chosen moments.

Its handler applies each event idempotently (a marker per event id, counted once) and
counts every attempt, so a test can tell "applied once" from "handled twice".

    python -m tests.faults.consumer_process REDIS_URL CONSUMER_NAME MODE BATCH_SIZE

MODE "hang-after-handling": handle the first batch, then hang before acking it.
MODE "slow": handle every entry with a little work each, until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import redis.asyncio as aioredis

from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry, run_until_signalled
from eventbus.topology import CATALOG, Topology
from orderly_platform.logs import configure_logging

TOPOLOGY = Topology(partitions=2)
GROUP = "fault-test"
LEASE_MS = 1000
APPLY = """
if redis.call('SET', 'applied:' .. ARGV[1], 1, 'NX') then redis.call('INCR', 'applied-count') end
redis.call('INCR', 'attempts')
redis.call('SADD', 'handled-entries', ARGV[2])
"""


async def apply_once(redis: aioredis.Redis, entries: Sequence[StreamEntry]) -> None:
    for entry in entries:
        await redis.eval(APPLY, 0, entry.envelope().id, entry.entry_id)


def consumer(redis: aioredis.Redis, name: str, handler: object, **config: object) -> StreamConsumer:
    return StreamConsumer(
        redis,
        TOPOLOGY.partitions_of(CATALOG),
        handler,  # type: ignore[arg-type]
        ConsumerConfig(group=GROUP, consumer=name, block_ms=50, **config),  # type: ignore[arg-type]
    )


async def main(url: str, name: str, mode: str, batch_size: int) -> None:
    configure_logging("WARNING", "json")
    redis = aioredis.Redis.from_url(url)

    async def hang_after_handling(entries: Sequence[StreamEntry]) -> None:
        await apply_once(redis, entries)
        await redis.set("hung-consumer-handled", len(entries))
        await asyncio.Event().wait()  # never returns: the batch is never acked

    async def slow(entries: Sequence[StreamEntry]) -> None:
        for entry in entries:
            await apply_once(redis, [entry])
            await asyncio.sleep(0.005)  # stands in for real work, so SIGTERM lands mid-batch

    handler = hang_after_handling if mode == "hang-after-handling" else slow
    # A short lease: a peer takes the partitions over soon after this process is killed.
    runner = consumer(redis, name, handler, batch_size=batch_size, lease_ms=LEASE_MS)
    await run_until_signalled(runner)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
