"""What operators ask of the streams: length, groups, lag, and how stale the oldest pending is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from eventbus.scripts import as_text
from eventbus.topology import Partition


@dataclass(frozen=True)
class GroupState:
    name: str
    consumers: int
    pending: int
    # Entries not yet delivered to the group; None when Redis cannot tell (after deletions).
    lag: int | None
    last_delivered_id: str
    oldest_pending_id: str | None
    oldest_pending_idle_ms: int | None


@dataclass(frozen=True)
class StreamState:
    stream: str
    length: int
    dead_letters: int
    groups: list[GroupState]


async def stream_states(
    redis: aioredis.Redis, partitions: Sequence[Partition]
) -> list[StreamState]:
    states = []
    for partition in partitions:
        if not await redis.exists(partition.stream):
            continue
        groups = []
        for info in await redis.xinfo_groups(partition.stream):
            name = as_text(info["name"])
            oldest_id, oldest_idle = None, None
            # Acked between XINFO and XPENDING, the oldest may be gone: then there is none.
            for oldest in await redis.xpending_range(partition.stream, name, "-", "+", 1):
                oldest_id = as_text(oldest["message_id"])
                oldest_idle = int(oldest["time_since_delivered"])
            groups.append(
                GroupState(
                    name=name,
                    consumers=int(info["consumers"]),
                    pending=int(info["pending"]),
                    lag=None if info.get("lag") is None else int(info["lag"]),
                    last_delivered_id=as_text(info["last-delivered-id"]),
                    oldest_pending_id=oldest_id,
                    oldest_pending_idle_ms=oldest_idle,
                )
            )
        states.append(
            StreamState(
                stream=partition.stream,
                length=await redis.xlen(partition.stream),
                dead_letters=await redis.xlen(partition.dead_letters),
                groups=groups,
            )
        )
    return states
