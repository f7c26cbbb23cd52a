"""How far behind each projection is, per stream partition: events and time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.scripts import as_text
from eventbus.topology import Partition
from projections.checkpointed import checkpoint_of
from projections.positions import StreamPosition


@dataclass(frozen=True)
class PartitionLag:
    stream: str
    checkpoint: str
    last_entry_id: str
    # Entries the group has not read yet plus those read but not acknowledged.
    unapplied: int
    # How long the oldest unapplied entry has waited (stream ids carry their append time).
    behind_ms: int


@dataclass(frozen=True)
class ProjectionLag:
    projection: str
    unapplied: int
    behind_ms: int
    partitions: list[PartitionLag]


async def projection_lag(
    redis: aioredis.Redis, engine: AsyncEngine, projection: str, partitions: Sequence[Partition]
) -> ProjectionLag:
    rows = []
    for partition in partitions:
        checkpoint = await checkpoint_of(engine, projection, partition.stream)
        try:
            info = await redis.xinfo_stream(partition.stream)
            groups = await redis.xinfo_groups(partition.stream)
        except ResponseError:  # no such stream yet: nothing to apply
            continue
        last = StreamPosition.parse(as_text(info["last-generated-id"]))
        group = next((g for g in groups if as_text(g["name"]) == projection), None)
        unapplied = (
            info["length"] if group is None else int(group.get("lag") or 0) + int(group["pending"])
        )
        behind = 0
        if last > checkpoint:
            oldest = await redis.xrange(partition.stream, f"({checkpoint}", "+", count=1)
            if oldest:
                seconds, micros = await redis.time()
                now_ms = int(seconds) * 1000 + int(micros) // 1000
                behind = max(0, now_ms - StreamPosition.parse(as_text(oldest[0][0])).ms)
        rows.append(PartitionLag(partition.stream, str(checkpoint), str(last), unapplied, behind))
    return ProjectionLag(
        projection=projection,
        unapplied=sum(row.unapplied for row in rows),
        behind_ms=max((row.behind_ms for row in rows), default=0),
        partitions=rows,
    )
