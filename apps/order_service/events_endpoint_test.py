"""POST /events against a real Redis: the three CloudEvents modes, dedupe, and bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from contracts import decode_envelope
from eventbus.topology import Topology
from inventory.catalog_copy import CatalogItem, read_catalog_items
from order_service.app import create_app
from orderly_platform.embedded import RedisServer
from orderly_platform.settings import Settings

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STRUCTURED = {**AUTH, "Content-Type": "application/cloudevents+json"}
BATCH = {**AUTH, "Content-Type": "application/cloudevents-batch+json"}
MAX_BODY = 64 * 1024


@pytest_asyncio.fixture
async def client(
    redis_server: RedisServer, redis: aioredis.Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        redis_url=redis_server.url, api_token=TOKEN, max_request_bytes=MAX_BODY, stream_partitions=2
    )
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


def stock_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/warehouse/berlin",
        "type": "orderly.StockReceived.v1",
        "time": datetime.now(UTC).isoformat(),
        "subject": "SKU-1",
        "datacontenttype": "application/json",
        "data": {"sku": "SKU-1", "quantity": 5, "warehouse": "berlin"},
    }
    event.update(overrides)
    return event


async def stream_lengths(redis: aioredis.Redis) -> int:
    total = 0
    for partition in Topology(partitions=2).all_partitions():
        total += await redis.xlen(partition.stream)
    return total


async def stored_events(redis: aioredis.Redis) -> list[Any]:
    events = []
    for partition in Topology(partitions=2).all_partitions():
        events += [decode_envelope(f[b"event"]) for _, f in await redis.xrange(partition.stream)]
    return events


async def test_structured_mode_appends_the_event(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    event = stock_event()
    response = await client.post("/events", data=msgspec.json.encode(event), headers=STRUCTURED)
    assert response.status == 202
    body = await response.json()
    [answer] = body["events"]
    assert answer["id"] == event["id"] and answer["source"] == event["source"]
    [stored] = await stored_events(redis)
    assert stored.id == event["id"]
    assert stored.data.quantity == 5
    entries = await redis.xrange(answer["stream"], answer["entry_id"], answer["entry_id"])
    assert len(entries) == 1


async def test_binary_mode_reads_percent_encoded_attributes(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    headers = {
        **AUTH,
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/warehouse/m%C3%BCnchen%20north",
        "ce-type": "orderly.StockReceived.v1",
        "ce-time": "2026-11-28T10:00:00Z",
        "ce-subject": "SKU-2",
    }
    data = {"sku": "SKU-2", "quantity": 3, "warehouse": "muenchen"}
    response = await client.post("/events", data=msgspec.json.encode(data), headers=headers)
    assert response.status == 202, await response.text()
    [stored] = await stored_events(redis)
    assert stored.source == "/warehouse/münchen north"
    assert stored.data.sku == "SKU-2"


async def test_batch_mode_appends_every_event(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    events = [
        stock_event(
            subject=f"SKU-{n}", data={"sku": f"SKU-{n}", "quantity": n + 1, "warehouse": "w"}
        )
        for n in range(5)
    ]
    response = await client.post("/events", data=msgspec.json.encode(events), headers=BATCH)
    assert response.status == 202
    assert [a["id"] for a in (await response.json())["events"]] == [e["id"] for e in events]
    assert sorted(e.data.quantity for e in await stored_events(redis)) == [1, 2, 3, 4, 5]


async def test_a_repeated_event_gets_the_first_answer_and_appends_nothing(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    body = msgspec.json.encode(stock_event())
    first = await client.post("/events", data=body, headers=STRUCTURED)
    again = await client.post("/events", data=body, headers=STRUCTURED)
    assert first.status == again.status == 202
    assert await first.json() == await again.json()
    assert await stream_lengths(redis) == 1


async def test_stock_received_raises_the_live_catalog_copy_once(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    item = {"price": 500, "currency": "EUR", "on_hand": 10}
    assert (await client.put("/catalog/SKU-1", json=item, headers=AUTH)).status == 202
    delivery = msgspec.json.encode(stock_event())  # 5 units of SKU-1
    batch = msgspec.json.encode(
        [stock_event(), stock_event(data={"sku": "SKU-1", "quantity": 2, "warehouse": "w"})]
    )
    assert (await client.post("/events", data=delivery, headers=STRUCTURED)).status == 202
    assert (await client.post("/events", data=delivery, headers=STRUCTURED)).status == 202
    assert (await client.post("/events", data=batch, headers=BATCH)).status == 202
    # Read at once, with no wait: the copy moved in the same atomic step as each append.
    items = await read_catalog_items(redis, Topology(partitions=2), ["SKU-1"])
    assert items == {"SKU-1": CatalogItem(sku="SKU-1", price=500, currency="EUR", on_hand=22)}


def _bad_percent_headers() -> dict[str, str]:
    return {
        **AUTH,
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "x",
        "ce-source": "/bad%zzsource",
        "ce-type": "orderly.StockReceived.v1",
        "ce-time": "2026-11-28T10:00:00Z",
        "ce-subject": "SKU-1",
    }


BAD_REQUESTS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("malformed JSON", STRUCTURED, b'{"specversion": "1.0", ', 400, "malformed_json"),
    (
        "missing required attribute",
        STRUCTURED,
        msgspec.json.encode({k: v for k, v in stock_event().items() if k != "id"}),
        422,
        "schema_violation",
    ),
    (
        "specversion 0.3",
        STRUCTURED,
        msgspec.json.encode(stock_event(specversion="0.3")),
        400,
        "unsupported_spec_version",
    ),
    (
        "unknown type",
        STRUCTURED,
        msgspec.json.encode(stock_event(type="orderly.Nope.v1")),
        422,
        "unknown_event_type",
    ),
    (
        "schema violation in data",
        STRUCTURED,
        msgspec.json.encode(stock_event(data={"sku": "SKU-1", "quantity": 0, "warehouse": "w"})),
        422,
        "schema_violation",
    ),
    (
        "internal event type",
        STRUCTURED,
        msgspec.json.encode(
            stock_event(type="orderly.OrderConfirmed.v1", data={"order_id": "o-1"})
        ),
        422,
        "type_not_accepted",
    ),
    (
        "bad percent-encoding in a ce- header",
        _bad_percent_headers(),
        b'{"sku": "SKU-1", "quantity": 1, "warehouse": "w"}',
        400,
        "bad_header",
    ),
    (
        "binary mode without specversion",
        {
            **{k: v for k, v in _bad_percent_headers().items() if k != "ce-specversion"},
            "ce-source": "/ok",
        },
        b'{"sku": "SKU-1", "quantity": 1, "warehouse": "w"}',
        422,
        "schema_violation",
    ),
    (
        "oversized body",
        STRUCTURED,
        msgspec.json.encode(stock_event(padding="x" * MAX_BODY)),
        413,
        "payload_too_large",
    ),
    (
        "wrong content type",
        {**AUTH, "Content-Type": "text/plain"},
        msgspec.json.encode(stock_event()),
        415,
        "unsupported_media_type",
    ),
    (
        "missing token",
        {"Content-Type": "application/cloudevents+json"},
        msgspec.json.encode(stock_event()),
        401,
        "unauthorized",
    ),
    (
        "wrong token",
        {**STRUCTURED, "Authorization": "Bearer not-the-token"},
        msgspec.json.encode(stock_event()),
        401,
        "unauthorized",
    ),
    ("empty batch", BATCH, b"[]", 422, "empty_batch"),
    (
        "subject is not the SKU",
        STRUCTURED,
        msgspec.json.encode(stock_event(subject="SKU-OTHER")),
        422,
        "schema_violation",
    ),
    (
        "one bad event in a batch",
        BATCH,
        msgspec.json.encode(
            [stock_event(), stock_event(data={"sku": "SKU-1", "quantity": -1, "warehouse": "w"})]
        ),
        422,
        "schema_violation",
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_input_gets_a_json_4xx_and_appends_nothing(
    client: TestClient[Any, Any],
    redis: aioredis.Redis,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
) -> None:
    response = await client.post("/events", data=body, headers=headers)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = await response.json()
    assert error["error"] == code
    assert error["detail"]
    assert await stream_lengths(redis) == 0


async def test_schema_violation_names_the_field(client: TestClient[Any, Any]) -> None:
    body = msgspec.json.encode(stock_event(data={"sku": "SKU-1", "quantity": 0, "warehouse": "w"}))
    error = await (await client.post("/events", data=body, headers=STRUCTURED)).json()
    assert error["detail"]["field"] == "$.data.quantity"


async def test_health_and_readiness(client: TestClient[Any, Any]) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"redis": "ok"}
    missing = await client.get("/nope")
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"


async def test_an_outside_aggregate_version_is_not_stored(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    body = msgspec.json.encode(stock_event(aggregateversion=42))
    assert (await client.post("/events", data=body, headers=STRUCTURED)).status == 202
    [stored] = await stored_events(redis)
    assert stored.aggregateversion is None


async def test_an_unreachable_redis_is_a_503_not_a_hang() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", api_token=TOKEN, stream_partitions=2)
    async with TestClient(TestServer(create_app(settings))) as down:
        body = msgspec.json.encode(stock_event())
        response = await down.post("/events", data=body, headers=STRUCTURED)
        assert response.status == 503
        assert (await response.json())["error"] == "unavailable"
        ready = await down.get("/readyz")
        assert ready.status == 503
        assert "redis" in (await ready.json())["checks"]
