"""Appending events: idempotent by CloudEvents source+id, optimistic on aggregate version.

One Lua script per partition does the dedupe check, the version check and the XADD in one
atomic step, so a retried request can never write twice and two racing writers can never
both succeed on the same expected version.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from contracts import EventEnvelope, encode_envelope
from eventbus.scripts import as_text, load_script
from eventbus.topology import Partition, Topology, category_of

DEFAULT_DEDUPE_TTL = 7 * 24 * 3600
DEFAULT_VERSION_TTL = 90 * 24 * 3600


class VersionConflict(Exception):
    """The aggregate moved on since the writer read it: re-read and decide again."""

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"aggregate {aggregate_id!r} is at version {actual}, not the expected {expected}"
        )
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Appended:
    stream: str
    entry_id: str
    duplicate: bool
    # The aggregate's version after this event; 0 for a duplicate (it changed nothing).
    version: int


@dataclass(frozen=True)
class PendingAppend:
    envelope: EventEnvelope
    expected_version: int | None = None


class EventAppender:
    def __init__(
        self,
        redis: aioredis.Redis,
        topology: Topology,
        *,
        dedupe_ttl: int = DEFAULT_DEDUPE_TTL,
        version_ttl: int = DEFAULT_VERSION_TTL,
    ) -> None:
        self.redis = redis
        self.topology = topology
        self.dedupe_ttl = dedupe_ttl
        self.version_ttl = version_ttl
        self._script: AsyncScript = load_script(redis, "append.lua")

    def partition_for(self, envelope: EventEnvelope) -> Partition:
        return self.topology.partition(category_of(envelope.type), envelope.subject)

    async def append(
        self, envelope: EventEnvelope, *, expected_version: int | None = None
    ) -> Appended:
        [appended] = await self.append_batch([PendingAppend(envelope, expected_version)])
        return appended

    async def append_batch(self, batch: list[PendingAppend]) -> list[Appended]:
        """Append many events: atomic per partition, one round trip for all partitions.

        Results come back in the order of `batch`. A version conflict in any partition
        raises; the partitions without a conflict are written (each is atomic on its own).
        """
        by_partition: dict[Partition, list[int]] = defaultdict(list)
        for position, pending in enumerate(batch):
            by_partition[self.partition_for(pending.envelope)].append(position)

        async with self.redis.pipeline(transaction=False) as pipe:
            for partition, positions in by_partition.items():
                keys = [partition.stream]
                args: list[Any] = [self.dedupe_ttl, self.version_ttl]
                for position in positions:
                    pending = batch[position]
                    keys += [
                        partition.dedupe_key(pending.envelope.dedupe_key),
                        partition.version_key(pending.envelope.subject),
                    ]
                    expected = pending.expected_version
                    args += ["" if expected is None else expected, payload_of(pending)]
                await self._script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)

        results: list[Appended | None] = [None] * len(batch)
        for (partition, positions), reply in zip(by_partition.items(), replies, strict=True):
            if isinstance(reply, ResponseError):
                raise _conflict_or(reply, batch, positions)
            for position, (entry_id, duplicate, version) in zip(positions, reply, strict=True):
                results[position] = Appended(
                    stream=partition.stream,
                    entry_id=as_text(entry_id),
                    duplicate=bool(duplicate),
                    version=int(version),
                )
        return [result for result in results if result is not None]


def payload_of(pending: PendingAppend) -> bytes:
    envelope = pending.envelope
    if pending.expected_version is not None:
        # A versioned append records the version it creates, so readers can check order.
        envelope = msgspec.structs.replace(envelope, aggregateversion=pending.expected_version + 1)
    return encode_envelope(envelope)


def _conflict_or(reply: Exception, batch: list[PendingAppend], positions: list[int]) -> Exception:
    message = str(reply)
    if message.startswith("VERSION_CONFLICT"):
        _, index, actual = message.split()
        pending = batch[positions[int(index) - 1]]
        assert pending.expected_version is not None
        return VersionConflict(pending.envelope.subject, pending.expected_version, int(actual))
    return reply
