"""How far behind each consumer group is, per stream: cheap enough to ask on every scrape.

One round trip whatever the number of streams (XINFO GROUPS for each, pipelined), and no
XPENDING scan: for the oldest pending entry's age, see ``inspection.stream_states``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from eventbus.scripts import as_text
from eventbus.topology import Partition


@dataclass(frozen=True)
class GroupLag:
    group: str
    stream: str
    # Entries not delivered to the group yet; None when Redis cannot tell (after deletions
    # below the group's position, or when the group was created at an arbitrary id).
    lag: int | None
    # Delivered to a consumer of the group but not acknowledged yet.
    pending: int


async def consumer_group_lag(
    redis: aioredis.Redis, partitions: Sequence[Partition]
) -> list[GroupLag]:
    """Every group's lag on each partition's stream; streams that do not exist yet are left
    out (nothing was appended there, so no group is behind)."""
    async with redis.pipeline(transaction=False) as pipe:
        for partition in partitions:
            pipe.xinfo_groups(partition.stream)
        replies = await pipe.execute(raise_on_error=False)
    lags = []
    for partition, groups in zip(partitions, replies, strict=True):
        if isinstance(groups, ResponseError) and "no such key" in str(groups).lower():
            continue
        if isinstance(groups, Exception):
            raise groups
        lags += [
            GroupLag(
                group=as_text(info["name"]),
                stream=partition.stream,
                lag=None if info.get("lag") is None else int(info["lag"]),
                pending=int(info["pending"]),
            )
            for info in groups
        ]
    return lags
