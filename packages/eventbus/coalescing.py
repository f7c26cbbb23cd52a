"""Group commit for appends: concurrent callers share round trips to Redis.

Each caller still gets its own outcome, and its own atomicity: the script refuses a unit
whose version check fails (or whose claim is held) without touching the others in the same
call. Appends that arrive while flushes are in flight queue up and leave together in the
next one, so under load the batches grow by themselves, and at low load an append waits for
no timer. A few flushes may be in flight at once, so Python encodes the next batch while
Redis runs the previous one.
"""

from __future__ import annotations

import asyncio

from eventbus.appender import Appended, AppendRefused, EventAppender, Unit, traced

Waiting = tuple[Unit, "asyncio.Future[list[Appended]]"]


class CoalescingAppender:
    def __init__(
        self,
        appender: EventAppender,
        *,
        max_events_per_flush: int = 1000,
        max_flushes_in_flight: int = 2,
    ) -> None:
        self.appender = appender
        self.max_events_per_flush = max_events_per_flush
        self._slots = asyncio.Semaphore(max_flushes_in_flight)
        self._waiting: list[Waiting] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self.flushes = 0

    async def append_batch(self, batch: Unit) -> list[Appended]:
        """Same contract as ``EventAppender.append_batch``; raises ``AppendRefused``."""
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._waiting.append((traced(batch), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._dispatch_until_empty())
        return await future

    async def _dispatch_until_empty(self) -> None:
        while self._waiting:
            await self._slots.acquire()
            taken = self._take()
            self.flushes += 1
            flush = asyncio.create_task(self._flush(taken))
            self._flushes.add(flush)  # keep a reference until it is done
            flush.add_done_callback(self._flushes.discard)

    def _take(self) -> list[Waiting]:
        """The oldest waiting units, up to the event budget (always at least one unit)."""
        count, events = 0, 0
        for unit, _ in self._waiting:
            if count and events + len(unit) > self.max_events_per_flush:
                break
            count += 1
            events += len(unit)
        taken = self._waiting[:count]
        del self._waiting[:count]
        return taken

    async def _flush(self, taken: list[Waiting]) -> None:
        try:
            outcomes = await self.appender.append_units([unit for unit, _ in taken])
        except BaseException as exc:
            # Redis unreachable, or this task cancelled: every caller of the flush must hear
            # of it. Their events may or may not be written; a retry is safe (dedupe).
            failure = exc if isinstance(exc, Exception) else RuntimeError("append cancelled")
            for _, future in taken:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._slots.release()
        for (_, future), outcome in zip(taken, outcomes, strict=True):
            if future.done():  # the caller went away (request cancelled)
                continue
            if isinstance(outcome, AppendRefused):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
