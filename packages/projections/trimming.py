"""Keeping Redis memory bounded: trim each stream below what is safe to forget.

An entry may leave Redis once it is (1) in the event archive, which replay reads, and
(2) acknowledged by every consumer group, so no group can still need it from the stream.
XTRIM MINID removes entries below a threshold; the threshold is the lowest of the archive
checkpoint's successor, every group's oldest pending entry, and the successor of every
group's last delivered entry. Every input only moves forward, so a threshold computed a
moment ago is still safe when the trim runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.scripts import as_text
from eventbus.topology import Partition
from projections.archive import ARCHIVE
from projections.checkpointed import checkpoint_of
from projections.positions import BEGINNING, StreamPosition


def _successor(position: StreamPosition) -> StreamPosition:
    return StreamPosition(position.ms, position.seq + 1)


async def safe_trim_threshold(
    redis: aioredis.Redis, engine: AsyncEngine, partition: Partition
) -> StreamPosition | None:
    """The lowest entry id that must stay; everything below it may go. None: keep all."""
    archived = await checkpoint_of(engine, ARCHIVE.name, partition.stream)
    if archived == BEGINNING:
        return None
    threshold = _successor(archived)
    for group in await redis.xinfo_groups(partition.stream):
        name = as_text(group["name"])
        delivered = StreamPosition.parse(as_text(group["last-delivered-id"]))
        threshold = min(threshold, _successor(delivered))
        for oldest in await redis.xpending_range(partition.stream, name, "-", "+", 1):
            threshold = min(threshold, StreamPosition.parse(as_text(oldest["message_id"])))
    return threshold


async def trim_streams(
    redis: aioredis.Redis,
    engine: AsyncEngine,
    partitions: Sequence[Partition],
    *,
    approximate: bool = True,
) -> int:
    """Trim every partition's stream as far as is safe; returns how many entries went.

    ``approximate`` lets Redis drop only whole internal nodes, which is much cheaper and
    trims at most a little less; tests use exact trimming to see the threshold itself.
    """
    removed = 0
    for partition in partitions:
        threshold = await safe_trim_threshold(redis, engine, partition)
        if threshold is not None:
            removed += await redis.xtrim(
                partition.stream, minid=str(threshold), approximate=approximate
            )
    return removed
