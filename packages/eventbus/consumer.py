"""The consumer-group runtime: each partition in stream order, handler once per batch, ack
after success.

What it guarantees, with an idempotent handler:
- each partition is read by one consumer of the group at a time (its lease, see leases.py),
  and reaches the handler in stream order: no entry is handled while an earlier entry of its
  partition is still unhandled, which is what a projection's checkpoint relies on;
- an entry is acked only after the handler returned for it, so nothing acknowledged is lost;
- a consumer that dies stops renewing its leases; after ``lease_ms`` a peer takes its
  partitions over and handles everything still pending there before anything new;
- a batch that fails is retried entry by entry, so other partitions are not held back; in
  the failing entry's partition the later entries wait while that entry is retried alone,
  with backoff, until it succeeds or has been delivered ``max_deliveries`` times and goes to
  the dead-letter stream with its last error, consumer and delivery count;
- an entry requeued from the dead letters for another group is acked unseen: this group
  handled the original;
- ``stop()`` (wired to SIGTERM by ``run_until_signalled``) stops reading, lets the batch in
  hand finish and be acked, hands the leases back, then returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from contracts import EventEnvelope, decode_envelope
from eventbus.event_context import about_entry
from eventbus.leases import PartitionLeases
from eventbus.metrics import BATCH_DURATION, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from eventbus.scripts import LuaScript, as_text
from eventbus.topology import Partition
from orderly_platform.logs import get_logger
from orderly_platform.metrics import labelled

log = get_logger(__name__)

DEAD_LETTER = LuaScript.named("dead_letter.lua")
FENCED_READ = LuaScript.named("fenced_read.lua")
FENCED_CLAIM = LuaScript.named("fenced_claim.lua")


@dataclass(frozen=True)
class StreamEntry:
    partition: Partition
    entry_id: str
    payload: bytes
    # 1 on first delivery; more when a retry or a takeover delivered it again.
    deliveries: int = 1
    # Set on a dead letter put back on its stream: the group that had failed it.
    requeued_for: str | None = None

    def envelope(self) -> EventEnvelope:
        return decode_envelope(self.payload)


Handler = Callable[[Sequence[StreamEntry]], Awaitable[None]]


@dataclass
class ConsumerStats:
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    failed_batches: int = 0
    # Pending entries taken over from another consumer (a dead owner of the partition).
    claimed: int = 0


@dataclass
class ConsumerConfig:
    group: str
    consumer: str
    # Entries per partition per read.
    batch_size: int = 256
    block_ms: int = 1000
    # How long a partition stays with a consumer that stopped renewing (a dead one).
    lease_ms: int = 10_000
    max_deliveries: int = 5
    # The wait before a failed entry is tried again, doubled on each failure up to the cap.
    retry_backoff_s: float = 0.5
    max_retry_backoff_s: float = 30.0
    # Where a new group starts reading: "0" replays the whole stream, "$" only new entries.
    start_id: str = "0"
    # After a batch that was not full, wait this long before reading again: light traffic
    # is then handled in fewer, larger batches, for handlers whose cost is mostly per batch
    # (a transaction and a checkpoint write each), at the price of this much more latency.
    linger_ms: int = 0


@dataclass
class _Retry:
    due: float
    backoff: float


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
        self._batch_duration = labelled(BATCH_DURATION, config.group)
        self.leases = PartitionLeases(
            redis, config.group, config.consumer, partitions, config.lease_ms
        )
        # Partitions whose pending entries come before any new read: just taken over, or
        # holding an entry that failed (then not before its backoff is over).
        self._recovering: dict[Partition, _Retry] = {}
        self._leases_lock = asyncio.Lock()
        self._leases_due = 0.0
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
        await self.refresh_leases()
        # Renewed beside the work, so a handler that takes long (waiting out a database
        # outage, say) does not lose its partitions meanwhile.
        keeper = asyncio.create_task(self._keep_leases())
        linger = self.config.linger_ms / 1000
        try:
            while not self.stopping:
                handled = await self.run_once()
                if linger and 0 < handled < self.config.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), linger)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self._release_leases()
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
        """One cycle: leases refreshed when due, pending entries of the partitions that need
        it handled, then one read of the others (blocking up to ``block_ms`` when there is
        nothing). Returns how many entries it handled or dead-lettered."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._leases_due:
            await self.refresh_leases()
        done = 0
        for partition, retry in list(self._recovering.items()):
            if retry.due <= loop.time() and not self.stopping:
                done += await self._recover(partition)
        readable = [p for p in self.leases.held if p not in self._recovering]
        if not readable:
            await self._idle()
            return done
        entries = await self._read_new(readable)
        if entries:
            await self._process(entries)
        return done + len(entries)

    # --- leases ------------------------------------------------------------------------

    async def refresh_leases(self) -> None:
        async with self._leases_lock:
            gained, lost = await self.leases.refresh()
            self._leases_due = asyncio.get_running_loop().time() + self.leases.renew_interval_s
        for partition in lost:
            self._recovering.pop(partition, None)
        for partition in gained:
            # A new owner handles what the previous one left pending before anything new.
            self._recovering[partition] = _Retry(due=0.0, backoff=self.config.retry_backoff_s)
        if gained or lost:
            log.info(
                "partitions rebalanced",
                group=self.config.group,
                consumer=self.config.consumer,
                gained=[p.tag for p in gained],
                lost=[p.tag for p in lost],
            )

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.leases.renew_interval_s)  # a schedule, not a condition
            try:
                await self.refresh_leases()
            except Exception as exc:  # Redis away: the main loop fails and restarts too
                log.warning("lease renewal failed", group=self.config.group, error=str(exc))

    async def _release_leases(self) -> None:
        try:
            await self.leases.release_all()
        except Exception as exc:  # they expire on their own after lease_ms
            log.warning("could not hand leases back", group=self.config.group, error=str(exc))

    def _lost(self, partition: Partition) -> None:
        self.leases.forget(partition)
        self._recovering.pop(partition, None)

    async def _idle(self) -> None:
        """Nothing to read: wait for the next retry, a lease refresh, or stop()."""
        loop = asyncio.get_running_loop()
        wake = min(
            [loop.time() + self.config.block_ms / 1000, self._leases_due]
            + [retry.due for retry in self._recovering.values()]
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, wake - loop.time()))

    # --- reading -----------------------------------------------------------------------

    async def _read_new(self, partitions: Sequence[Partition]) -> list[StreamEntry]:
        group, consumer = self.config.group, self.config.consumer
        replies = await FENCED_READ.run_many(
            self.redis,
            [
                ([p.stream, p.lease_key(group)], [group, consumer, self.config.batch_size])
                for p in partitions
            ],
        )
        entries: list[StreamEntry] = []
        waits: dict[str, str] = {}
        for partition, reply in zip(partitions, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            if reply is None:
                self._lost(partition)
                continue
            raw, last_id = reply
            entries += (_entry(partition, entry_id, fields) for entry_id, fields in raw)
            if not raw:
                waits[partition.stream] = as_text(last_id)
        self.failure = None
        if not entries and waits:
            # Wait for anything after each stream's last entry. A plain XREAD: it takes
            # nothing, so the fenced read above stays the only way entries are delivered.
            await self.redis.xread(waits, count=1, block=self.config.block_ms)
        return entries

    async def _recover(self, partition: Partition) -> int:
        """Handle the partition's pending entries before anything new: a dead owner's, or
        the ones waiting behind a failure here. Returns how many it handled or dead-lettered.

        The first goes alone and counts as a delivery: it is the one that failed (or that
        a dead owner died on), and each try of it alone is an attempt of it. The others
        keep their counts: they only waited, so they are never dead-lettered for the
        failures of the one ahead of them.
        """
        group, consumer = self.config.group, self.config.consumer
        done, alone = 0, True
        while not self.stopping:
            pending = await self.redis.xpending_range(
                partition.stream,
                group,
                min="-",
                max="+",
                count=1 if alone else self.config.batch_size,
            )
            if not pending:
                self._recovering.pop(partition, None)
                return done
            previous = {as_text(item["message_id"]): item["times_delivered"] for item in pending}
            claimed = await FENCED_CLAIM.run(
                self.redis,
                [partition.stream, partition.lease_key(group)],
                [group, consumer, "1" if alone else "0", *previous],
            )
            if claimed is None:
                self._lost(partition)
                return done
            self.stats.claimed += sum(
                1 for item in pending if as_text(item["consumer"]) != consumer
            )
            entries = [
                _entry(partition, item[0], item[1], deliveries=previous[as_text(item[0])] + alone)
                for item in claimed
                if item and item[1]  # Redis before 7 answers nil for a deleted entry
            ]
            if not entries:  # pending, but deleted from the stream: nothing left to handle
                await self.redis.xack(partition.stream, group, *previous)
                continue
            done += len(entries)
            if alone and entries[0].deliveries > self.config.max_deliveries:
                await self._move_to_dead_letters(entries[0])
            else:
                self.stats.retried += len(entries)
                if await self._process(entries):
                    return done  # failed again: _process scheduled the next try
            alone = False
        return done

    # --- handling ----------------------------------------------------------------------

    async def _process(self, entries: list[StreamEntry]) -> set[Partition]:
        """Hand the entries over, ack what succeeded; returns the partitions that failed,
        each now waiting for its retry."""
        group = self.config.group
        foreign = [e for e in entries if e.requeued_for not in (None, group)]
        if foreign:
            await self._ack(foreign)
            entries = [e for e in entries if e.requeued_for in (None, group)]
        failed = await self._handle(entries) if entries else set()
        now = asyncio.get_running_loop().time()
        for partition in failed:
            previous = self._recovering.get(partition)
            backoff = (
                min(previous.backoff * 2, self.config.max_retry_backoff_s)
                if previous and previous.due > 0
                else self.config.retry_backoff_s
            )
            self._recovering[partition] = _Retry(due=now + backoff, backoff=backoff)
        return failed

    async def _handle(self, entries: list[StreamEntry]) -> set[Partition]:
        started = time.perf_counter()
        try:
            await self.handler(entries)
        except Exception:
            self._batch_duration.observe(time.perf_counter() - started)
            self.stats.failed_batches += 1
            if len(entries) == 1:
                await self._record_error(entries[0])
                return {entries[0].partition}
            # One entry at a time, so the other partitions are not held back. In a partition
            # with a failure the later entries wait (pending): handling them first would put
            # them ahead of the failed one.
            failed: set[Partition] = set()
            for entry in entries:
                if entry.partition in failed:
                    continue
                try:
                    await self.handler([entry])
                except Exception:
                    await self._record_error(entry)
                    failed.add(entry.partition)
                else:
                    await self._ack([entry])
            return failed
        self._batch_duration.observe(time.perf_counter() - started)
        await self._ack(entries)
        return set()

    async def _ack(self, entries: Iterable[StreamEntry]) -> None:
        by_stream: dict[str, list[str]] = {}
        retried = []
        for entry in entries:
            by_stream.setdefault(entry.partition.stream, []).append(entry.entry_id)
            if entry.deliveries > 1:
                retried.append(entry)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.config.group, *ids)
            for entry in retried:  # forget the error an earlier try recorded
                pipe.hdel(entry.partition.errors, f"{self.config.group}:{entry.entry_id}")
            await pipe.execute()
        for stream, ids in by_stream.items():
            labelled(EVENTS_CONSUMED, self.config.group, stream).inc(len(ids))
        self.stats.processed += sum(len(ids) for ids in by_stream.values())

    async def _record_error(self, entry: StreamEntry) -> None:
        error = traceback.format_exc(limit=5)
        with about_entry(entry.payload):
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
            [
                partition.stream,
                partition.dead_letters,
                partition.errors,
                partition.lease_key(self.config.group),
            ],
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
        if dead_letter_id is None:  # acked meanwhile, or the partition is no longer ours
            return
        self.stats.dead_lettered += 1
        labelled(EVENTS_DEAD_LETTERED, self.config.group, partition.stream).inc()
        with about_entry(entry.payload):
            log.error(
                "entry dead-lettered",
                group=self.config.group,
                stream=partition.stream,
                entry_id=entry.entry_id,
                deliveries=entry.deliveries,
            )


def _entry(
    partition: Partition, entry_id: bytes | str, fields: Any, *, deliveries: int = 1
) -> StreamEntry:
    # Replies that passed through Lua hold fields as a flat [name, value, ...] list.
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    requeued_for = fields.get(b"requeued_for")
    return StreamEntry(
        partition,
        as_text(entry_id),
        _payload(fields),
        deliveries,
        as_text(requeued_for) if requeued_for is not None else None,
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
