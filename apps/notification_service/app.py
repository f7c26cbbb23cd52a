"""The notification service process: the ``notifications`` consumer group over the order
streams (see notifier.py), with health endpoints; SIGTERM finishes the batch in hand."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.metrics import group_lag_refresher
from eventbus.topology import ORDERS, Topology
from notification_service.notifier import Notifier
from orderly_platform.database import create_engine
from orderly_platform.http import add_health_routes, json_errors
from orderly_platform.metrics import refresh_on_scrape
from orderly_platform.readiness import postgres_answers, redis_answers
from orderly_platform.settings import Settings

GROUP = "notifications"


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_url or not settings.postgres_url:
        raise ValueError(
            "the notification service needs ORDERLY_REDIS_URL and ORDERLY_POSTGRES_URL"
        )
    app = web.Application(middlewares=[json_errors])
    redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    engine = create_engine(settings.postgres_url, pool_size=3)
    partitions = Topology(partitions=settings.stream_partitions).partitions_of(ORDERS)
    consumer = StreamConsumer(
        redis,
        partitions,
        Notifier(redis, engine),
        ConsumerConfig(
            group=GROUP,
            consumer=f"{socket.gethostname()}-{os.getpid()}",
            lease_ms=settings.partition_lease_ms,
            linger_ms=50,  # a transaction per batch: fewer, larger ones under light traffic
        ),
    )

    async def run(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(consumer.run_supervised())
        yield
        consumer.stop()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
        await engine.dispose()

    async def consuming() -> None:
        if not consumer.healthy:
            raise RuntimeError(f"not consuming: {consumer.failure}")

    app.cleanup_ctx.append(run)
    refresh_on_scrape(app, group_lag_refresher(redis, partitions, [GROUP]))
    add_health_routes(
        app,
        {
            "redis": redis_answers(redis),
            "postgres": postgres_answers(engine),
            "consumer": consuming,
        },
        service="notification-service",
    )
    return app
