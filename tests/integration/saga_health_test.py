"""Stuck sagas read from the orders read model (projections.saga_health), on a real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.saga_health import pending_count, stuck_sagas
from projections.tables import orders


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    await migrations.upgrade_async(postgres_server.url)
    engine = create_engine(postgres_server.url)
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE orders"))
    yield engine
    await engine.dispose()


async def add_order(
    engine: AsyncEngine,
    order_id: str,
    *,
    status: str = "PENDING",
    waiting_for: str | None = None,
    waited: timedelta | None = None,
    placed_ago: timedelta = timedelta(hours=3),
) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(orders).values(
                order_id=order_id,
                customer_id=f"customer-of-{order_id}",
                status=status,
                items=[],
                total=1000,
                currency="EUR",
                placed_at=now - placed_ago,
                updated_at=now,
                waiting_for=waiting_for,
                waiting_since=None if waited is None else now - waited,
            )
        )


async def test_stuck_sagas_are_pending_orders_waiting_longer_than_asked_longest_first(
    engine: AsyncEngine,
) -> None:
    await add_order(engine, "fresh", waiting_for="payment", waited=timedelta(seconds=5))
    await add_order(engine, "slow", waiting_for="payment", waited=timedelta(minutes=20))
    await add_order(
        engine, "slower", waiting_for="inventory reservation", waited=timedelta(hours=2)
    )
    await add_order(engine, "done", status="CONFIRMED", waited=None)
    # Projected before saga health existed: no wait recorded, so it counts from placement.
    await add_order(engine, "legacy", placed_ago=timedelta(minutes=10))

    stuck = await stuck_sagas(engine, timedelta(minutes=5))

    assert [(s.order_id, s.waiting_for) for s in stuck] == [
        ("slower", "inventory reservation"),
        ("slow", "payment"),
        ("legacy", None),
    ]
    slower = stuck[0]
    assert timedelta(milliseconds=slower.waiting_ms) >= timedelta(hours=2)
    assert slower.customer_id == "customer-of-slower" and slower.total == 1000
    assert [s.order_id for s in await stuck_sagas(engine, timedelta(hours=1))] == ["slower"]
    assert await stuck_sagas(engine, timedelta(hours=3)) == []
    assert len(await stuck_sagas(engine, timedelta(0))) == 4
    assert [s.order_id for s in await stuck_sagas(engine, timedelta(0), limit=2)] == [
        "slower",
        "slow",
    ]
    assert await pending_count(engine) == 4
