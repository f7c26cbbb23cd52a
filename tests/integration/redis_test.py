"""The embedded Redis is a real server with consumer groups and an append-only file."""

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from orderly_platform.embedded import RedisServer


async def test_consumer_group_reads_acks_and_tracks_pending(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    stream = "{orders:0}:test-group"
    ids = [await client.xadd(stream, {"n": str(n)}) for n in range(3)]
    await client.xgroup_create(stream, "projector", id="0")

    # redis-py types stream replies loosely; the shapes are asserted below.
    batch: Any = await client.xreadgroup("projector", "c1", {stream: ">"}, count=10)
    [(_, entries)] = batch
    assert [entry_id for entry_id, _ in entries] == ids
    assert [fields[b"n"] for _, fields in entries] == [b"0", b"1", b"2"]

    assert await client.xack(stream, "projector", ids[0], ids[1]) == 2
    pending: Any = await client.xpending(stream, "projector")
    assert pending["pending"] == 1
    assert pending["min"] == ids[2]
    await client.aclose()


async def test_acknowledged_writes_survive_a_restart(tmp_path: Path) -> None:
    first = RedisServer(tmp_path, appendfsync="always")
    await first.start()
    client = aioredis.Redis.from_url(first.url)
    assert (await client.config_get("appendonly"))["appendonly"] == "yes"
    entry_id = await client.xadd("{orders:1}:durable", {"order_id": "o-1"})
    await client.aclose()
    await first.stop()

    second = RedisServer(tmp_path)  # same data dir, new process and port
    await second.start()
    client = aioredis.Redis.from_url(second.url)
    try:
        entries = await client.xrange("{orders:1}:durable")
        assert entries == [(entry_id, {b"order_id": b"o-1"})]
    finally:
        await client.aclose()
        await second.stop()
