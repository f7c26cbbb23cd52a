"""Activities log the workflow (and so the order) they work for, and their correlation;
``workflow.logger`` lines carry the workflow id too. A real worker on the embedded Temporal."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from orderly_platform.embedded import TemporalServer
from orderly_platform.logs import get_logger
from orderly_platform.temporal_logs import ActivityLogContext
from orderly_platform.testing import json_log_lines, log_output

__all__ = ["log_output"]  # the fixture

log = get_logger("test")


@dataclass(frozen=True)
class Request:
    correlation_id: str


@activity.defn
async def do_work(request: Request) -> None:
    log.info("activity working")


@workflow.defn(sandboxed=False)
class WorkingWorkflow:
    @workflow.run
    async def run(self, request: Request) -> None:
        workflow.logger.info("workflow deciding")
        await workflow.execute_activity(
            do_work, request, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_activity_and_workflow_lines_name_their_workflow_and_order(
    temporal_server: TemporalServer, log_output: io.StringIO
) -> None:
    client = await Client.connect(temporal_server.address)
    task_queue, order_id = f"test-{uuid.uuid4()}", f"o-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[WorkingWorkflow],
        activities=[do_work],
        interceptors=[ActivityLogContext()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await client.execute_workflow(
            WorkingWorkflow.run, Request("c-5"), id=order_id, task_queue=task_queue
        )
    [working] = json_log_lines(log_output, "activity working")
    assert (working["workflow_id"], working["order_id"], working["correlation_id"]) == (
        order_id,
        order_id,
        "c-5",
    )
    assert working["activity"] == "do_work"
    [deciding] = [
        line for line in json_log_lines(log_output) if line["event"].startswith("workflow deciding")
    ]
    assert deciding["workflow_id"] == order_id
