"""request_context: a correlation id per request, on its log lines and in its response."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orderly_platform.http import (
    CORRELATION_HEADER,
    correlation_id_of,
    json_errors,
    json_response,
    request_context,
)
from orderly_platform.logs import get_logger
from orderly_platform.testing import json_log_lines, log_output

log = get_logger("test")

__all__ = ["log_output"]  # the fixture


async def show(request: web.Request) -> web.Response:
    log.info("handling")
    return json_response({"correlation_id": correlation_id_of(request)})


async def fail(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


@pytest_asyncio.fixture
async def client(log_output: io.StringIO) -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[request_context, json_errors])
    app.router.add_get("/orders/{order_id}", show)
    app.router.add_get("/plain", show)
    app.router.add_get("/fail", fail)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_callers_id_is_kept_logged_and_returned(
    client: TestClient[Any, Any], log_output: io.StringIO
) -> None:
    response = await client.get("/orders/o-1", headers={CORRELATION_HEADER: "req-42"})
    assert response.status == 200
    assert response.headers[CORRELATION_HEADER] == "req-42"
    assert await response.json() == {"correlation_id": "req-42"}
    [line] = json_log_lines(log_output, "handling")
    assert (line["correlation_id"], line["order_id"]) == ("req-42", "o-1")


async def test_without_one_each_request_starts_its_own_and_nothing_carries_over(
    client: TestClient[Any, Any], log_output: io.StringIO
) -> None:
    first = await client.get("/orders/o-1")
    second = await client.get("/plain")  # same connection: same task in the server
    ids = [r.headers[CORRELATION_HEADER] for r in (first, second)]
    assert ids[0] != ids[1]
    assert all(uuid.UUID(i) for i in ids)
    one, two = json_log_lines(log_output, "handling")
    assert one["correlation_id"] == ids[0] and one["order_id"] == "o-1"
    assert two["correlation_id"] == ids[1] and "order_id" not in two


async def test_error_responses_carry_the_id_too(client: TestClient[Any, Any]) -> None:
    response = await client.get("/fail", headers={CORRELATION_HEADER: "req-7"})
    assert response.status == 404
    assert response.headers[CORRELATION_HEADER] == "req-7"


@pytest.mark.parametrize("bad", ["", "a" * 129, "é", "a b", "-leading-dash"])
async def test_an_unusable_id_is_refused_with_400(client: TestClient[Any, Any], bad: str) -> None:
    response = await client.get("/plain", headers={CORRELATION_HEADER: bad})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "bad_correlation_id" and CORRELATION_HEADER in body["detail"]
