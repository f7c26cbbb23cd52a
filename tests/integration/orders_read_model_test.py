"""The orders read model and its endpoints, from real order events in Redis and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from contracts import (
    InventoryReleased,
    InventoryReservationRequested,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    OrderItem,
    OrderLine,
    OrderPlaced,
    OrderRejected,
    PaymentCaptured,
    new_envelope,
)
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.topology import ORDERS, Topology
from order_service.app import create_app
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer, RedisServer
from orderly_platform.settings import Settings
from projections.checkpointed import apply_exactly_once
from projections.orders import ORDERS_PROJECTION
from projections.recorded import Recorded
from projections.tables import orders

TOPOLOGY = Topology(partitions=2)
T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE orders, projection_checkpoints"))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def client(
    redis_server: RedisServer, postgres_server: PostgresServer, engine: AsyncEngine
) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(
        redis_url=redis_server.url,
        postgres_url=postgres_server.url,
        api_token="t",
        stream_partitions=2,
    )
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


def placed(order_id: str, customer: str) -> OrderPlaced:
    line = OrderLine(sku="SKU-1", quantity=2, unit_price=500, line_total=1000)
    return OrderPlaced(
        order_id=order_id,
        customer_id=customer,
        items=(line,),
        total=1000,
        currency="EUR",
        payment_token="tok_ok",
    )


async def project(
    redis: aioredis.Redis, engine: AsyncEngine, events: list[tuple[Any, int]]
) -> list[StreamEntry]:
    envelopes = [
        new_envelope(e, source="/tests", subject=e.order_id, time=T0 + timedelta(minutes=m))
        for e, m in events
    ]
    await EventAppender(redis, TOPOLOGY).append_batch([PendingAppend(e) for e in envelopes])
    entries: list[StreamEntry] = []

    async def collect(batch: Sequence[StreamEntry]) -> None:
        entries.extend(batch)

    runner = StreamConsumer(
        redis,
        TOPOLOGY.partitions_of(ORDERS),
        collect,
        ConsumerConfig(group=ORDERS_PROJECTION.name, consumer="t", block_ms=10),
    )
    await runner.ensure_groups()
    while await runner.run_once():
        pass
    records = [Recorded.of(entry) for entry in entries]
    await apply_exactly_once(engine, ORDERS_PROJECTION.name, records, ORDERS_PROJECTION.apply)
    return entries


async def test_status_reason_and_timeline_follow_the_events(
    client: TestClient[Any, Any], redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    await project(
        redis,
        engine,
        [
            (placed("o-1", "c-1"), 0),
            (
                PaymentCaptured(
                    order_id="o-1",
                    amount=1000,
                    currency="EUR",
                    idempotency_key="k",
                    charge_id="ch-1",
                ),
                1,
            ),
            (OrderConfirmed(order_id="o-1"), 2),
            (OrderCancelled(order_id="o-1", reason="too late"), 3),  # terminal stays terminal
            (placed("o-2", "c-1"), 5),
            (OrderRejected(order_id="o-2", reason="out of stock"), 6),
        ],
    )
    one = await (await client.get("/orders/o-1")).json()
    assert (one["status"], one["reason"], one["total"], one["currency"]) == (
        "CONFIRMED",
        None,
        1000,
        "EUR",
    )
    assert [step["type"] for step in one["timeline"]] == [
        "OrderPlaced",
        "PaymentCaptured",
        "OrderConfirmed",
        "OrderCancelled",
    ]
    assert one["items"] == [{"sku": "SKU-1", "quantity": 2, "unit_price": 500, "line_total": 1000}]
    two = await (await client.get("/orders/o-2")).json()
    assert (two["status"], two["reason"]) == ("REJECTED", "out of stock")
    missing = await client.get("/orders/nope")
    assert missing.status == 404 and (await missing.json())["error"] == "not_found"


async def test_a_customers_orders_page_newest_first_with_a_stable_cursor(
    client: TestClient[Any, Any], redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    await project(
        redis,
        engine,
        [(placed(f"o-{n:02d}", "c-9"), n) for n in range(7)]
        + [(placed("o-other", "c-8"), 3), (OrderConfirmed(order_id="o-03"), 9)],
    )
    seen: list[str] = []
    cursor = None
    while True:
        url = "/orders?customer_id=c-9&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url)).json()
        seen += [o["order_id"] for o in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"o-{n:02d}" for n in reversed(range(7))]
    confirmed = await (await client.get("/orders?customer_id=c-9&status=CONFIRMED")).json()
    assert [o["order_id"] for o in confirmed["orders"]] == ["o-03"]


async def waits(engine: AsyncEngine) -> dict[str, tuple[str | None, datetime | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(orders.c.order_id, orders.c.waiting_for, orders.c.waiting_since)
        )
        return {row.order_id: (row.waiting_for, row.waiting_since) for row in rows}


async def test_saga_health_names_the_next_step_until_the_order_ends(
    client: TestClient[Any, Any], redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    items = (OrderItem(sku="SKU-1", quantity=2),)
    await project(
        redis,
        engine,
        [
            (placed("o-1", "c-1"), 0),
            (placed("o-2", "c-1"), 1),
            (InventoryReservationRequested(order_id="o-2", items=items), 2),
            (placed("o-3", "c-1"), 3),
            (InventoryReservationRequested(order_id="o-3", items=items), 4),
            (InventoryReserved(order_id="o-3", items=items), 5),
            (OrderConfirmed(order_id="o-3"), 6),
            (InventoryReleased(order_id="o-3", items=items), 7),  # late: o-3 stays settled
        ],
    )
    assert await waits(engine) == {
        "o-1": ("saga start", T0),
        "o-2": ("inventory reservation", T0 + timedelta(minutes=2)),
        "o-3": (None, None),
    }
    # The next batch moves a wait on from where the previous batch left it.
    await project(redis, engine, [(InventoryReserved(order_id="o-2", items=items), 8)])
    assert (await waits(engine))["o-2"] == ("payment", T0 + timedelta(minutes=8))
    waiting = await (await client.get("/orders/o-2")).json()
    assert (waiting["waiting_for"], waiting["waiting_since"]) == (
        "payment",
        (T0 + timedelta(minutes=8)).isoformat(),
    )
    settled = await (await client.get("/orders/o-3")).json()
    assert (settled["status"], settled["waiting_for"], settled["waiting_since"]) == (
        "CONFIRMED",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("limit=0", 422, "schema_violation"),
        ("limit=abc", 422, "schema_violation"),
        ("limit=101", 422, "schema_violation"),
        ("status=LOST", 422, "schema_violation"),
        ("cursor=%%%", 400, "bad_cursor"),
        ("cursor=bm90LWpzb24", 400, "bad_cursor"),
    ],
)
async def test_bad_list_queries_are_clear_errors(
    client: TestClient[Any, Any], query: str, status: int, code: str
) -> None:
    response = await client.get(f"/orders?{query}")
    assert response.status == status
    assert (await response.json())["error"] == code
