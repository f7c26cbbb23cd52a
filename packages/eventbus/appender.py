"""Appending events: idempotent by CloudEvents source+id, optimistic on aggregate version.

One Lua script per partition does the dedupe check, the version check and the XADD in one
atomic step, so a retried request can never write twice and two racing writers can never
both succeed on the same expected version.

Appends travel in *units* (what one caller asked for): a unit is all-or-nothing within each
partition, and a version conflict refuses only its own unit. That lets many callers share
one round trip (see ``coalescing``) without one caller's conflict failing another's append.

The same script call can do two more things, so that a request's only write stays one
atomic step:

- an event may carry a ``Claim``: a key of its partition that must not exist yet (an
  idempotency record, say). A held claim refuses the unit with ``AlreadyClaimed``, carrying
  the holder's value; a free one is set with the event, for as long as a dedupe key lives.
- an event may carry ``SideWrite``s: HSET or HINCRBY on keys of its partition, done only
  when the event is written, so state kept beside a stream (the live catalog entry of a
  SKU, say) moves exactly as the stream does and a retried event never moves it twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis

from contracts import EventEnvelope, encode_envelope
from eventbus.metrics import EVENTS_APPENDED, EVENTS_DEDUPLICATED
from eventbus.scripts import LuaScript, ScriptCall, as_text
from eventbus.topology import Partition, Topology, category_of
from orderly_platform.metrics import labelled
from orderly_platform.tracing import current_traceparent

DEFAULT_DEDUPE_TTL = 7 * 24 * 3600
DEFAULT_VERSION_TTL = 90 * 24 * 3600

APPEND = LuaScript.named("append.lua")

_WRITTEN, _DUPLICATE, _VERSION_REFUSED, _CLAIM_REFUSED = 0, 1, 2, 3
# What the script reads after each event's payload; bytes, which redis-py sends as they are
# (it converts every int or str argument, and most events have neither claim nor side write).
_NO_CLAIM, _CLAIMED, _NO_SIDE_WRITES = b"0", b"1", b"0"


class AppendRefused(Exception):
    """The script refused a unit: none of its events in that partition was written."""


class VersionConflict(AppendRefused):
    """The aggregate moved on since the writer read it: re-read and decide again."""

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"aggregate {aggregate_id!r} is at version {actual}, not the expected {expected}"
        )
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class AlreadyClaimed(AppendRefused):
    """Another unit holds the claim; ``value`` is what that unit stored with it."""

    def __init__(self, key: str, value: bytes) -> None:
        super().__init__(f"{key!r} is already claimed")
        self.key = key
        self.value = value


@dataclass(frozen=True)
class Appended:
    stream: str
    entry_id: str
    duplicate: bool
    # The aggregate's version after this event; 0 for a duplicate (it changed nothing).
    version: int


@dataclass(frozen=True)
class Claim:
    """A key that the event's unit must be the first to set (to ``value``).

    It lives in the event's partition and is kept as long as a dedupe key.
    """

    key: str
    value: bytes


@dataclass(frozen=True)
class SideWrite:
    """A write to a key of the event's partition, done exactly when the event is written.

    Only HSET and HINCRBY are offered, and a key must only ever hold what they expect (a
    hash; integers in the fields HINCRBY adds to): Redis does not roll a script back, so a
    write failing halfway through one would leave what came before it written.
    """

    command: Literal["HSET", "HINCRBY"]
    key: str
    args: tuple[str | int | bytes, ...]

    @classmethod
    def hset(cls, key: str, fields: Mapping[str, str | int | bytes]) -> SideWrite:
        return cls("HSET", key, tuple(v for pair in fields.items() for v in pair))

    @classmethod
    def hincrby(cls, key: str, field: str, amount: int) -> SideWrite:
        return cls("HINCRBY", key, (field, amount))


@dataclass(frozen=True)
class PendingAppend:
    envelope: EventEnvelope
    expected_version: int | None = None
    claim: Claim | None = None
    side_writes: tuple[SideWrite, ...] = ()


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
        """Append one unit; results in the order of `batch`.

        Raises ``VersionConflict`` or ``AlreadyClaimed`` (both ``AppendRefused``).
        """
        [outcome] = await self.append_units([traced(batch)])
        if isinstance(outcome, AppendRefused):
            raise outcome
        return outcome

    async def append_units(self, units: Sequence[Unit]) -> list[list[Appended] | AppendRefused]:
        """Append many units in one round trip; each unit's outcome in the order given.

        A unit that spans partitions is atomic per partition: on a refusal in one partition
        its events in the others are still written, and the outcome is the refusal.
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
                _add_event(keys, args, partition, unit_index, units[unit_index][position])
            calls.append((keys, args))
        replies = await APPEND.run_many(self.redis, calls)

        results: list[list[Appended | None]] = [[None] * len(unit) for unit in units]
        refusals: dict[int, AppendRefused] = {}
        for (partition, slots), reply in zip(placed.items(), replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            _count(partition, reply)
            for (unit_index, position), (entry_id, status, detail, *where) in zip(
                slots, reply, strict=True
            ):
                if status in (_VERSION_REFUSED, _CLAIM_REFUSED):
                    if unit_index not in refusals:
                        # `where`: the refused event's offset among this unit's events here.
                        here = [p for u, p in slots if u == unit_index]
                        refused = units[unit_index][here[int(where[0])]]
                        refusals[unit_index] = _refusal(refused, status, detail)
                    continue
                results[unit_index][position] = Appended(
                    stream=partition.stream,
                    entry_id=as_text(entry_id),
                    duplicate=status == _DUPLICATE,
                    version=int(detail),
                )
        return [
            refusals[index] if index in refusals else [r for r in unit if r is not None]
            for index, unit in enumerate(results)
        ]


def _count(partition: Partition, reply: list[Any]) -> None:
    """The partition's written and deduplicated events, once per script call."""
    written = duplicates = 0
    for _, status, *_rest in reply:
        if status == _WRITTEN:
            written += 1
        elif status == _DUPLICATE:
            duplicates += 1
    if written:
        labelled(EVENTS_APPENDED, partition.stream).inc(written)
    if duplicates:
        labelled(EVENTS_DEDUPLICATED, partition.stream).inc(duplicates)


def _add_event(
    keys: list[Any], args: list[Any], partition: Partition, unit: int, pending: PendingAppend
) -> None:
    """Add an event's keys and arguments to a script call, in append.lua's layout."""
    keys += [
        partition.dedupe_key(pending.envelope.dedupe_key),
        partition.version_key(pending.envelope.subject),
    ]
    expected = pending.expected_version
    args += [unit, "" if expected is None else expected, payload_of(pending)]
    if pending.claim is None:
        args.append(_NO_CLAIM)
    else:
        keys.append(_in_partition(partition, pending.claim.key))
        args += [_CLAIMED, pending.claim.value]
    if not pending.side_writes:
        args.append(_NO_SIDE_WRITES)
        return
    args.append(len(pending.side_writes))
    for write in pending.side_writes:
        keys.append(_in_partition(partition, write.key))
        args += [write.command, len(write.args), *write.args]


def _refusal(refused: PendingAppend, status: int, detail: Any) -> AppendRefused:
    """What the script's refusal of ``refused`` means: ``detail`` is a version or a value."""
    if status == _CLAIM_REFUSED:
        assert refused.claim is not None
        return AlreadyClaimed(refused.claim.key, detail)
    assert refused.expected_version is not None
    return VersionConflict(refused.envelope.subject, refused.expected_version, int(detail))


def _in_partition(partition: Partition, key: str) -> str:
    # A key of another hash slot would break the script's atomicity on Redis Cluster (and
    # be refused there with CROSSSLOT): a programming error, caught before anything runs.
    if not partition.holds(key):
        raise ValueError(f"{key!r} is not in the hash slot of {partition.tag}")
    return key


def traced(unit: Unit) -> Unit:
    """``unit`` with the caller's trace context in each envelope that has none, so the
    trace continues wherever the events are consumed.

    Called in the caller's task (a coalesced append is encoded in another one). Without
    tracing it returns ``unit`` as it is, at the cost of one check.
    """
    traceparent = current_traceparent()
    if traceparent is None:
        return unit
    return [
        (
            pending
            if pending.envelope.traceparent is not None
            else replace(
                pending,
                envelope=msgspec.structs.replace(pending.envelope, traceparent=traceparent),
            )
        )
        for pending in unit
    ]


def payload_of(pending: PendingAppend) -> bytes:
    envelope = pending.envelope
    if pending.expected_version is not None:
        # A versioned append records the version it creates, so readers can check order.
        envelope = msgspec.structs.replace(envelope, aggregateversion=pending.expected_version + 1)
    return encode_envelope(envelope)
