"""The inventory service process against a real Redis: health, answers, a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from contracts import (
    CatalogItemUpdated,
    EventEnvelope,
    InventoryReservationRequested,
    InventoryReserved,
    OrderItem,
    decode_envelope,
    new_envelope,
)
from eventbus.appender import EventAppender, PendingAppend
from eventbus.topology import ORDERS, Topology
from inventory.catalog_copy import catalog_side_writes
from inventory.service import INVENTORY_GROUP
from inventory.stock import INVENTORY_SOURCE
from inventory_service.app import create_app
from orderly_platform.embedded import RedisServer
from orderly_platform.embedded.process import free_port
from orderly_platform.settings import Settings

TOPOLOGY = Topology(partitions=2)
ITEMS = (OrderItem(sku="SKU-1", quantity=2),)


async def ask_for_a_reservation(redis: aioredis.Redis, order_id: str) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    catalogued = new_envelope(
        CatalogItemUpdated(sku="SKU-1", price=100, currency="EUR", on_hand=10),
        source="/tests",
        subject="SKU-1",
    )
    await appender.append_batch(
        [PendingAppend(catalogued, side_writes=catalog_side_writes(catalogued, TOPOLOGY))]
    )
    request = InventoryReservationRequested(order_id=order_id, items=ITEMS)
    await appender.append(new_envelope(request, source="/orderly/saga", subject=order_id))


async def answers(redis: aioredis.Redis, order_id: str) -> list[EventEnvelope]:
    stream = TOPOLOGY.partition(ORDERS, order_id).stream
    envelopes = [decode_envelope(fields[b"event"]) for _, fields in await redis.xrange(stream)]
    return [e for e in envelopes if e.subject == order_id and e.source == INVENTORY_SOURCE]


async def answered(redis: aioredis.Redis, order_id: str) -> list[EventEnvelope]:
    async with asyncio.timeout(10):
        while not (found := await answers(redis, order_id)):
            await asyncio.sleep(0.02)
    return found


async def test_the_service_is_ready_and_answers_reservations(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    settings = Settings(redis_url=redis_server.url, stream_partitions=2)
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(settings))) as client:
        assert (await client.get("/healthz")).status == 200
        await ask_for_a_reservation(redis, "o-1")
        [answer] = await answered(redis, "o-1")
        assert answer.data == InventoryReserved(order_id="o-1", items=ITEMS)
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
        assert (await ready.json())["checks"] == {"redis": "ok", "consumer": "ok"}


async def test_sigterm_stops_the_service_after_handing_its_partitions_back(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "ORDERLY_REDIS_URL": redis_server.url,
        "ORDERLY_STREAM_PARTITIONS": "2",
        "ORDERLY_HTTP_PORT": str(port),
        "ORDERLY_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inventory_service", env=env
    )
    try:
        await ask_for_a_reservation(redis, "o-2")
        async with asyncio.timeout(30), aiohttp.ClientSession() as session:
            while True:
                assert process.returncode is None, "the service exited on its own"
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        assert len(await answered(redis, "o-2")) == 1
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 30)
    assert returncode == 0
    leases = [p.lease_key(INVENTORY_GROUP) for p in TOPOLOGY.partitions_of(ORDERS)]
    assert await redis.exists(*leases) == 0
