"""Operator calls on dead letters: list, show, requeue, drop.

A dead letter is addressed as ``<dead-letter stream>/<entry id>``, or by its entry id alone
when that is unambiguous across partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from eventbus.scripts import LuaScript, as_text
from eventbus.topology import Partition

REQUEUE = LuaScript.named("requeue.lua")


class DeadLetterNotFound(LookupError):
    pass


@dataclass(frozen=True)
class DeadLetter:
    partition: Partition
    dead_letter_id: str
    stream: str
    entry_id: str
    group: str
    consumer: str
    deliveries: int
    error: str
    at: str
    payload: bytes

    @property
    def address(self) -> str:
        return f"{self.partition.dead_letters}/{self.dead_letter_id}"

    def summary(self) -> dict[str, object]:
        return {
            "id": self.address,
            "stream": self.stream,
            "entry_id": self.entry_id,
            "group": self.group,
            "consumer": self.consumer,
            "deliveries": self.deliveries,
            "error": self.error.strip().splitlines()[-1] if self.error.strip() else "",
            "at": self.at,
        }

    def details(self) -> dict[str, object]:
        return {
            **self.summary(),
            "error": self.error,
            "event": self.payload.decode(errors="replace"),
        }


class DeadLetters:
    def __init__(self, redis: aioredis.Redis, partitions: Sequence[Partition]) -> None:
        self.redis = redis
        self.partitions = list(partitions)

    async def count(self) -> int:
        total = 0
        for partition in self.partitions:
            total += await self.redis.xlen(partition.dead_letters)
        return total

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for partition in self.partitions:
            entries = await self.redis.xrange(partition.dead_letters, count=limit)
            letters += [_dead_letter(partition, entry_id, fields) for entry_id, fields in entries]
        letters.sort(key=lambda letter: letter.at)
        return letters[:limit]

    async def show(self, address: str) -> DeadLetter:
        partition, entry_id = await self._locate(address)
        entries = await self.redis.xrange(partition.dead_letters, entry_id, entry_id)
        if not entries:
            raise DeadLetterNotFound(f"no dead letter {address}")
        return _dead_letter(partition, *entries[0])

    async def requeue(self, address: str) -> str:
        """Append the event to its stream again, as a new entry marked ``requeued_for`` the
        group that dead-lettered it: consumers of other groups ack it unhandled (they
        handled the original), and a replay skips it unless that group is the archive."""
        partition, entry_id = await self._locate(address)
        new_id = await REQUEUE.run(
            self.redis, [partition.dead_letters, partition.stream], [entry_id]
        )
        if new_id is None:
            raise DeadLetterNotFound(f"no dead letter {address}")
        return as_text(new_id)

    async def drop(self, address: str) -> None:
        partition, entry_id = await self._locate(address)
        if not await self.redis.xdel(partition.dead_letters, entry_id):
            raise DeadLetterNotFound(f"no dead letter {address}")

    async def _locate(self, address: str) -> tuple[Partition, str]:
        stream, _, entry_id = address.rpartition("/")
        if stream:
            for partition in self.partitions:
                if partition.dead_letters == stream:
                    return partition, entry_id
            raise DeadLetterNotFound(f"{stream!r} is not a dead-letter stream")
        matches = [
            partition
            for partition in self.partitions
            if await self.redis.xrange(partition.dead_letters, entry_id, entry_id)
        ]
        if len(matches) != 1:
            raise DeadLetterNotFound(
                f"no dead letter {entry_id}"
                if not matches
                else f"{entry_id} is ambiguous: give it as <dead-letter stream>/{entry_id}"
            )
        return matches[0], entry_id


def _dead_letter(
    partition: Partition, entry_id: bytes | str, fields: dict[bytes, bytes]
) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    return DeadLetter(
        partition=partition,
        dead_letter_id=as_text(entry_id),
        stream=text("stream"),
        entry_id=text("entry_id"),
        group=text("group"),
        consumer=text("consumer"),
        deliveries=int(text("deliveries") or 0),
        error=text("error"),
        at=text("at"),
        payload=fields.get(b"event", b""),
    )
