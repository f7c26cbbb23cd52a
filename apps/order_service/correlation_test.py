"""The order service's writes carry the request's correlation id into the events they append."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from contracts import (
    CatalogItemUpdated,
    EventEnvelope,
    OrderCancellationRequested,
    OrderPlaced,
    StockReceived,
    decode_envelope,
)
from eventbus.topology import CATEGORIES, Topology
from order_service.testing import AUTH
from orderly_platform.http import CORRELATION_HEADER

TOPOLOGY = Topology(partitions=2)


async def events(redis: aioredis.Redis) -> list[EventEnvelope]:
    found = []
    for category in CATEGORIES:
        for partition in TOPOLOGY.partitions_of(category):
            found += [decode_envelope(f[b"event"]) for _, f in await redis.xrange(partition.stream)]
    return found


async def test_each_write_appends_under_the_correlation_of_its_request(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    put = await client.put(
        "/catalog/SKU-1",
        json={"price": 100, "currency": "EUR", "on_hand": 5},
        headers={**AUTH, CORRELATION_HEADER: "catalog-sync-7"},
    )
    assert put.status == 202 and put.headers[CORRELATION_HEADER] == "catalog-sync-7"
    # Without a header: the id the service made up, which the response tells the caller.
    placed = await client.post(
        "/orders",
        json={
            "customer_id": "c-1",
            "items": [{"sku": "SKU-1", "quantity": 1}],
            "payment_token": "t",
        },
        headers=AUTH,
    )
    assert placed.status == 202
    order_id = (await placed.json())["order_id"]
    cancel = await client.post(
        f"/orders/{order_id}/cancel", headers={**AUTH, CORRELATION_HEADER: "support-ticket-9"}
    )
    assert cancel.status == 202
    received = await client.post(
        "/events",
        json={
            "specversion": "1.0",
            "id": "wh-1",
            "source": "/warehouse",
            "type": "orderly.StockReceived.v1",
            "subject": "SKU-1",
            "time": "2026-01-01T00:00:00Z",
            "data": {"sku": "SKU-1", "quantity": 2, "warehouse": "wh"},
        },
        headers={**AUTH, "Content-Type": "application/cloudevents+json"},
    )
    assert received.status == 202, await received.text()

    correlation = {type(e.data): e.correlationid for e in await events(redis)}
    assert correlation == {
        CatalogItemUpdated: "catalog-sync-7",
        OrderPlaced: placed.headers[CORRELATION_HEADER],
        OrderCancellationRequested: "support-ticket-9",
        # An outside event without a correlation of its own joins its request's.
        StockReceived: received.headers[CORRELATION_HEADER],
    }


async def test_an_outside_events_own_correlation_is_kept(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    received = await client.post(
        "/events",
        json={
            "specversion": "1.0",
            "id": "wh-2",
            "source": "/warehouse",
            "type": "orderly.StockReceived.v1",
            "subject": "SKU-1",
            "time": "2026-01-01T00:00:00Z",
            "correlationid": "shipment-3",
            "data": {"sku": "SKU-1", "quantity": 2, "warehouse": "wh"},
        },
        headers={**AUTH, "Content-Type": "application/cloudevents+json"},
    )
    assert received.status == 202, await received.text()
    [event] = await events(redis)
    assert event.correlationid == "shipment-3"
