"""Prometheus metrics every service shares: ``GET /metrics``, HTTP latency per route, and
refreshers that update gauges just before a scrape.

Series are named ``orderly_<what>`` with ``_total`` counters and ``_seconds`` histograms
(README, "Metrics", lists them all). Labels are bounded by construction: a route is its
template (``/orders/{order_id}``), never the path a client sent, requests no route matched
share one label, and so do unusual methods, so no caller can mint new series.

Each process has one registry (prometheus_client's default); packages define their series
beside the code that records them and register them on import.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import REGISTRY, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from orderly_platform.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Reads something (Redis, say) and sets gauges from it; run on each scrape.
ScrapeRefresher = Callable[[], Awaitable[None]]

# From sub-millisecond handlers up to the 30 s a request may wait on a slow dependency.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Waits that can last from milliseconds to hours (a saga riding out a provider outage).
LONG_WAIT_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    6 * 3600.0,
    24 * 3600.0,
)
# A scrape must answer even when what a refresher reads hangs: it serves the last values.
REFRESH_TIMEOUT_S: Final = 2.0
UNMATCHED_ROUTE: Final = "<unmatched>"
# Methods beyond these (WebDAV's, say, which the parser accepts) share one label.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUEST_DURATION = Histogram(
    "orderly_http_request_duration_seconds",
    "Time from a request's arrival to its response, per route template.",
    ["service", "route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)

Metric = TypeVar("Metric", bound=MetricWrapperBase)
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def labelled(metric: Metric, *labels: str) -> Metric:
    """``metric.labels(*labels)``, looked up once: for label sets that are few and fixed
    (groups times stream partitions, say) on hot paths, since ``labels()`` takes a lock and
    builds its key on every call."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


_REFRESHERS: web.AppKey[list[ScrapeRefresher]] = web.AppKey("metrics_refreshers")


def route_of(request: web.Request) -> str:
    """The route's template, or one shared label for requests no route matched."""
    resource = request.match_info.route.resource
    return UNMATCHED_ROUTE if resource is None else resource.canonical


def http_metrics(service: str) -> Middleware:
    """Middleware recording ``orderly_http_request_duration_seconds`` for ``service``.

    It must be outermost, so it sees the status the client gets (after the JSON error
    middleware has turned exceptions into responses).
    """

    @web.middleware
    async def record_latency(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # what aiohttp answers when a handler raises past every middleware
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            # The client went away first (nginx's "client closed request"). Only where the
            # server cancels handlers of lost clients: `serve` leaves aiohttp's
            # handler_cancellation off, so a handler there finishes and records its status.
            status = 499
            raise
        finally:
            method = request.method if request.method in _METHODS else "OTHER"
            labelled(
                HTTP_REQUEST_DURATION, service, route_of(request), method, str(status)
            ).observe(time.perf_counter() - started)

    return record_latency


def refresh_on_scrape(app: web.Application, refresher: ScrapeRefresher) -> None:
    """Run ``refresher`` before each scrape of ``app``'s ``/metrics`` (within a timeout)."""
    app.setdefault(_REFRESHERS, []).append(refresher)


def add_metrics(app: web.Application, service: str) -> None:
    """``GET /metrics`` in Prometheus' text format, and HTTP latency of every request."""
    app.middlewares.insert(0, http_metrics(service))
    app.setdefault(_REFRESHERS, [])

    async def metrics(request: web.Request) -> web.Response:
        await _refresh(request.app[_REFRESHERS])
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/metrics", metrics)


async def _refresh(refreshers: list[ScrapeRefresher]) -> None:
    if not refreshers:
        return
    results = await asyncio.gather(
        *(asyncio.wait_for(refresh(), REFRESH_TIMEOUT_S) for refresh in refreshers),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            # A dependency that does not answer leaves its gauges at their last values; the
            # scrape itself still succeeds, so every other series stays visible.
            log.warning("a metrics refresher failed", error=f"{type(result).__name__}: {result}")
