"""The projector killed with SIGKILL mid-stream, then restarted: tables equal a clean replay."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import CatalogItemUpdated, StockReceived, new_envelope
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import StreamEntry
from eventbus.topology import CATALOG, Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer, RedisServer
from orderly_platform.embedded.process import free_port
from projections.checkpointed import apply_exactly_once
from projections.inventory import INVENTORY
from projections.recorded import Recorded
from projections.tables import event_archive, inventory
from tests.databases import fresh_database

TOPOLOGY = Topology(partitions=2)
PARTITIONS = TOPOLOGY.partitions_of(CATALOG)
EVENTS = 3000


@pytest_asyncio.fixture
async def live_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    url = await fresh_database(postgres_server, "projector_live")
    yield url


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def start_projector(redis_url: str, postgres_url: str) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ORDERLY_REDIS_URL": redis_url,
        "ORDERLY_POSTGRES_URL": postgres_url,
        "ORDERLY_STREAM_PARTITIONS": "2",
        "ORDERLY_HTTP_PORT": str(free_port()),
        "ORDERLY_CLAIM_IDLE_MS": "300",  # take over the killed projector's entries quickly
        "ORDERLY_TRIM_INTERVAL_S": "3600",  # keep the streams: the replay below reads them
        "ORDERLY_LOG_LEVEL": "WARNING",
    }
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "projector", env=env)


def realistic_mix() -> list[Any]:
    rng = random.Random(7)
    events: list[Any] = []
    for n in range(EVENTS):
        sku = f"SKU-{rng.randrange(60)}"
        if rng.random() < 0.15:
            events.append(
                CatalogItemUpdated(
                    sku=sku,
                    price=rng.randrange(100, 9999),
                    currency="EUR",
                    on_hand=rng.randrange(0, 500),
                )
            )
        else:
            events.append(StockReceived(sku=sku, quantity=rng.randrange(1, 20), warehouse=f"w{n}"))
    return events


async def rows(
    engine: AsyncEngine, table: sa.Table, *order: sa.Column[Any]
) -> list[tuple[Any, ...]]:
    columns = [c for c in table.columns if c.name not in {"updated_at", "archived_at"}]
    async with engine.connect() as connection:
        result = await connection.execute(sa.select(*columns).order_by(*order))
        return [tuple(row) for row in result]


async def test_a_killed_projector_restarts_into_the_same_tables_as_a_clean_replay(
    redis_server: RedisServer, redis: aioredis.Redis, postgres_server: PostgresServer, live_url: str
) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    events = realistic_mix()
    for start in range(0, EVENTS, 500):
        await appender.append_batch(
            [
                PendingAppend(new_envelope(e, source="/faults", subject=e.sku))
                for e in events[start : start + 500]
            ]
        )
    live = create_engine(live_url)

    async def archived() -> int:
        async with live.connect() as connection:
            return int(
                await connection.scalar(sa.select(sa.func.count()).select_from(event_archive)) or 0
            )

    first = await start_projector(redis_server.url, live_url)
    try:
        await eventually(lambda: _while_alive(first, lambda: _more_than(archived, 200)))
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    assert await archived() < EVENTS, "the kill should land mid-stream"

    second = await start_projector(redis_server.url, live_url)
    try:
        await eventually(lambda: _while_alive(second, lambda: _all_applied(redis)))
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 60) == 0

    # A clean replay of the same streams into a fresh database, in one pass.
    replay = create_engine(await fresh_database(postgres_server, "projector_replay"))
    entries = [
        StreamEntry(partition, entry_id.decode(), fields[b"event"])
        for partition in PARTITIONS
        for entry_id, fields in await redis.xrange(partition.stream)
    ]
    assert len(entries) == EVENTS
    records = [Recorded.of(entry) for entry in entries]
    await apply_exactly_once(replay, INVENTORY.name, records, INVENTORY.apply)
    try:
        assert await rows(live, inventory, inventory.c.sku) == await rows(
            replay, inventory, inventory.c.sku
        )
        assert await archived() == EVENTS
    finally:
        await live.dispose()
        await replay.dispose()


async def _more_than(count: Callable[[], Awaitable[int]], threshold: int) -> bool:
    return await count() > threshold


async def _while_alive(
    process: asyncio.subprocess.Process, check: Callable[[], Awaitable[bool]]
) -> bool:
    """`check`, but a projector that died on its own fails the test at once."""
    assert process.returncode is None, f"the projector exited with {process.returncode}"
    return await check()


async def _all_applied(redis: aioredis.Redis) -> bool:
    for partition in PARTITIONS:
        for group in await redis.xinfo_groups(partition.stream):
            if group["pending"] or group.get("lag"):
                return False
        if len(await redis.xinfo_groups(partition.stream)) < 2:
            return False
    return True
