"""The bare workflow of ``bench/saga.py``: OrderSaga's confirmed path without its work.

A module of its own, importing only temporalio: Temporal's sandbox re-runs a workflow
module's imports for each workflow, and the benchmark's own imports (aiohttp, asyncpg...)
would make the ceiling a measure of importing them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop(step: str) -> None:
    """Stands in for an activity of the saga; does nothing."""


@workflow.defn(name="BareOrder")
class BareOrder:
    """Four activities (three emits and the capture) and two signals (the inventory answers)."""

    def __init__(self) -> None:
        self.answers = 0

    @workflow.signal
    def answer(self) -> None:
        self.answers += 1

    @workflow.run
    async def run(self) -> None:
        timeout = timedelta(seconds=30)
        await workflow.execute_activity(noop, "reserve", start_to_close_timeout=timeout)
        await workflow.wait_condition(lambda: self.answers >= 1)
        await workflow.execute_activity(noop, "capture", start_to_close_timeout=timeout)
        await workflow.execute_activity(noop, "commit", start_to_close_timeout=timeout)
        await workflow.wait_condition(lambda: self.answers >= 2)
        await workflow.execute_activity(noop, "confirm", start_to_close_timeout=timeout)
