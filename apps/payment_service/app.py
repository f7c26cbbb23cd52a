"""The payment service process: a Temporal activity worker on the payments task queue.

It captures and refunds through the payment provider (``ORDERLY_PAYMENT_PROVIDER_URL``),
keeps its ledger in Postgres and appends the payment events to the order streams (see
packages/payments). On SIGTERM the worker finishes the activities in hand, then exits; an
activity cut off by a kill is retried by Temporal, and the ledger and the provider's
idempotency keys make the retry charge nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from temporalio.client import Client
from temporalio.worker import Worker

from contracts.payments import PAYMENTS_TASK_QUEUE
from eventbus.appender import EventAppender
from eventbus.topology import Topology
from orderly_platform.database import create_engine
from orderly_platform.http import add_health_routes, json_errors
from orderly_platform.readiness import postgres_answers, redis_answers, temporal_answers
from orderly_platform.settings import Settings
from orderly_platform.temporal_logs import ActivityLogContext
from orderly_platform.temporal_metrics import temporal_runtime
from orderly_platform.tracing import temporal_interceptors
from payments.activities import PaymentActivities
from payments.provider import PaymentProvider
from saga.converter import DATA_CONVERTER


def _endpoints(settings: Settings) -> tuple[str, str, str, str]:
    """Redis, Postgres, Temporal and the provider, or a ValueError naming what is missing."""
    named = {
        "ORDERLY_REDIS_URL": settings.redis_url,
        "ORDERLY_POSTGRES_URL": settings.postgres_url,
        "ORDERLY_TEMPORAL_ADDRESS": settings.temporal_address,
        "ORDERLY_PAYMENT_PROVIDER_URL": settings.payment_provider_url,
    }
    missing = [name for name, value in named.items() if not value]
    if missing:
        raise ValueError(f"the payment service needs {', '.join(missing)}")
    redis_url, postgres_url, temporal, provider = (str(value) for value in named.values())
    return redis_url, postgres_url, temporal, provider


def create_app(settings: Settings) -> web.Application:
    redis_url, postgres_url, temporal_address, provider_url = _endpoints(settings)
    app = web.Application(middlewares=[json_errors])
    redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=5)
    engine = create_engine(postgres_url, pool_size=10)
    state: dict[str, Client] = {}

    async def run(app: web.Application) -> AsyncIterator[None]:
        client = await Client.connect(
            temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=DATA_CONVERTER,
            runtime=temporal_runtime(),  # its metrics on this service's /metrics
            interceptors=temporal_interceptors(),
        )
        state["client"] = client
        async with aiohttp.ClientSession() as session:
            activities = PaymentActivities(
                PaymentProvider(provider_url, session),
                engine,
                EventAppender(redis, Topology(partitions=settings.stream_partitions)),
            )
            worker = Worker(
                client,
                task_queue=PAYMENTS_TASK_QUEUE,
                activities=[activities.capture_payment, activities.refund_payment],
                max_concurrent_activities=100,
                interceptors=[ActivityLogContext()],
            )
            worker_task = asyncio.create_task(worker.run())
            yield
            await worker.shutdown()
            await asyncio.gather(worker_task, return_exceptions=True)
        await redis.aclose()
        await engine.dispose()

    app.cleanup_ctx.append(run)
    add_health_routes(
        app,
        {
            "redis": redis_answers(redis),
            "postgres": postgres_answers(engine),
            "temporal": temporal_answers(lambda: state.get("client")),
        },
        service="payment-service",
    )
    return app
