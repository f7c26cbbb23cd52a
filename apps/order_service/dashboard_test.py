"""GET /dashboard and its server-sent events on a real Redis and Postgres: the snapshot's
figures from the read model and the streams, and orders placed through the API in the flow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

import migrations
from eventbus.topology import ORDERS, Topology
from order_service.app import create_app
from order_service.dashboard import DASHBOARD_FEED
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer, RedisServer
from orderly_platform.settings import Settings
from projections.tables import orders

TOKEN = "dashboard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOPOLOGY = Topology(partitions=2)
STUCK_AFTER = timedelta(minutes=5)


@pytest_asyncio.fixture
async def read_model(postgres_server: PostgresServer) -> AsyncIterator[None]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE orders, projection_checkpoints"))
        now = datetime.now(UTC)
        rows = [
            ("confirmed-1", "CONFIRMED", None),
            ("confirmed-2", "CONFIRMED", None),
            ("rejected-1", "REJECTED", None),
            ("waiting-long", "PENDING", timedelta(hours=1)),
            ("waiting-briefly", "PENDING", timedelta(seconds=1)),
        ]
        await connection.execute(
            sa.insert(orders),
            [
                {
                    "order_id": order_id,
                    "customer_id": f"secret-customer-{order_id}",
                    "status": status,
                    "items": [],
                    "total": 1000,
                    "currency": "EUR",
                    "placed_at": now - timedelta(hours=2),
                    "updated_at": now,
                    "waiting_for": "payment" if waited else None,
                    "waiting_since": now - waited if waited else None,
                }
                for order_id, status, waited in rows
            ],
        )
    await engine.dispose()
    yield


@pytest_asyncio.fixture
async def client(
    redis_server: RedisServer,
    redis: aioredis.Redis,
    postgres_server: PostgresServer,
    read_model: None,
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        redis_url=redis_server.url,
        postgres_url=postgres_server.url,
        api_token=TOKEN,
        stream_partitions=TOPOLOGY.partitions,
        dashboard_interval_s=0.2,
        dashboard_stuck_after_s=STUCK_AFTER.total_seconds(),
    )
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


class EventStream:
    """The server-sent events of one open ``GET /dashboard/events``, with their raw bytes."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.raw = b""

    async def next(self, kind: str) -> Any:
        """The data of the next event of this kind (events of other kinds are skipped)."""
        while True:
            event, data = await self._event()
            if event == kind:
                return json.loads(data)

    async def _event(self) -> tuple[str | None, str]:
        event, data = None, ""
        while True:
            line = await self.response.content.readline()
            assert line, "the event stream ended"
            self.raw += line
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                event = text.removeprefix("event: ")
            elif text.startswith("data: "):
                data += text.removeprefix("data: ")
            elif not text and (event or data):
                return event, data


async def open_events(client: TestClient[Any, Any]) -> EventStream:
    response = await client.get("/dashboard/events")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    return EventStream(response)


async def place_order(client: TestClient[Any, Any], sku: str) -> str:
    body = {"price": 500, "currency": "EUR", "on_hand": 10}
    response = await client.put(f"/catalog/{sku}", json=body, headers=AUTH)
    assert response.status == 202, await response.text()
    order = {
        "customer_id": "secret-customer-live",
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_visa",
    }
    response = await client.post("/orders", json=order, headers=AUTH)
    assert response.status == 202, await response.text()
    return str((await response.json())["order_id"])


async def test_the_page_is_one_self_contained_document(client: TestClient[Any, Any]) -> None:
    response = await client.get("/dashboard")

    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert 'id="status-CONFIRMED"' in page and 'id="flow"' in page
    # No script, style or font from elsewhere: the machines it runs on may have no internet.
    assert " src=" not in page and "<link" not in page
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


async def test_a_snapshot_shows_orders_by_status_stuck_sagas_lags_and_no_customer(
    client: TestClient[Any, Any], redis: aioredis.Redis
) -> None:
    stream = TOPOLOGY.partitions_of(ORDERS)[0].stream
    await redis.xadd(stream, {"event": b"{}"})
    await redis.xgroup_create(stream, "orders", id="0")  # a projection that applied nothing
    await redis.xadd(TOPOLOGY.partitions_of(ORDERS)[0].dead_letters, {"event": b"{}"})

    events = await open_events(client)
    snapshot = await events.next("snapshot")

    model = snapshot["read_model"]
    assert model["orders_by_status"] == {
        "PENDING": 2,
        "CONFIRMED": 2,
        "REJECTED": 1,
        "CANCELLED": 0,
    }
    assert [(s["order_id"], s["waiting_for"]) for s in model["stuck"]] == [
        ("waiting-long", "payment")
    ]
    assert model["stuck"][0]["waiting_ms"] >= timedelta(hours=1) / timedelta(milliseconds=1)
    assert snapshot["stuck_after_s"] == STUCK_AFTER.total_seconds()
    lag = {p["projection"]: p["unapplied"] for p in model["projections"]}
    assert lag["orders"] == 1
    [state] = [s for s in snapshot["streams"] if s["stream"] == stream]
    assert (state["length"], state["dead_letters"]) == (1, 1)
    assert [(g["name"], g["lag"], g["pending"]) for g in state["groups"]] == [("orders", 1, 0)]
    assert snapshot["dead_letters"] == 1
    assert b"secret-customer" not in events.raw


async def test_orders_placed_after_the_first_snapshot_arrive_in_the_flow(
    client: TestClient[Any, Any],
) -> None:
    events = await open_events(client)
    await events.next("snapshot")

    first = await place_order(client, "mug")
    second = await place_order(client, "cup")

    seen: list[tuple[str, str]] = []
    while len(seen) < 2:
        flow = await events.next("flow")
        seen += [(e["order_id"], e["event"]) for e in flow["events"]]
    assert seen == [(first, "OrderPlaced"), (second, "OrderPlaced")]
    # Catalog events are another category's: they are not order flow.
    assert b"CatalogItemUpdated" not in events.raw
    assert b"secret-customer" not in events.raw


async def test_two_pages_get_the_same_snapshots_and_the_feed_stops_when_both_go(
    client: TestClient[Any, Any],
) -> None:
    feed = client.app[DASHBOARD_FEED]
    one = await open_events(client)
    await one.next("snapshot")
    two = await open_events(client)
    await two.next("snapshot")
    assert feed.clients == 2

    # Computed once and sent to both: the same snapshot, to the microsecond it was taken.
    seen_by_two = [(await two.next("snapshot"))["at"] for _ in range(2)]
    # Page one, subscribed earlier, reads on until it has had page two's last snapshot (each
    # page's queue holds what it has not read yet, so neither misses one).
    seen_by_one = [(await one.next("snapshot"))["at"]]
    while seen_by_one[-1] < seen_by_two[-1] and len(seen_by_one) < 50:
        seen_by_one.append((await one.next("snapshot"))["at"])
    assert set(seen_by_two) <= set(seen_by_one)

    one.response.close()
    two.response.close()
    # The server notices a page has gone when its next write fails, an interval later.
    deadline = asyncio.get_running_loop().time() + 30
    while feed.clients and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert feed.clients == 0 and not feed.running


async def test_stopping_the_service_ends_an_open_event_stream(
    client: TestClient[Any, Any],
) -> None:
    events = await open_events(client)
    await events.next("snapshot")

    await client.app[DASHBOARD_FEED].close()

    rest = await events.response.content.read()  # returns at the end of the stream
    assert b"event: problem" not in rest
    assert events.response.content.at_eof()
