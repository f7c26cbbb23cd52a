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

import aiohttp
import pytest
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
    """A projector process, returned once it answers ready (its signal handlers are set)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ORDERLY_REDIS_URL": redis_url,
        "ORDERLY_POSTGRES_URL": postgres_url,
        "ORDERLY_STREAM_PARTITIONS": "2",
        "ORDERLY_HTTP_PORT": str(port),
        "ORDERLY_PARTITION_LEASE_MS": "300",  # take the killed projector's partitions over soon
        "ORDERLY_TRIM_INTERVAL_S": "3600",  # keep the streams: the replay below reads them
        "ORDERLY_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "projector", env=env)

    async def ready() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/readyz") as response,
            ):
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await eventually(lambda: _while_alive(process, ready))
    return process


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


@pytest.mark.parametrize("replicas", [1, 2])
async def test_a_killed_projector_restarts_into_the_same_tables_as_a_clean_replay(
    redis_server: RedisServer,
    redis: aioredis.Redis,
    postgres_server: PostgresServer,
    live_url: str,
    replicas: int,
) -> None:
    """With two replicas, they share the partitions while events keep arriving, and the
    survivor takes the killed one's over: out-of-order applying would show in ``on_hand``,
    which catalog updates set and stock receipts add to."""
    appender = EventAppender(redis, TOPOLOGY)
    envelopes = [new_envelope(e, source="/faults", subject=e.sku) for e in realistic_mix()]
    live = create_engine(live_url)

    async def archived() -> int:
        async with live.connect() as connection:
            return int(
                await connection.scalar(sa.select(sa.func.count()).select_from(event_archive)) or 0
            )

    async def append(start: int, stop: int) -> None:
        for batch in range(start, stop, 100):
            await appender.append_batch(
                [PendingAppend(e) for e in envelopes[batch : min(batch + 100, stop)]]
            )

    await append(0, EVENTS // 2)
    projectors = [await start_projector(redis_server.url, live_url) for _ in range(replicas)]
    victim, survivors = projectors[0], projectors[1:]
    try:
        await append(EVENTS // 2, EVENTS)  # while they run
        await eventually(lambda: _while_alive(victim, lambda: _more_than(archived, 200)))
    finally:
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
    if replicas == 1:  # with two, the other one may well have finished meanwhile
        assert await archived() < EVENTS, "the kill should land mid-stream"

    survivors.append(await start_projector(redis_server.url, live_url))
    try:
        for survivor in survivors:
            await eventually(
                lambda alive=survivor: _while_alive(alive, lambda: _all_applied(redis))  # type: ignore[misc]
            )
    finally:
        for survivor in survivors:
            survivor.send_signal(signal.SIGTERM)
        for survivor in survivors:
            assert await asyncio.wait_for(survivor.wait(), 60) == 0

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
