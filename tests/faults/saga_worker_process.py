"""An OrderSaga worker run as its own process, so a test can kill it mid-emit.

Its emit activity appends the saga's event, writes ``emitted:<event id>`` to Redis, then
hangs: killed there, the append is done but the task that ran it never completes.

    python -m tests.faults.saga_worker_process TEMPORAL_ADDRESS TASK_QUEUE REDIS_URL PARTITIONS
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from eventbus.appender import EventAppender
from eventbus.topology import Topology
from orderly_platform.logs import configure_logging
from saga.activities import SagaActivities
from saga.converter import DATA_CONVERTER
from saga.messages import EMIT_EVENT, EmitEvent
from saga.workflow import OrderSaga


async def main(address: str, task_queue: str, redis_url: str, partitions: int) -> None:
    configure_logging("WARNING", "json")
    redis = aioredis.Redis.from_url(redis_url)
    emitter = SagaActivities(EventAppender(redis, Topology(partitions=partitions)))

    @activity.defn(name=EMIT_EVENT)
    async def emit_then_hang(request: EmitEvent) -> None:
        await emitter.emit_event(request)
        await redis.set(f"emitted:{request.event_id}", type(request.event).__name__)
        await asyncio.Event().wait()  # never returns: the test kills the process here

    client = await Client.connect(address, data_converter=DATA_CONVERTER)
    async with Worker(
        client, task_queue=task_queue, workflows=[OrderSaga], activities=[emit_then_hang]
    ):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
