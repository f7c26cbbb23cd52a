"""The consumer-group runtime: batches in, handler once per batch, ack after success.

What it guarantees, with an idempotent handler:
- an entry is acked only after the handler returned for it, so nothing acknowledged is lost;
- a consumer that dies leaves its entries pending, and a peer takes them over with
  XAUTOCLAIM once they have been idle for ``claim_idle_ms``;
- a batch that fails is retried entry by entry, so one poison entry does not hold back the
  others; an entry delivered more than ``max_deliveries`` times goes to the dead-letter stream
  with its last error, consumer and delivery count, and is acked;
- ``stop()`` (wired to SIGTERM by ``run_until_signalled``) stops reading, lets the batch in
  hand finish and be acked, then returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from contracts import EventEnvelope, decode_envelope
from eventbus.scripts import LuaScript, as_text
from eventbus.topology import Partition
from orderly_platform.logs import get_logger

log = get_logger(__name__)

DEAD_LETTER = LuaScript.named("dead_letter.lua")


@dataclass(frozen=True)
class StreamEntry:
    partition: Partition
    entry_id: str
    payload: bytes
    # 1 on first delivery; more when a retry or a takeover delivered it again.
    deliveries: int = 1

    def envelope(self) -> EventEnvelope:
        return decode_envelope(self.payload)


Handler = Callable[[Sequence[StreamEntry]], Awaitable[None]]


@dataclass
class ConsumerStats:
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    failed_batches: int = 0
    claimed: int = 0


@dataclass
class ConsumerConfig:
    group: str
    consumer: str
    # Entries per partition per read (XREADGROUP's COUNT applies to each stream).
    batch_size: int = 256
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    claim_interval_s: float = 5.0
    max_deliveries: int = 5
    # Where a new group starts reading: "0" replays the whole stream, "$" only new entries.
    start_id: str = "0"


class StreamConsumer:
    def __init__(
        self,
        redis: aioredis.Redis,
        partitions: Sequence[Partition],
        handler: Handler,
        config: ConsumerConfig,
    ) -> None:
        self.redis = redis
        self.partitions = list(partitions)
        self.handler = handler
        self.config = config
        self.stats = ConsumerStats()
        self._by_stream = {p.stream: p for p in self.partitions}
        self._stopping = asyncio.Event()
        # The last failure of run_supervised, cleared by the next successful read.
        self.failure: str | None = None

    def stop(self) -> None:
        """Graceful stop: no new reads; the batch in hand is finished and acked."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def ensure_groups(self) -> None:
        for partition in self.partitions:
            try:
                await self.redis.xgroup_create(
                    partition.stream, self.config.group, id=self.config.start_id, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self) -> None:
        await self.ensure_groups()
        # After a restart under the same name, our own pending entries come first.
        await self._process_own_pending()
        loop = asyncio.get_running_loop()
        next_claim = loop.time()
        while not self.stopping:
            if loop.time() >= next_claim:
                await self._claim_and_process()
                next_claim = loop.time() + self.config.claim_interval_s
            entries = await self._read_new()
            if entries:
                await self._process(entries)
        log.info("consumer stopped", group=self.config.group, consumer=self.config.consumer)

    async def run_supervised(self, *, max_backoff_s: float = 30.0) -> None:
        """``run()``, started again after a failure (Redis restarted or unreachable, say)
        with a capped exponential backoff, until ``stop()``. ``healthy`` says whether it is
        running or waiting to try again."""
        backoff = 0.5
        while not self.stopping:
            try:
                await self.run()
                return
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "consumer failed; starting again",
                    group=self.config.group,
                    error=self.failure,
                    retry_in_s=backoff,
                )
            # Waiting for stop() or the backoff, whichever comes first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, max_backoff_s)

    @property
    def healthy(self) -> bool:
        """False from a failure of ``run_supervised`` until its next successful read."""
        return self.failure is None

    async def run_once(self) -> int:
        """One read-and-handle cycle without claiming; returns how many entries it handled."""
        entries = await self._read_new()
        if entries:
            await self._process(entries)
        return len(entries)

    # --- reading -----------------------------------------------------------------------

    async def _read_new(self) -> list[StreamEntry]:
        reply = await self.redis.xreadgroup(
            self.config.group,
            self.config.consumer,
            {p.stream: ">" for p in self.partitions},
            count=self.config.batch_size,
            block=self.config.block_ms,
        )
        self.failure = None
        entries = []
        for stream, stream_entries in reply or []:
            partition = self._by_stream[as_text(stream)]
            for entry_id, fields in stream_entries:
                entries.append(StreamEntry(partition, as_text(entry_id), _payload(fields)))
        return entries

    async def _process_own_pending(self) -> None:
        """Handle our own pending entries, claimed again so their delivery counts move on."""
        for partition in self.partitions:
            after = "-"
            while not self.stopping:
                pending = await self.redis.xpending_range(
                    partition.stream,
                    self.config.group,
                    min=after,
                    max="+",
                    count=self.config.batch_size,
                    consumername=self.config.consumer,
                )
                if not pending:
                    break
                ids = [item["message_id"] for item in pending]
                # One pass: an entry that fails again waits for the idle-time takeover.
                after = "(" + as_text(ids[-1])
                claimed = await self.redis.xclaim(
                    partition.stream, self.config.group, self.config.consumer, 0, ids
                )
                await self._process_pending(await self._with_deliveries(partition, claimed))

    async def _claim_and_process(self) -> None:
        """Take over entries that another (probably dead) consumer left idle too long.

        One batch is claimed and handled before the next is claimed: claiming everything
        first would let the last claimed entries go idle again while the first are handled,
        and a peer would claim (and handle) them a second time.
        """
        for partition in self.partitions:
            start = "0-0"
            while not self.stopping:
                reply = await self.redis.xautoclaim(
                    partition.stream,
                    self.config.group,
                    self.config.consumer,
                    min_idle_time=self.config.claim_idle_ms,
                    start_id=start,
                    count=self.config.batch_size,
                )
                start, claimed = as_text(reply[0]), reply[1]
                entries = await self._with_deliveries(partition, claimed)
                if entries:
                    self.stats.claimed += len(entries)
                    log.info("claimed idle entries", group=self.config.group, count=len(entries))
                    await self._process_pending(entries)
                # The cursor, not an empty reply, says when the whole PEL has been scanned.
                if start == "0-0":
                    break

    async def _with_deliveries(self, partition: Partition, claimed: list[Any]) -> list[StreamEntry]:
        # XCLAIM/XAUTOCLAIM return entries without their delivery counts; XPENDING has them.
        live = [(as_text(entry_id), fields) for entry_id, fields in claimed if fields]
        if not live:
            return []
        deliveries: dict[str, int] = {}
        pending = await self.redis.xpending_range(
            partition.stream,
            self.config.group,
            min=live[0][0],
            max=live[-1][0],
            count=len(live) * 4,
            consumername=self.config.consumer,
        )
        deliveries = {as_text(item["message_id"]): item["times_delivered"] for item in pending}
        for entry_id, _ in live:
            if entry_id not in deliveries:  # beyond the window: other pending entries between
                [item] = await self.redis.xpending_range(
                    partition.stream, self.config.group, min=entry_id, max=entry_id, count=1
                )
                deliveries[entry_id] = item["times_delivered"]
        return [
            StreamEntry(partition, entry_id, _payload(fields), deliveries[entry_id])
            for entry_id, fields in live
        ]

    # --- handling ----------------------------------------------------------------------

    async def _process_pending(self, entries: list[StreamEntry]) -> None:
        alive = []
        for entry in entries:
            if entry.deliveries > self.config.max_deliveries:
                await self._move_to_dead_letters(entry)
            else:
                alive.append(entry)
        self.stats.retried += len(alive)
        for start in range(0, len(alive), self.config.batch_size):
            await self._process(alive[start : start + self.config.batch_size])

    async def _process(self, entries: list[StreamEntry]) -> None:
        try:
            await self.handler(entries)
        except Exception:
            self.stats.failed_batches += 1
            if len(entries) == 1:
                await self._record_error(entries[0])
                return
            # Isolate the failing entries so the rest of the batch is not held back.
            for entry in entries:
                try:
                    await self.handler([entry])
                except Exception:
                    await self._record_error(entry)
                else:
                    await self._ack([entry])
            return
        await self._ack(entries)

    async def _ack(self, entries: list[StreamEntry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.partition.stream, []).append(entry.entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.config.group, *ids)
            for entry in entries:
                if entry.deliveries > 1:  # a retry: forget the error an earlier try recorded
                    pipe.hdel(entry.partition.errors, f"{self.config.group}:{entry.entry_id}")
            await pipe.execute()
        self.stats.processed += len(entries)

    async def _record_error(self, entry: StreamEntry) -> None:
        error = traceback.format_exc(limit=5)
        log.warning(
            "handler failed; entry stays pending",
            group=self.config.group,
            stream=entry.partition.stream,
            entry_id=entry.entry_id,
            deliveries=entry.deliveries,
            error=error.strip().splitlines()[-1],
        )
        await self.redis.hset(
            entry.partition.errors, f"{self.config.group}:{entry.entry_id}", error
        )

    async def _move_to_dead_letters(self, entry: StreamEntry) -> None:
        partition = entry.partition
        dead_letter_id = await DEAD_LETTER.run(
            self.redis,
            [partition.stream, partition.dead_letters, partition.errors],
            [
                self.config.group,
                entry.entry_id,
                entry.payload,
                self.config.consumer,
                entry.deliveries,
                "delivered too often without success (no handler error recorded)",
                datetime.now(UTC).isoformat(),
            ],
        )
        if dead_letter_id is None:  # a peer acked it meanwhile: handled after all
            return
        self.stats.dead_lettered += 1
        log.error(
            "entry dead-lettered",
            group=self.config.group,
            stream=partition.stream,
            entry_id=entry.entry_id,
            deliveries=entry.deliveries,
        )


def _payload(fields: dict[bytes, bytes]) -> bytes:
    # An entry written by something else than the appender has no "event" field: hand the
    # handler empty bytes, so it fails, and the entry is dead-lettered instead of crashing
    # the consumer (and every restart of it) on the same entry.
    return fields.get(b"event", b"")


async def run_until_signalled(consumer: StreamConsumer) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stop)
    try:
        await consumer.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
