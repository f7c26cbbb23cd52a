"""POST /orders/{id}/cancel against a real Redis: one OrderCancellationRequested, or an error
and nothing written."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from contracts import OrderCancellationRequested, decode_envelope
from eventbus.topology import ORDERS, Topology
from order_service.testing import AUTH

JSON = {**AUTH, "Content-Type": "application/json"}
TOPOLOGY = Topology(partitions=2)


@pytest_asyncio.fixture
async def order_id(client: TestClient[Any, Any]) -> str:
    put = await client.put(
        "/catalog/SKU-1", json={"price": 100, "currency": "EUR", "on_hand": 5}, headers=AUTH
    )
    assert put.status == 202, await put.text()
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
    return str((await placed.json())["order_id"])


async def order_events(redis: aioredis.Redis) -> list[Any]:
    events = []
    for partition in TOPOLOGY.partitions_of(ORDERS):
        events += [decode_envelope(f[b"event"]) for _, f in await redis.xrange(partition.stream)]
    return events


async def test_a_cancel_appends_one_request_with_the_reason(
    client: TestClient[Any, Any], redis: aioredis.Redis, order_id: str
) -> None:
    response = await client.post(
        f"/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=AUTH
    )
    assert response.status == 202
    assert await response.json() == {
        "order_id": order_id,
        "cancellation": "requested",
        "reason": "changed my mind",
    }
    [_, cancel] = await order_events(redis)
    assert cancel.subject == order_id
    assert cancel.data == OrderCancellationRequested(order_id=order_id, reason="changed my mind")


async def test_a_cancel_without_a_body_uses_the_default_reason(
    client: TestClient[Any, Any], redis: aioredis.Redis, order_id: str
) -> None:
    response = await client.post(f"/orders/{order_id}/cancel", headers=AUTH)
    assert response.status == 202
    [_, cancel] = await order_events(redis)
    assert cancel.data.reason == "customer request"


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("/orders/no-such-order/cancel", None, AUTH, 404, "order_not_found"),
        ("/orders/{id}/cancel", None, {}, 401, "unauthorized"),
        ("/orders/{id}/cancel", b"{nope", JSON, 400, "malformed_json"),
        ("/orders/{id}/cancel", b'{"reason": ""}', JSON, 422, "schema_violation"),
        ("/orders/{id}/cancel", b"[1]", JSON, 422, "schema_violation"),
        ("/orders/{id}/cancel", b"reason", {**AUTH, "Content-Type": "text/plain"}, 415, None),
    ],
)
async def test_bad_cancels_get_an_error_and_write_nothing(
    client: TestClient[Any, Any],
    redis: aioredis.Redis,
    order_id: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    response = await client.post(path.format(id=order_id), data=body, headers=headers)
    assert response.status == status, await response.text()
    error = await response.json()
    assert code is None or error["error"] == code
    assert "detail" in error
    assert len(await order_events(redis)) == 1  # the OrderPlaced only
