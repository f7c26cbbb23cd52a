"""/metrics and the HTTP latency middleware, on an in-process aiohttp app."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientTimeout, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY, Counter

from orderly_platform import metrics
from orderly_platform.http import ApiError, add_health_routes, json_errors
from orderly_platform.metrics import labelled, refresh_on_scrape
from orderly_platform.scraped import Sample, samples, total

DURATION_COUNT = "orderly_http_request_duration_seconds_count"


def service_app(service: str) -> web.Application:
    app = web.Application(middlewares=[json_errors])

    async def get_order(request: web.Request) -> web.Response:
        return web.json_response({"order_id": request.match_info["order_id"]})

    async def refuse(request: web.Request) -> web.Response:
        raise ApiError(422, "schema_violation", "no")

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/orders/{order_id}", get_order)
    app.router.add_post("/orders", refuse)
    app.router.add_get("/crash", crash)
    add_health_routes(app, {}, service=service)
    return app


@pytest.fixture
def service() -> str:
    # Unique per test: the registry is the process's, shared by every test here.
    return f"svc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(service: str) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(service_app(service))) as test_client:
        yield test_client


async def scrape(client: TestClient[Any, Any]) -> list[Sample]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    return samples(await response.text())


async def test_latency_is_recorded_per_route_template_not_per_path(
    client: TestClient[Any, Any], service: str
) -> None:
    for order_id in ("o-1", "o-2", "o-3"):
        assert (await client.get(f"/orders/{order_id}")).status == 200

    scraped = await scrape(client)
    route = {"service": service, "route": "/orders/{order_id}", "method": "GET"}
    assert total(scraped, DURATION_COUNT, **route, status="200") == 3
    assert total(scraped, "orderly_http_request_duration_seconds_sum", **route)
    # No series carries a client's path: that would let callers mint series without bound.
    assert not [s for s in scraped if "o-1" in s.labels.get("route", "")]


async def test_the_status_is_what_the_client_got(
    client: TestClient[Any, Any], service: str
) -> None:
    assert (await client.post("/orders", json={})).status == 422
    assert (await client.get("/crash")).status == 500
    assert (await client.get("/no/such/path/123")).status == 404
    assert (await client.put("/orders/o-1")).status == 405
    assert (await client.request("PROPFIND", "/orders/o-1")).status == 405

    scraped = await scrape(client)
    assert total(scraped, DURATION_COUNT, service=service, route="/orders", status="422") == 1
    assert total(scraped, DURATION_COUNT, service=service, route="/crash", status="500") == 1
    assert total(scraped, DURATION_COUNT, service=service, route="<unmatched>", status="404") == 1
    # A wrong method matched no route either: one bounded label for both.
    unmatched = {"service": service, "route": "<unmatched>", "status": "405"}
    assert total(scraped, DURATION_COUNT, **unmatched, method="PUT") == 1
    # WebDAV and other methods the parser knows share one label with any others.
    assert total(scraped, DURATION_COUNT, **unmatched, method="OTHER") == 1
    assert not [s for s in scraped if s.labels.get("method") == "PROPFIND"]


async def test_every_service_app_serves_metrics_and_health(
    client: TestClient[Any, Any], service: str
) -> None:
    assert (await client.get("/healthz")).status == 200
    scraped = await scrape(client)
    assert total(scraped, DURATION_COUNT, service=service, route="/healthz") == 1
    # The process's own series come with the registry.
    assert total(scraped, "process_cpu_seconds_total") is not None


async def test_refreshers_run_before_each_scrape(service: str) -> None:
    app = service_app(service)
    scrapes = Counter(f"orderly_test_{service.replace('-', '_')}_refreshes", "test", ["service"])

    async def refresh() -> None:
        scrapes.labels(service).inc()

    refresh_on_scrape(app, refresh)
    async with TestClient(TestServer(app)) as client:
        await scrape(client)
        scraped = await scrape(client)
    name = f"orderly_test_{service.replace('-', '_')}_refreshes_total"
    assert total(scraped, name, service=service) == 2


async def test_a_failing_or_hanging_refresher_leaves_the_scrape_working(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "REFRESH_TIMEOUT_S", 0.05)
    app = service_app(service)
    hung = asyncio.Event()

    async def hang() -> None:
        await hung.wait()

    async def fail() -> None:
        raise ConnectionError("redis away")

    refresh_on_scrape(app, hang)
    refresh_on_scrape(app, fail)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        scraped = await scrape(client)
    assert total(scraped, DURATION_COUNT, service=service, route="/healthz") == 1


def test_labelled_children_are_looked_up_once() -> None:
    counter = Counter(f"orderly_test_{uuid.uuid4().hex[:8]}", "test", ["stream"])
    first = labelled(counter, "s-1")
    assert labelled(counter, "s-1") is first
    assert labelled(counter, "s-2") is not first
    first.inc(3)
    assert counter.labels("s-1")._value.get() == 3


async def test_a_request_whose_client_went_away_counts_as_closed_by_the_client(
    service: str,
) -> None:
    app = service_app(service)
    hung = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await hung.wait()
        return web.Response()

    app.router.add_get("/slow", slow)
    labels = {"service": service, "route": "/slow", "method": "GET", "status": "499"}
    # The test server cancels a handler whose client hung up (handler_cancellation).
    async with TestClient(TestServer(app)) as client:
        with pytest.raises(TimeoutError):
            await client.get("/slow", timeout=ClientTimeout(total=0.2))
        async with asyncio.timeout(10):
            while REGISTRY.get_sample_value(DURATION_COUNT, labels) is None:
                await asyncio.sleep(0.01)  # polling the registry for the cancellation's record
    assert REGISTRY.get_sample_value(DURATION_COUNT, labels) == 1
