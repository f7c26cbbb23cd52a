"""The projector process: a consumer group per projection, plus health endpoints.

Each projection reads every stream partition in its own group and applies batches through
``apply_exactly_once``. A periodic pass trims the streams below what is archived and acked by
every group, which keeps Redis memory bounded. On SIGTERM aiohttp runs the cleanup below: each consumer stops
reading, finishes and acks the batch in hand, and only then does the process exit.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.metrics import dead_letters_refresher, group_lag_refresher
from eventbus.topology import Partition, Topology
from orderly_platform.database import create_engine
from orderly_platform.http import add_health_routes, json_errors
from orderly_platform.logs import get_logger
from orderly_platform.metrics import refresh_on_scrape
from orderly_platform.readiness import postgres_answers, redis_answers
from orderly_platform.settings import Settings
from projections.registry import PROJECTIONS
from projections.trimming import trim_streams
from projector.applier import ProjectionApplier

log = get_logger(__name__)

CONSUMERS = web.AppKey("consumers", list)
# Well inside the lag target (p99 under 500 ms), well above a batch's own cost.
PROJECTION_LINGER_MS = 50


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_url or not settings.postgres_url:
        raise ValueError("the projector needs ORDERLY_REDIS_URL and ORDERLY_POSTGRES_URL")
    app = web.Application(middlewares=[json_errors])
    redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    engine = create_engine(settings.postgres_url, pool_size=len(PROJECTIONS) + 2)
    partitions = Topology(partitions=settings.stream_partitions).all_partitions()
    # Unique per process; a dead projector's partitions (and pending entries) pass to
    # whoever takes their leases next.
    consumer_name = f"{socket.gethostname()}-{os.getpid()}"

    stopped = asyncio.Event()
    appliers = [ProjectionApplier(engine, p, stopped) for p in PROJECTIONS.values()]

    def consumer_for(applier: ProjectionApplier) -> StreamConsumer:
        config = ConsumerConfig(
            group=applier.projection.name,
            consumer=consumer_name,
            lease_ms=settings.partition_lease_ms,
            # Each batch is a transaction with checkpoint writes: under light traffic, a
            # little waiting makes batches of several events instead of one each.
            linger_ms=PROJECTION_LINGER_MS,
        )
        return StreamConsumer(redis, partitions, applier, config)

    consumers = [consumer_for(applier) for applier in appliers]

    async def run_consumers(app: web.Application) -> AsyncIterator[None]:
        # Supervised: a consumer whose Redis connection fails starts again after a backoff
        # instead of ending quietly while the process looks alive.
        tasks = [asyncio.create_task(consumer.run_supervised()) for consumer in consumers]
        trimmer = asyncio.create_task(_trim_periodically(redis, engine, partitions, settings))
        yield
        trimmer.cancel()
        stopped.set()
        for consumer in consumers:
            consumer.stop()
        await asyncio.gather(trimmer, *tasks, return_exceptions=True)
        await redis.aclose()
        await engine.dispose()

    async def consumers_running() -> None:
        failing = {c.config.group: c.failure for c in consumers if not c.healthy}
        failing |= {
            a.projection.name: "postgres unavailable" for a in appliers if a.waiting_for_postgres
        }
        if failing:
            raise RuntimeError(f"projections not applying: {failing}")

    app.cleanup_ctx.append(run_consumers)
    # A projection's group lag is its events not applied yet.
    refresh_on_scrape(app, group_lag_refresher(redis, partitions, list(PROJECTIONS)))
    refresh_on_scrape(app, dead_letters_refresher(redis, partitions))
    add_health_routes(
        app,
        {
            "redis": redis_answers(redis),
            "postgres": postgres_answers(engine),
            "consumers": consumers_running,
        },
        service="projector",
    )
    return app


async def _trim_periodically(
    redis: aioredis.Redis, engine: AsyncEngine, partitions: list[Partition], settings: Settings
) -> None:
    while True:
        await asyncio.sleep(settings.trim_interval_s)  # a schedule, not a wait for a condition
        try:
            removed = await trim_streams(redis, engine, partitions)
        except Exception:  # a failed pass only delays trimming; the next one retries
            log.exception("trimming failed")
        else:
            if removed:
                log.info("streams trimmed", removed=removed)
