"""The saga worker process: OrderSaga's Temporal worker and the bridge consumer group.

The worker runs the workflows and their emit activity on the orders task queue; the bridge
reads the order streams and starts and signals the sagas. On SIGTERM the bridge finishes and
acks its batch in hand and the worker finishes its tasks in hand, then the process exits.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from temporalio.client import Client
from temporalio.worker import Worker

from eventbus.appender import EventAppender
from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.metrics import group_lag_refresher
from eventbus.topology import ORDERS, Topology
from orderly_platform.http import add_health_routes, json_errors
from orderly_platform.metrics import refresh_on_scrape
from orderly_platform.readiness import redis_answers, temporal_answers
from orderly_platform.settings import Settings
from orderly_platform.temporal_logs import ActivityLogContext
from orderly_platform.temporal_metrics import temporal_runtime
from orderly_platform.tracing import temporal_interceptors
from saga.activities import SagaActivities
from saga.bridge import BRIDGE_GROUP, SagaBridge
from saga.converter import DATA_CONVERTER
from saga.messages import ORDERS_TASK_QUEUE, SagaDeadlines
from saga.workflow import OrderSaga


def deadlines_of(settings: Settings) -> SagaDeadlines:
    return SagaDeadlines(
        inventory=settings.saga_inventory_deadline_s,
        payment=settings.saga_payment_deadline_s,
        payment_attempt=settings.saga_payment_attempt_s,
    )


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_url or not settings.temporal_address:
        raise ValueError("the saga worker needs ORDERLY_REDIS_URL and ORDERLY_TEMPORAL_ADDRESS")
    app = web.Application(middlewares=[json_errors])
    redis = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    topology = Topology(partitions=settings.stream_partitions)
    # What run() connects and starts, for the readiness checks.
    clients: dict[str, Client] = {}
    consumers: dict[str, StreamConsumer] = {}

    async def run(app: web.Application) -> AsyncIterator[None]:
        client = await Client.connect(
            settings.temporal_address,  # type: ignore[arg-type]
            namespace=settings.temporal_namespace,
            data_converter=DATA_CONVERTER,
            runtime=temporal_runtime(),  # its metrics on this service's /metrics
            interceptors=temporal_interceptors(),
        )
        emitter = SagaActivities(EventAppender(redis, topology))
        worker = Worker(
            client,
            task_queue=ORDERS_TASK_QUEUE,
            workflows=[OrderSaga],
            activities=[emitter.emit_event],
            interceptors=[ActivityLogContext()],
        )
        bridge = StreamConsumer(
            redis,
            topology.partitions_of(ORDERS),
            SagaBridge(client, deadlines_of(settings)),
            ConsumerConfig(
                group=BRIDGE_GROUP,
                consumer=f"{socket.gethostname()}-{os.getpid()}",
                lease_ms=settings.partition_lease_ms,
            ),
        )
        clients["temporal"], consumers["bridge"] = client, bridge
        worker_task = asyncio.create_task(worker.run())
        bridge_task = asyncio.create_task(bridge.run_supervised())
        yield
        bridge.stop()
        await asyncio.gather(bridge_task, return_exceptions=True)
        await worker.shutdown()
        await asyncio.gather(worker_task, return_exceptions=True)
        await redis.aclose()

    async def bridge_running() -> None:
        bridge = consumers.get("bridge")
        if bridge is None or not bridge.healthy:
            failure = "not started" if bridge is None else bridge.failure
            raise RuntimeError(f"the bridge is not consuming: {failure}")

    app.cleanup_ctx.append(run)
    refresh_on_scrape(
        app, group_lag_refresher(redis, topology.partitions_of(ORDERS), [BRIDGE_GROUP])
    )
    add_health_routes(
        app,
        {
            "redis": redis_answers(redis),
            "temporal": temporal_answers(lambda: clients.get("temporal")),
            "bridge": bridge_running,
        },
        service="saga-worker",
    )
    return app
