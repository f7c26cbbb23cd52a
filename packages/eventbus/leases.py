"""Partition leases: each partition of a group is read by one consumer at a time.

A projection's checkpoint (and any handler that keeps a per-aggregate order) relies on a
partition's entries being handled in stream order. Two consumers reading one partition
would interleave its entries, so each partition has a lease per group, a Redis key with a
time to live, held by one consumer and renewed while it runs. A consumer that dies stops
renewing; after ``lease_ms`` a peer takes the partition, and with it every entry still
pending there, before it reads anything new.

The partitions are shared fairly: every consumer heartbeats into the group's member set and
holds at most ceil(partitions / live members), handing surplus leases back when peers join.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence

import redis.asyncio as aioredis

from eventbus.scripts import LuaScript
from eventbus.topology import Partition

HOLD = LuaScript.named("hold_lease.lua")
RELEASE = LuaScript.named("release_lease.lua")

# A member that missed this many lease times of heartbeats counts as gone.
_MEMBER_EXPIRY_LEASES = 1.5


def members_key(group: str) -> str:
    return f"orderly:members:{{{group}}}"


class PartitionLeases:
    """The partitions one consumer of a group holds; ``refresh()`` renews, takes and gives."""

    def __init__(
        self,
        redis: aioredis.Redis,
        group: str,
        consumer: str,
        partitions: Sequence[Partition],
        lease_ms: int,
    ) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.partitions = list(partitions)
        self.lease_ms = lease_ms
        self.held: list[Partition] = []

    @property
    def renew_interval_s(self) -> float:
        # Three renewals per lease: one lost to a slow round trip is not the end of it.
        return self.lease_ms / 3000

    async def refresh(self) -> tuple[list[Partition], list[Partition]]:
        """Heartbeat, renew what is held, take free partitions up to the fair share and give
        back the surplus. Returns (gained, lost): partitions newly held, and no longer held."""
        share = await self._fair_share()
        before = set(self.held)
        renewed = await HOLD.run_many(
            self.redis,
            [([p.lease_key(self.group)], [self.consumer, self.lease_ms]) for p in self.held],
        )
        held = [p for p, ok in zip(self.held, renewed, strict=True) if ok == 1][:share]
        # Free partitions in an order rotated by the consumer's name, so consumers starting
        # together reach for different ones first.
        start = zlib.crc32(self.consumer.encode()) % len(self.partitions)
        for partition in self.partitions[start:] + self.partitions[:start]:
            if len(held) >= share:
                break
            if partition not in before and await HOLD.run(
                self.redis, [partition.lease_key(self.group)], [self.consumer, self.lease_ms]
            ):
                held.append(partition)
        surplus = [p for p in self.held if p not in held]
        await self._release(surplus)
        self.held = sorted(held, key=lambda p: (p.category, p.index))
        return [p for p in self.held if p not in before], surplus

    def forget(self, partition: Partition) -> None:
        """A fenced call found the lease held by someone else: it was lost meanwhile."""
        if partition in self.held:
            self.held.remove(partition)

    async def release_all(self) -> None:
        """Hand every lease back (a graceful stop), so peers need not wait for expiry."""
        await self._release(self.held)
        self.held = []
        await self.redis.zrem(members_key(self.group), self.consumer)

    async def _fair_share(self) -> int:
        now_ms = int(time.time() * 1000)
        expired_before = now_ms - int(self.lease_ms * _MEMBER_EXPIRY_LEASES)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(members_key(self.group), {self.consumer: now_ms})
            pipe.zremrangebyscore(members_key(self.group), "-inf", expired_before)
            pipe.zcard(members_key(self.group))
            *_, members = await pipe.execute()
        return math.ceil(len(self.partitions) / max(1, int(members)))

    async def _release(self, partitions: Sequence[Partition]) -> None:
        if partitions:
            await RELEASE.run_many(
                self.redis, [([p.lease_key(self.group)], [self.consumer]) for p in partitions]
            )
