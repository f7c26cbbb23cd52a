"""PUT /catalog/{sku} against a real Redis: the change becomes one CatalogItemUpdated event."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from contracts import CatalogItemUpdated, decode_envelope
from eventbus.topology import Topology
from inventory.catalog_copy import CatalogItem, read_catalog_items
from order_service.testing import AUTH

HEADERS = {**AUTH, "Content-Type": "application/json"}
ITEM = {"price": 1299, "currency": "EUR", "on_hand": 40}


async def catalog_events(redis: aioredis.Redis) -> list[Any]:
    events = []
    for partition in Topology(partitions=2).partitions_of("catalog"):
        events += [decode_envelope(f[b"event"]) for _, f in await redis.xrange(partition.stream)]
    return events


async def test_put_records_the_change_as_an_event(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    response = await client.put("/catalog/SKU-7", json=ITEM, headers=HEADERS)
    assert response.status == 202
    assert await response.json() == {"sku": "SKU-7", **ITEM}
    [envelope] = await catalog_events(redis)
    assert envelope.subject == "SKU-7"
    assert envelope.data == CatalogItemUpdated(sku="SKU-7", price=1299, currency="EUR", on_hand=40)


async def test_put_sets_the_live_catalog_copy_before_it_answers(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    for price, on_hand in ((1299, 40), (1499, 3)):
        body = {"price": price, "currency": "EUR", "on_hand": on_hand}
        assert (await client.put("/catalog/SKU-7", json=body, headers=HEADERS)).status == 202
        items = await read_catalog_items(redis, Topology(partitions=2), ["SKU-7"])
        assert items == {
            "SKU-7": CatalogItem(sku="SKU-7", price=price, currency="EUR", on_hand=on_hand)
        }


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "code"),
    [
        (
            "/catalog/SKU-7",
            {"Content-Type": "application/json"},
            b'{"price": 1}',
            401,
            "unauthorized",
        ),
        (
            "/catalog/bad%20sku",
            HEADERS,
            b'{"price": 1, "currency": "EUR", "on_hand": 1}',
            422,
            "schema_violation",
        ),
        (
            "/catalog/SKU-7",
            {**HEADERS, "Content-Type": "text/plain"},
            b"{}",
            415,
            "unsupported_media_type",
        ),
        ("/catalog/SKU-7", HEADERS, b'{"price": ', 400, "malformed_json"),
        (
            "/catalog/SKU-7",
            HEADERS,
            b'{"price": -1, "currency": "EUR", "on_hand": 1}',
            422,
            "schema_violation",
        ),
        (
            "/catalog/SKU-7",
            HEADERS,
            b'{"price": 1, "currency": "euro", "on_hand": 1}',
            422,
            "schema_violation",
        ),
        ("/catalog/SKU-7", HEADERS, b'{"price": 1, "currency": "EUR"}', 422, "schema_violation"),
    ],
    ids=[
        "no token",
        "bad sku",
        "wrong content type",
        "malformed",
        "negative price",
        "bad currency",
        "missing on_hand",
    ],
)
async def test_bad_input_is_refused_and_appends_nothing(
    client: TestClient[Any, Any],
    redis: aioredis.Redis,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
) -> None:
    response = await client.put(path, data=body, headers=headers)
    assert response.status == status, await response.text()
    assert (await response.json())["error"] == code
    assert await catalog_events(redis) == []
    assert [key async for key in redis.scan_iter("orderly:catalog-item:*")] == []


async def test_inventory_without_a_database_is_a_503(client: TestClient[Any, Any]) -> None:
    response = await client.get("/inventory/SKU-7")
    assert response.status == 503
