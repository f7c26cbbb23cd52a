"""A minimal workflow with one activity: proves the embedded Temporal runs real work.

Kept in its own module because Temporal re-imports workflow modules in its sandbox.
"""

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def compose_greeting(name: str) -> str:
    return f"Hello, {name}! (attempt {activity.info().attempt})"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose_greeting, name, start_to_close_timeout=timedelta(seconds=30)
        )
