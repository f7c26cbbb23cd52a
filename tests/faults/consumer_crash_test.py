"""Consumers killed at the worst moments lose nothing and apply nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from eventbus.appender import EventAppender, PendingAppend
from eventbus.testing import stock_received
from eventbus.topology import CATALOG
from orderly_platform.embedded import RedisServer
from tests.faults.consumer_process import GROUP, LEASE_MS, TOPOLOGY, apply_once, consumer

PARTITIONS = TOPOLOGY.partitions_of(CATALOG)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def start_consumer_process(
    url: str, name: str, mode: str, batch: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.consumer_process",
        url,
        name,
        mode,
        str(batch),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


async def append(redis: aioredis.Redis, count: int) -> set[str]:
    envelopes = [stock_received(f"SKU-{n}") for n in range(count)]
    results = await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(e) for e in envelopes]
    )
    return {r.entry_id for r in results}


async def pending_count(redis: aioredis.Redis) -> int:
    total = 0
    for partition in PARTITIONS:
        total += (await redis.xpending(partition.stream, GROUP))["pending"]
    return total


async def test_a_peer_takes_over_entries_of_a_consumer_killed_before_ack(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    await append(redis, 40)
    victim = await start_consumer_process(redis_server.url, "victim", "hang-after-handling", 100)

    async def victim_handled_a_batch() -> bool:
        return bool(await redis.exists("hung-consumer-handled") == 1)

    try:
        await eventually(victim_handled_a_batch)
    finally:
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
    handled_by_victim = int(await redis.get("hung-consumer-handled"))
    assert handled_by_victim > 0
    assert await pending_count(redis) >= handled_by_victim  # handled, never acked

    async def handler(entries: object) -> None:
        await apply_once(redis, entries)  # type: ignore[arg-type]

    peer = consumer(redis, "peer", handler, lease_ms=LEASE_MS)
    peer_task = asyncio.create_task(peer.run())

    async def all_applied_and_acked() -> bool:
        return int(await redis.get("applied-count") or 0) == 40 and await pending_count(redis) == 0

    try:
        await eventually(all_applied_and_acked)
    finally:
        peer.stop()
        await peer_task
    assert peer.stats.claimed >= handled_by_victim
    # Every event applied exactly once, though the victim's batch was handled twice.
    assert int(await redis.get("applied-count")) == 40
    assert int(await redis.get("attempts")) == 40 + handled_by_victim


async def test_sigterm_mid_batch_leaves_every_entry_acked_or_pending(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    entry_ids = await append(redis, 400)
    worker = await start_consumer_process(redis_server.url, "worker", "slow", 50)

    async def some_handled() -> bool:
        return int(await redis.get("attempts") or 0) >= 10

    await eventually(some_handled)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.wait(), 60) == 0

    handled = {m.decode() for m in await redis.smembers("handled-entries")}
    pending: set[str] = set()
    delivered: set[str] = set()
    for partition in PARTITIONS:
        for item in await redis.xpending_range(partition.stream, GROUP, "-", "+", 1000):
            pending.add(item["message_id"].decode())
        [group] = await redis.xinfo_groups(partition.stream)
        last = group["last-delivered-id"].decode()
        delivered |= {
            entry_id.decode() for entry_id, _ in await redis.xrange(partition.stream, "-", last)
        }
    assert 0 < len(handled) < len(entry_ids), "SIGTERM should land in the middle of the work"
    # Graceful stop: the batch in hand was finished and acked, so nothing delivered is
    # left pending, and everything delivered was handled; the rest is still unread.
    assert pending == set()
    assert delivered == handled
    assert handled <= entry_ids
