"""The embedded Temporal dev server runs a real workflow with an activity."""

import uuid

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from orderly_platform.embedded import TemporalServer
from tests.integration.sample_workflow import GreetingWorkflow, compose_greeting


async def test_a_workflow_runs_its_activity_to_completion(temporal_server: TemporalServer) -> None:
    client = await Client.connect(temporal_server.address)
    task_queue = f"test-{uuid.uuid4()}"
    workflow_id = f"greeting-{uuid.uuid4()}"
    async with Worker(
        client, task_queue=task_queue, workflows=[GreetingWorkflow], activities=[compose_greeting]
    ):
        result = await client.execute_workflow(
            GreetingWorkflow.run, "orderly", id=workflow_id, task_queue=task_queue
        )
    assert result == "Hello, orderly! (attempt 1)"

    description = await client.get_workflow_handle(workflow_id).describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    completed = [
        e for e in history.events if e.HasField("activity_task_completed_event_attributes")
    ]
    assert len(completed) == 1
