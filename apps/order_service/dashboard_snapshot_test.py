"""A snapshot of an order service without the read-model database: the streams alone."""

from __future__ import annotations

from datetime import timedelta

import redis.asyncio as aioredis

from eventbus.topology import Topology
from order_service.dashboard_snapshot import take_snapshot

TOPOLOGY = Topology(partitions=2)


async def test_without_a_read_model_the_snapshot_has_the_streams_and_no_read_model(
    redis: aioredis.Redis,
) -> None:
    [orders_0, _, catalog_0, _] = TOPOLOGY.all_partitions()
    await redis.xadd(orders_0.stream, {"event": b"{}"})
    await redis.xadd(catalog_0.stream, {"event": b"{}"})
    await redis.xgroup_create(catalog_0.stream, "inventory", id="$")
    await redis.xadd(catalog_0.dead_letters, {"event": b"{}"})
    await redis.xadd(catalog_0.dead_letters, {"event": b"{}"})

    snapshot = await take_snapshot(
        redis, None, TOPOLOGY.all_partitions(), stuck_after=timedelta(minutes=5)
    )

    assert snapshot.read_model is None
    # Streams with no entry yet are left out, as `orderly streams` leaves them out.
    assert [(s.stream, s.length) for s in snapshot.streams] == [
        (orders_0.stream, 1),
        (catalog_0.stream, 1),
    ]
    assert [g.name for g in snapshot.streams[1].groups] == ["inventory"]
    assert [s.dead_letters for s in snapshot.streams] == [0, 2]
    assert snapshot.dead_letters == 2
