"""One feed of server-sent events shared by every open dashboard.

However many pages are open, the service computes one snapshot per interval and runs one
tail of the order streams, and encodes each message once; every page gets the same bytes.
Nothing runs while no page is open. A page that reads too slowly to keep up is let go (its
event stream ends, and the browser's EventSource reconnects to a fresh snapshot), so one
stalled client can neither slow the others nor grow the service's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import msgspec

from order_service.order_flow import FlowEvent
from orderly_platform.logs import get_logger

log = get_logger(__name__)

# Messages waiting for one page before it is let go as too slow (a snapshot every interval
# plus a flow message per stream read: many seconds of backlog).
CLIENT_BACKLOG = 256
# The latest flow messages, which a page that just opened gets first.
RECENT_FLOW = 20
# Events in one flow message at most; a busier read is summarised by its count.
FLOW_EVENTS_SHOWN = 50

# The largest share of the time the feed may spend computing snapshots.
MAX_DUTY = 0.1

_json = msgspec.json.Encoder()

SnapshotSource = Callable[[], Awaitable[msgspec.Struct]]
# Awaiting it positions the flow: what is appended afterwards is in it.
FlowSource = Callable[[], Awaitable[AsyncIterator[list[FlowEvent]]]]


def sse_frame(event: str, data: object) -> bytes:
    """One server-sent event; compact JSON holds no newline, so it is one ``data:`` line."""
    return b"event: " + event.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"


class DashboardFeed:
    def __init__(self, snapshot: SnapshotSource, flow: FlowSource, *, interval_s: float) -> None:
        self._snapshot = snapshot
        self._flow = flow
        self._interval_s = interval_s
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._latest_snapshot: bytes | None = None
        self._recent_flow: deque[bytes] = deque(maxlen=RECENT_FLOW)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def running(self) -> bool:
        return self._task is not None

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[bytes | None]]:
        """The messages for one page, starting with the latest snapshot and recent flow;
        ``None`` means its stream is over (too slow, or the service is stopping)."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=CLIENT_BACKLOG)
        if self._closed:
            queue.put_nowait(None)
        else:
            for frame in [self._latest_snapshot, *self._recent_flow]:
                if frame is not None:
                    queue.put_nowait(frame)
            self._clients.add(queue)
            if self._task is None:
                # A context of its own: the feed outlives the request that started it, and
                # must not log that request's correlation id (or continue its trace) forever.
                self._task = asyncio.create_task(
                    self._run(), name="dashboard-feed", context=contextvars.Context()
                )
                self._task.add_done_callback(self._feed_ended)
        try:
            yield queue
        finally:
            self._clients.discard(queue)
            if not self._clients:
                await self._stop()

    async def close(self) -> None:
        """End every page's stream (on shutdown: an open page must not hold the service up)."""
        self._closed = True
        for queue in list(self._clients):
            self._let_go(queue)
        await self._stop()

    def _feed_ended(self, task: asyncio.Task[None]) -> None:
        """A feed that failed is let go, so that the next page to subscribe starts a new one."""
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("dashboard feed failed", exc_info=error)
        if self._task is task:
            self._task = None
            # Their pages reconnect, and the first of them starts a new feed.
            for queue in list(self._clients):
                self._let_go(queue)

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # The flow is positioned before the first snapshot is taken, so a page can rely on
        # it: every order event appended after its first snapshot shows up in the flow.
        flow = await self._positioned_flow()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._snapshots())
            group.create_task(self._order_flow(flow))

    async def _snapshots(self) -> None:
        while True:
            started = time.monotonic()
            try:
                frame = sse_frame("snapshot", await self._snapshot())
                self._latest_snapshot = frame
            except Exception as exc:  # Redis or Postgres away: say so, and try again
                log.warning("dashboard snapshot failed", error=str(exc))
                frame = sse_frame("problem", {"error": f"cannot read the platform's state: {exc}"})
            self._publish(frame)
            took = time.monotonic() - started
            # At most a tenth of the time spent reading: a snapshot that grows slow (counting
            # a read model of millions of orders) spaces the next ones out instead of keeping
            # Postgres busy.
            await asyncio.sleep(max(self._interval_s - took, took * (1 / MAX_DUTY - 1)))

    async def _order_flow(self, flow: AsyncIterator[list[FlowEvent]] | None) -> None:
        while True:
            if flow is not None:
                try:
                    async for events in flow:
                        frame = sse_frame("flow", _flow_message(events))
                        self._recent_flow.append(frame)
                        self._publish(frame)
                except Exception as exc:  # the snapshots report the outage
                    log.warning("dashboard order flow failed", error=str(exc))
            await asyncio.sleep(self._interval_s)
            flow = await self._positioned_flow()

    async def _positioned_flow(self) -> AsyncIterator[list[FlowEvent]] | None:
        try:
            return await self._flow()
        except Exception as exc:
            log.warning("dashboard order flow cannot start", error=str(exc))
            return None

    def _publish(self, frame: bytes) -> None:
        for queue in list(self._clients):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                self._let_go(queue)

    def _let_go(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._clients.discard(queue)
        # Its backlog is dropped: the end of the stream must be the next thing it reads.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)


def _flow_message(events: Sequence[FlowEvent]) -> dict[str, object]:
    return {"count": len(events), "events": list(events[-FLOW_EVENTS_SHOWN:])}
