"""Appending events: idempotent by CloudEvents source+id, optimistic on aggregate version.

One Lua script per partition does the dedupe check, the version check and the XADD in one
atomic step, so a retried request can never write twice and two racing writers can never
both succeed on the same expected version.

Appends travel in *units* (what one caller asked for): a unit is all-or-nothing within each
partition, and a version conflict refuses only its own unit. That lets many callers share
one round trip (see ``coalescing``) without one caller's conflict failing another's append.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis

from contracts import EventEnvelope, encode_envelope
from eventbus.scripts import LuaScript, ScriptCall, as_text
from eventbus.topology import Partition, Topology, category_of

DEFAULT_DEDUPE_TTL = 7 * 24 * 3600
DEFAULT_VERSION_TTL = 90 * 24 * 3600

APPEND = LuaScript.named("append.lua")

_WRITTEN, _DUPLICATE, _REFUSED = 0, 1, 2


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


Unit = Sequence[PendingAppend]


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

    def partition_for(self, envelope: EventEnvelope) -> Partition:
        return self.topology.partition(category_of(envelope.type), envelope.subject)

    async def append(
        self, envelope: EventEnvelope, *, expected_version: int | None = None
    ) -> Appended:
        [appended] = await self.append_batch([PendingAppend(envelope, expected_version)])
        return appended

    async def append_batch(self, batch: Unit) -> list[Appended]:
        """Append one unit; results in the order of `batch`; raises VersionConflict."""
        [outcome] = await self.append_units([batch])
        if isinstance(outcome, VersionConflict):
            raise outcome
        return outcome

    async def append_units(self, units: Sequence[Unit]) -> list[list[Appended] | VersionConflict]:
        """Append many units in one round trip; each unit's outcome in the order given.

        A unit that spans partitions is atomic per partition: on a conflict in one partition
        its events in the others are still written, and the outcome is the conflict.
        """
        # (unit index, position in unit) per partition; a unit's events stay adjacent.
        placed: dict[Partition, list[tuple[int, int]]] = defaultdict(list)
        for unit_index, unit in enumerate(units):
            for position, pending in enumerate(unit):
                placed[self.partition_for(pending.envelope)].append((unit_index, position))

        calls: list[ScriptCall] = []
        for partition, slots in placed.items():
            keys: list[Any] = [partition.stream]
            args: list[Any] = [self.dedupe_ttl, self.version_ttl]
            for unit_index, position in slots:
                pending = units[unit_index][position]
                keys += [
                    partition.dedupe_key(pending.envelope.dedupe_key),
                    partition.version_key(pending.envelope.subject),
                ]
                expected = pending.expected_version
                args += [unit_index, "" if expected is None else expected, payload_of(pending)]
            calls.append((keys, args))
        replies = await APPEND.run_many(self.redis, calls)

        results: list[list[Appended | None]] = [[None] * len(unit) for unit in units]
        conflicts: dict[int, VersionConflict] = {}
        for (partition, slots), reply in zip(placed.items(), replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            for (unit_index, position), (entry_id, status, version, *where) in zip(
                slots, reply, strict=True
            ):
                if status == _REFUSED:
                    if unit_index not in conflicts:
                        # `where`: the refused event's offset among this unit's events here.
                        here = [p for u, p in slots if u == unit_index]
                        refused = units[unit_index][here[int(where[0])]]
                        assert refused.expected_version is not None
                        conflicts[unit_index] = VersionConflict(
                            refused.envelope.subject, refused.expected_version, int(version)
                        )
                    continue
                results[unit_index][position] = Appended(
                    stream=partition.stream,
                    entry_id=as_text(entry_id),
                    duplicate=status == _DUPLICATE,
                    version=int(version),
                )
        return [
            conflicts[index] if index in conflicts else [r for r in unit if r is not None]
            for index, unit in enumerate(results)
        ]


def payload_of(pending: PendingAppend) -> bytes:
    envelope = pending.envelope
    if pending.expected_version is not None:
        # A versioned append records the version it creates, so readers can check order.
        envelope = msgspec.structs.replace(envelope, aggregateversion=pending.expected_version + 1)
    return encode_envelope(envelope)
