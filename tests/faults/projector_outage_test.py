"""Outages the projector rides out: Postgres restarting, Redis dropping its connections.

Nothing may be dead-lettered and nothing skipped: events are fine, only the servers were not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import new_envelope
from contracts.testing import CONFIRMED, order_history
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.topology import Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from projections.orders import ORDERS_PROJECTION
from projections.tables import orders
from projector.applier import ProjectionApplier
from tests.databases import fresh_database

TOPOLOGY = Topology(partitions=2)
PARTITIONS = TOPOLOGY.all_partitions()
DATABASE = "projector_outage"


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    # The production default (pool_pre_ping) is what lets the pool outlive the restart.
    engine = create_engine(await fresh_database(postgres_server, DATABASE))
    yield engine
    await engine.dispose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)  # polling another process's state: nothing to await


async def statuses(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(orders.c.order_id, orders.c.status))
        return {row.order_id: row.status for row in rows}


async def append_orders(redis: aioredis.Redis, first: int, count: int, *, steps: int) -> None:
    """The first ``steps`` events of each order's confirmed history."""
    batch = [
        PendingAppend(new_envelope(event, source="/outage", subject=f"o-{n}"))
        for n in range(first, first + count)
        for event in order_history(f"o-{n}", CONFIRMED)[:steps]
    ]
    await EventAppender(redis, TOPOLOGY).append_batch(batch)


def projector(
    redis: aioredis.Redis, engine: AsyncEngine, stopped: asyncio.Event
) -> tuple[StreamConsumer, ProjectionApplier]:
    applier = ProjectionApplier(engine, ORDERS_PROJECTION, stopped)
    config = ConsumerConfig(group="orders", consumer="c", block_ms=50, lease_ms=200)
    return StreamConsumer(redis, PARTITIONS, applier, config), applier


async def test_a_postgres_restart_is_waited_out_in_order_with_nothing_dead_lettered(
    redis: aioredis.Redis, engine: AsyncEngine, postgres_server: PostgresServer
) -> None:
    stopped = asyncio.Event()
    consumer, applier = projector(redis, engine, stopped)
    running = asyncio.create_task(consumer.run_supervised())
    try:
        await append_orders(redis, 0, 20, steps=1)
        await eventually(lambda: _count(engine, 20))

        await postgres_server.stop()
        try:
            await append_orders(redis, 20, 20, steps=1)  # new orders
            await append_orders(redis, 0, 20, steps=7)  # the first 20 run to CONFIRMED
            await eventually(lambda: _flag(applier))
            # Still waiting on the same batch past the lease time (200 ms): the
            # entries are not counted as failed deliveries.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_never_dead_lettered(consumer, redis), 1.0)
        finally:
            await postgres_server.start()
        await eventually(lambda: _all_applied(engine))
        assert not applier.waiting_for_postgres
        assert consumer.stats.dead_lettered == 0
        for partition in PARTITIONS:
            assert await redis.xlen(partition.dead_letters) == 0
    finally:
        stopped.set()
        consumer.stop()
        await running


async def test_a_consumer_whose_redis_connection_drops_starts_again(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    stopped = asyncio.Event()
    consumer, _ = projector(redis, engine, stopped)
    running = asyncio.create_task(consumer.run_supervised())
    try:
        await append_orders(redis, 0, 5, steps=1)
        await eventually(lambda: _count(engine, 5))
        # Every client but this one, the consumer's blocked XREADGROUP among them.
        assert await redis.execute_command("CLIENT KILL TYPE normal SKIPME yes") >= 1
        await append_orders(redis, 5, 5, steps=1)
        await eventually(lambda: _count(engine, 10))
        assert not running.done() and consumer.healthy
    finally:
        stopped.set()
        consumer.stop()
        await running


async def _count(engine: AsyncEngine, expected: int) -> bool:
    return len(await statuses(engine)) == expected


async def _flag(applier: ProjectionApplier) -> bool:
    return applier.waiting_for_postgres


async def _never_dead_lettered(consumer: StreamConsumer, redis: aioredis.Redis) -> None:
    """Runs until cancelled by the caller's timeout; fails as soon as anything is dead."""
    while True:
        assert consumer.stats.dead_lettered == 0
        assert not [p for p in PARTITIONS if await redis.xlen(p.dead_letters)]
        await asyncio.sleep(0.05)


async def _all_applied(engine: AsyncEngine) -> bool:
    try:
        seen = await statuses(engine)
    except Exception:  # still refused: not yet
        return False
    expected = {f"o-{n}": "CONFIRMED" if n < 20 else "PENDING" for n in range(40)}
    return seen == expected
