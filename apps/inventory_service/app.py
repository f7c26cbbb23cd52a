"""The inventory service process: the ``inventory-service`` consumer group over the order
streams (see ``inventory.service``), with health endpoints.

The consumer runs supervised: one whose Redis connection fails starts again with a capped
backoff, and ``/readyz`` says so meanwhile. On SIGTERM aiohttp runs the cleanup below: the
consumer stops reading, finishes and acks the batch in hand, hands its partitions' leases
back, and only then does the process exit.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from eventbus.appender import EventAppender
from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.metrics import group_lag_refresher
from eventbus.topology import ORDERS, Topology
from inventory.service import INVENTORY_GROUP, InventoryService
from inventory.stock import StockLedger
from orderly_platform.http import add_health_routes, json_errors
from orderly_platform.metrics import refresh_on_scrape
from orderly_platform.readiness import redis_answers
from orderly_platform.settings import Settings

CONSUMER = web.AppKey("consumer", StreamConsumer)


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_url:
        raise ValueError("the inventory service needs ORDERLY_REDIS_URL")
    app = web.Application(middlewares=[json_errors])
    redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    topology = Topology(partitions=settings.stream_partitions)
    consumer = StreamConsumer(
        redis,
        topology.partitions_of(ORDERS),
        InventoryService(StockLedger(redis, topology), EventAppender(redis, topology)),
        ConsumerConfig(
            group=INVENTORY_GROUP,
            # Unique per process: a dead replica's partitions (and what it left pending)
            # pass to whoever takes their leases next.
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            lease_ms=settings.partition_lease_ms,
        ),
    )
    app[CONSUMER] = consumer

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(consumer.run_supervised())
        yield
        consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()

    async def consuming() -> None:
        if not consumer.healthy:
            raise RuntimeError(f"not consuming: {consumer.failure}")

    app.cleanup_ctx.append(run)
    add_health_routes(
        app,
        {"redis": redis_answers(redis), "consumer": consuming},
        service="inventory-service",
    )
    refresh_on_scrape(
        app, group_lag_refresher(redis, topology.partitions_of(ORDERS), [INVENTORY_GROUP])
    )
    return app
