"""``GET /dashboard`` (one self-contained page) and ``GET /dashboard/events`` (its live data
as server-sent events).

Like the service's other GET endpoints, both are open to whoever reaches the service: the
page is read-only and shows order ids, counts and lags, never a customer id, an address or
a payment token. Bearer tokens guard the writes; a browser's EventSource could not send one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import cache
from importlib import resources

from aiohttp import web

from eventbus.topology import ORDERS
from order_service.dashboard_feed import DashboardFeed
from order_service.dashboard_snapshot import Snapshot, take_snapshot
from order_service.keys import ENGINE, REDIS, SETTINGS, TOPOLOGY
from order_service.order_flow import FlowEvent, tail_order_events

DASHBOARD_FEED = web.AppKey("dashboard_feed", DashboardFeed)
# A comment line this often keeps proxies and the browser from closing a quiet stream.
KEEPALIVE_S = 15.0
# How soon the browser reconnects when the stream ends (a restart, or a page let go).
RECONNECT_MS = 2000

# Everything the page needs is in it: no other origin is ever contacted.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def add_dashboard(app: web.Application) -> None:
    """The routes and the shared feed; call it after the Redis and Postgres resources."""
    app.router.add_get("/dashboard", get_dashboard)
    app.router.add_get("/dashboard/events", get_dashboard_events)
    app.cleanup_ctx.append(_feed)
    # On shutdown, before aiohttp waits for open requests: end every page's stream.
    app.on_shutdown.append(_close_feed)


async def get_dashboard(request: web.Request) -> web.Response:
    return web.Response(
        body=_page(),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": _PAGE_POLICY, "Cache-Control": "no-cache"},
    )


async def get_dashboard_events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a buffering proxy would hold the events back
        }
    )
    await response.prepare(request)
    try:
        await response.write(f"retry: {RECONNECT_MS}\n\n".encode())
        async with request.app[DASHBOARD_FEED].subscribe() as messages:
            while True:
                try:
                    frame = await asyncio.wait_for(messages.get(), KEEPALIVE_S)
                except TimeoutError:
                    frame = b": keepalive\n\n"
                if frame is None:
                    break
                await response.write(frame)
    except ConnectionResetError:
        pass  # the page was closed
    return response


@cache
def _page() -> bytes:
    """The page, a resource of this package (read once, on the first request)."""
    return resources.files("order_service").joinpath("dashboard.html").read_bytes()


async def _feed(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis, engine = app[REDIS], app.get(ENGINE)
    stuck_after = timedelta(seconds=settings.dashboard_stuck_after_s)
    everything = app[TOPOLOGY].all_partitions()
    order_partitions = app[TOPOLOGY].partitions_of(ORDERS)

    async def snapshot() -> Snapshot:
        return await take_snapshot(redis, engine, everything, stuck_after=stuck_after)

    async def flow() -> AsyncIterator[list[FlowEvent]]:
        return await tail_order_events(redis, order_partitions)

    app[DASHBOARD_FEED] = DashboardFeed(snapshot, flow, interval_s=settings.dashboard_interval_s)
    yield
    await app[DASHBOARD_FEED].close()


async def _close_feed(app: web.Application) -> None:
    await app[DASHBOARD_FEED].close()
