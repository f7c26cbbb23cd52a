"""The live order flow on a real Redis: from the heads on, every stream, nothing taken."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from eventbus.topology import ORDERS, Topology
from order_service.order_flow import FlowEvent, tail_order_events
from orderly_platform.embedded import RedisServer

PARTITIONS = Topology(partitions=3).partitions_of(ORDERS)


def stored(order_id: str, name: str, n: int) -> dict[str, bytes]:
    event = {
        "specversion": "1.0",
        "id": f"event-{n}",
        "source": "orderly/test",
        "type": f"orderly.{name}.v1",
        "time": "2026-11-29T02:00:00+00:00",
        "subject": order_id,
        "data": {},
    }
    return {"event": json.dumps(event).encode()}


async def test_the_flow_holds_what_is_appended_after_it_started_on_every_stream_in_order(
    redis: aioredis.Redis,
) -> None:
    first, second, later = (p.stream for p in PARTITIONS)
    await redis.xadd(first, stored("before", "OrderPlaced", 0))

    flow = await tail_order_events(redis, PARTITIONS, block_ms=100)
    # Explicit ids a millisecond apart: the flow orders streams read together by append time.
    seconds, _ = await redis.time()
    at = iter(f"{(int(seconds) + 1) * 1000 + ms}-0" for ms in range(100))
    await redis.xadd(second, stored("a", "OrderPlaced", 1), id=next(at))
    await redis.xadd(first, {"something": b"else"}, id=next(at))  # not an orderly event
    await redis.xadd(first, {"event": b"not json"}, id=next(at))
    await redis.xadd(first, stored("b", "OrderPlaced", 2), id=next(at))
    await redis.xadd(second, stored("a", "PaymentCaptured", 3), id=next(at))
    await redis.xadd(later, stored("c", "OrderConfirmed", 4), id=next(at))  # a new stream

    seen: list[FlowEvent] = []
    while len(seen) < 4:
        seen += await anext(flow)

    assert [(e.order_id, e.event) for e in seen] == [
        ("a", "OrderPlaced"),
        ("b", "OrderPlaced"),
        ("a", "PaymentCaptured"),
        ("c", "OrderConfirmed"),
    ]
    assert seen[0].time == "2026-11-29T02:00:00+00:00"
    # Only watched: no consumer group was made, so nothing is pending anywhere.
    for stream in (first, second, later):
        assert await redis.xinfo_groups(stream) == []


async def test_the_flow_reads_on_from_where_it_was_after_its_connection_is_cut(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    watcher = aioredis.Redis.from_url(redis_server.url)
    try:
        flow = await tail_order_events(watcher, PARTITIONS, block_ms=100)
        stream = PARTITIONS[0].stream
        await redis.xadd(stream, stored("a", "OrderPlaced", 1))
        assert [e.order_id for e in await anext(flow)] == ["a"]

        # Cut the watcher's connection, then append while it is away.
        watcher_id = await watcher.client_id()
        await redis.client_kill_filter(_id=watcher_id)
        await redis.xadd(stream, stored("b", "OrderPlaced", 2))

        seen: list[str] = []
        while "b" not in seen:
            seen += [e.order_id for e in await anext(flow)]
        assert seen == ["b"]
    finally:
        await watcher.aclose()
