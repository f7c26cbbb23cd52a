"""POST /orders against a real Redis: pricing from the live catalog, Idempotency-Key, bad input.

Every test counts what reached the order streams: the append is the request's only write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from contracts import OrderLine, OrderPlaced, decode_envelope
from eventbus.topology import ORDERS, Topology
from order_service.app import create_app
from order_service.idempotency import idempotency_key
from orderly_platform.embedded import RedisServer
from orderly_platform.http import ApiError
from orderly_platform.settings import Settings

TOKEN = "orders-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
MAX_BODY = 8 * 1024
TOPOLOGY = Topology(partitions=2)
ORDER = {
    "customer_id": "cust-42",
    "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "mug.blue_L", "quantity": 1}],
    "payment_token": "tok_visa",
}


@pytest_asyncio.fixture
async def client(
    redis_server: RedisServer, redis: aioredis.Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        redis_url=redis_server.url,
        api_token=TOKEN,
        max_request_bytes=MAX_BODY,
        stream_partitions=TOPOLOGY.partitions,
    )
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


@pytest_asyncio.fixture
async def catalog(client: TestClient[Any, Any]) -> None:
    await put_catalog(client, "SKU-1", price=1250)
    await put_catalog(client, "mug.blue_L", price=899)


async def put_catalog(
    client: TestClient[Any, Any], sku: str, *, price: int, currency: str = "EUR", on_hand: int = 10
) -> None:
    body = {"price": price, "currency": currency, "on_hand": on_hand}
    response = await client.put(f"/catalog/{sku}", json=body, headers=JSON)
    assert response.status == 202, await response.text()


async def place(
    client: TestClient[Any, Any], body: Any = None, *, key: str | None = None
) -> tuple[int, Any, Any]:
    headers = {**JSON, **({} if key is None else {"Idempotency-Key": key})}
    data = body if isinstance(body, bytes) else msgspec.json.encode(ORDER if body is None else body)
    response = await client.post("/orders", data=data, headers=headers)
    return response.status, await response.json(), response.headers


async def orders_written(redis: aioredis.Redis) -> list[Any]:
    envelopes = []
    for partition in TOPOLOGY.partitions_of(ORDERS):
        envelopes += [decode_envelope(f[b"event"]) for _, f in await redis.xrange(partition.stream)]
    return envelopes


async def idempotency_records(redis: aioredis.Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter("orderly:idem:*")]


async def test_an_order_is_priced_from_the_catalog_and_appended_once(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    status, body, headers = await place(client, key="order-1")
    assert status == 202
    assert body == {"order_id": body["order_id"], "status": "PENDING"}
    assert headers["Location"] == f"/orders/{body['order_id']}"
    assert "Idempotent-Replayed" not in headers
    [envelope] = await orders_written(redis)
    assert envelope.subject == body["order_id"]
    assert envelope.aggregateversion == 1  # a new aggregate: expected version 0
    assert envelope.data == OrderPlaced(
        order_id=body["order_id"],
        customer_id="cust-42",
        items=(
            OrderLine(sku="SKU-1", quantity=2, unit_price=1250, line_total=2500),
            OrderLine(sku="mug.blue_L", quantity=1, unit_price=899, line_total=899),
        ),
        total=3399,
        currency="EUR",
        payment_token="tok_visa",
    )
    # The record of the key and the order share the order's partition (and hash slot).
    [record] = await idempotency_records(redis)
    assert TOPOLOGY.partition(ORDERS, body["order_id"]).holds(record.decode())


async def test_an_order_placed_right_after_a_catalog_change_sees_it(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    three_mugs = {**ORDER, "items": [{"sku": "mug.blue_L", "quantity": 3}]}
    for price in (1099, 1, 899):
        await put_catalog(client, "mug.blue_L", price=price)
        status, body, _ = await place(client, three_mugs)
        assert status == 202
        [placed] = [e.data for e in await orders_written(redis) if e.subject == body["order_id"]]
        assert (placed.items[0].unit_price, placed.total) == (price, 3 * price)


async def test_a_retry_with_the_same_key_and_body_gets_the_first_answer_and_writes_nothing(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    first_status, first, _ = await place(client, key="retry-me")
    # The same command, spelled differently: other key order, whitespace, an unknown field.
    respelled = (
        b'{ "payment_token": "tok_visa", "note": "ignored",\n'
        b'  "items": [ {"quantity": 2, "sku": "SKU-1"}, {"sku": "mug.blue_L", "quantity": 1} ],'
        b' "customer_id": "cust-42" }'
    )
    await put_catalog(client, "SKU-1", price=1)  # a retry is answered, not priced again
    again_status, again, headers = await place(client, respelled, key="retry-me")
    assert first_status == again_status == 202
    assert again == first
    assert headers["Idempotent-Replayed"] == "true"
    [envelope] = await orders_written(redis)
    assert envelope.data.total == 3399


async def test_the_same_key_with_another_body_is_a_conflict_and_writes_nothing(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    assert (await place(client, key="k-1"))[0] == 202
    other = {**ORDER, "items": [{"sku": "SKU-1", "quantity": 3}]}
    status, body, _ = await place(client, other, key="k-1")
    assert status == 409
    assert body["error"] == "idempotency_conflict" and body["detail"]
    assert len(await orders_written(redis)) == 1
    assert len(await idempotency_records(redis)) == 1


async def test_concurrent_requests_with_one_key_place_one_order(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    # Racers either read the winner's record before appending or lose the claim in the
    # append script; rounds make both happen. Each round must end with one order.
    for round_ in range(10):
        key = f"five-at-once-{round_}"
        outcomes = await asyncio.gather(*(place(client, key=key) for _ in range(5)))
        assert [status for status, _, _ in outcomes] == [202] * 5
        assert len({body["order_id"] for _, body, _ in outcomes}) == 1
        assert sum("Idempotent-Replayed" not in headers for _, _, headers in outcomes) == 1
        placed = [e for e in await orders_written(redis) if e.subject == outcomes[0][1]["order_id"]]
        assert len(placed) == 1
    assert len(await orders_written(redis)) == 10


async def test_concurrent_requests_with_one_key_and_different_bodies_place_one_order(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    bodies = [{**ORDER, "customer_id": f"cust-{n}"} for n in range(5)]
    outcomes = await asyncio.gather(*(place(client, body, key="contested") for body in bodies))
    assert sorted(status for status, _, _ in outcomes) == [202, 409, 409, 409, 409]
    [envelope] = await orders_written(redis)
    [(_, winner, _)] = [o for o in outcomes if o[0] == 202]
    assert envelope.data.order_id == winner["order_id"]


async def test_different_keys_or_no_key_place_separate_orders(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    answers = [await place(client, key="a"), await place(client, key="b")]
    answers += [await place(client), await place(client)]
    assert len({body["order_id"] for _, body, _ in answers}) == 4
    assert len(await orders_written(redis)) == 4
    assert len(await idempotency_records(redis)) == 2


async def test_an_unknown_sku_is_refused_naming_its_field_and_leaves_the_key_free(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    order = {**ORDER, "items": [{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-NEW", "quantity": 1}]}
    status, body, _ = await place(client, order, key="fix-and-retry")
    assert status == 422
    assert body["error"] == "unknown_sku"
    assert body["detail"]["field"] == "$.items[1].sku"
    assert await orders_written(redis) == []
    assert await idempotency_records(redis) == []
    await put_catalog(client, "SKU-NEW", price=5)
    assert (await place(client, order, key="fix-and-retry"))[0] == 202


async def test_stock_without_a_catalog_entry_does_not_make_a_sku_orderable(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    event = {
        "specversion": "1.0",
        "id": "delivery-1",
        "source": "/warehouse/berlin",
        "type": "orderly.StockReceived.v1",
        "time": "2026-11-28T10:00:00Z",
        "subject": "SKU-9",
        "data": {"sku": "SKU-9", "quantity": 5, "warehouse": "berlin"},
    }
    headers = {**AUTH, "Content-Type": "application/cloudevents+json"}
    assert (await client.post("/events", json=event, headers=headers)).status == 202
    status, body, _ = await place(client, {**ORDER, "items": [{"sku": "SKU-9", "quantity": 1}]})
    assert (status, body["error"]) == (422, "unknown_sku")
    assert await orders_written(redis) == []


async def test_items_in_different_currencies_are_refused(
    client: TestClient[Any, Any], redis: aioredis.Redis, catalog: None
) -> None:
    await put_catalog(client, "SKU-USD", price=100, currency="USD")
    order = {**ORDER, "items": [*ORDER["items"], {"sku": "SKU-USD", "quantity": 1}]}
    status, body, _ = await place(client, order, key="mixed")
    assert status == 422
    assert body["error"] == "mixed_currencies"
    assert body["detail"]["field"] == "$.items[2].sku"
    assert await orders_written(redis) == []
    assert await idempotency_records(redis) == []


def _order_with(**changes: Any) -> bytes:
    return msgspec.json.encode({**ORDER, **changes})


BAD_REQUESTS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("missing token", {"Content-Type": "application/json"}, _order_with(), 401, "unauthorized"),
    (
        "wrong token",
        {**JSON, "Authorization": "Bearer nope"},
        _order_with(),
        401,
        "unauthorized",
    ),
    (
        "wrong content type",
        {**AUTH, "Content-Type": "text/plain"},
        _order_with(),
        415,
        "unsupported_media_type",
    ),
    ("malformed JSON", JSON, b'{"customer_id": ', 400, "malformed_json"),
    ("body is not an object", JSON, b"[1, 2]", 422, "schema_violation"),
    (
        "zero quantity",
        JSON,
        _order_with(items=[{"sku": "SKU-1", "quantity": 0}]),
        422,
        "schema_violation",
    ),
    ("no items", JSON, _order_with(items=[]), 422, "schema_violation"),
    (
        "missing payment token",
        JSON,
        msgspec.json.encode({k: v for k, v in ORDER.items() if k != "payment_token"}),
        422,
        "schema_violation",
    ),
    (
        "bad sku",
        JSON,
        _order_with(items=[{"sku": "no spaces", "quantity": 1}]),
        422,
        "schema_violation",
    ),
    ("too large", JSON, _order_with(padding="x" * MAX_BODY), 413, "payload_too_large"),
    ("empty key", {**JSON, "Idempotency-Key": ""}, _order_with(), 400, "bad_header"),
    ("key too long", {**JSON, "Idempotency-Key": "k" * 256}, _order_with(), 400, "bad_header"),
    ("non-ASCII key", {**JSON, "Idempotency-Key": "clé"}, _order_with(), 400, "bad_header"),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_input_gets_a_json_4xx_and_writes_nothing(
    client: TestClient[Any, Any],
    redis: aioredis.Redis,
    catalog: None,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
) -> None:
    response = await client.post("/orders", data=body, headers=headers)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = await response.json()
    assert error["error"] == code
    assert error["detail"]
    assert await orders_written(redis) == []
    assert await idempotency_records(redis) == []


async def test_a_schema_violation_names_the_field(
    client: TestClient[Any, Any], catalog: None
) -> None:
    body = _order_with(items=[{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-1", "quantity": -1}])
    _, error, _ = await place(client, body)
    assert error["detail"]["field"] == "$.items[1].quantity"


@pytest.mark.parametrize(
    "values",
    [["a\tb"], ["one", "two"], [" "]],
    ids=["tab", "two headers", "blank"],
)
def test_a_malformed_key_is_a_400(values: list[str]) -> None:
    headers = [("Idempotency-Key", value) for value in values]
    with pytest.raises(ApiError) as refused:
        idempotency_key(make_mocked_request("POST", "/orders", headers=headers))
    assert (refused.value.status, refused.value.code) == (400, "bad_header")


async def test_a_longest_key_is_accepted(client: TestClient[Any, Any], catalog: None) -> None:
    assert (await place(client, key="k" * 255))[0] == 202


async def test_an_unreachable_redis_is_a_503() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", api_token=TOKEN, stream_partitions=2)
    async with TestClient(TestServer(create_app(settings))) as down:
        status, body, _ = await place(down, key="k")
        assert (status, body["error"]) == (503, "unavailable")
