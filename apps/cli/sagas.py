"""`orderly sagas ls|describe`: the order sagas as Temporal sees them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from cli.options import emit, stack_options
from cli.table import table
from orderly_platform.settings import Settings
from orderly_platform.stack_file import require_endpoint
from saga.converter import DATA_CONVERTER
from saga.workflow import OrderSaga

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5.0


@click.group("sagas")
def sagas_group() -> None:
    """Order sagas (Temporal workflows, one per order): list them, look into one."""


@sagas_group.command("ls")
@click.option(
    "--status",
    type=click.Choice(["running", "completed", "failed", "terminated", "timed_out", "cancelled"]),
    default=None,
    help="Only sagas in this state.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@stack_options
def ls_command(settings: Settings, as_json: bool, status: str | None, limit: int) -> None:
    """The most recent sagas: order, workflow state, when started and closed."""
    query = 'WorkflowType = "OrderSaga"'
    if status:
        query += f' AND ExecutionStatus = "{_STATUS_NAMES[status]}"'

    async def listing(client: Client) -> list[dict[str, Any]]:
        rows = []
        async for execution in client.list_workflows(query, limit=limit):
            rows.append(
                {
                    "order_id": execution.id,
                    "status": _status(execution.status),
                    "started": _time(execution.start_time),
                    "closed": _time(execution.close_time),
                }
            )
        return rows

    rows = _on_temporal(settings, listing)
    lines = table(
        ("ORDER", "STATUS", "STARTED", "CLOSED"),
        [[r["order_id"], r["status"], r["started"] or "-", r["closed"] or "-"] for r in rows],
    )
    emit(as_json, rows, lines)


@sagas_group.command("describe")
@click.argument("order_id")
@stack_options
def describe_command(settings: Settings, as_json: bool, order_id: str) -> None:
    """One saga: its step, what it waits for, money and stock held, activities in flight."""

    async def describe(client: Client) -> dict[str, Any]:
        handle = client.get_workflow_handle_for(OrderSaga.run, order_id)
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise click.ClickException(f"no saga for order {order_id!r}") from None
            raise
        state = await handle.query(OrderSaga.state)
        raw = description.raw_description
        return {
            "order_id": order_id,
            "workflow_status": _status(description.status),
            "started": _time(description.start_time),
            "closed": _time(description.close_time),
            "history_events": description.history_length,
            "order_status": state.status,
            "reason": state.reason,
            "step": state.step,
            "waiting_for": state.waiting_for,
            "reserved": state.reserved,
            "captured": state.captured,
            "refunded": state.refunded,
            "cancel_requested": state.cancel_requested,
            "pending_activities": [
                {
                    "activity": activity.activity_type.name,
                    "attempt": activity.attempt,
                    "last_failure": activity.last_failure.message or None,
                }
                for activity in raw.pending_activities
            ],
        }

    info = _on_temporal(settings, describe)
    lines = [
        f"{key}: {_plain(value)}" for key, value in info.items() if key != "pending_activities"
    ]
    for activity in info["pending_activities"]:
        failure = f", last failure: {activity['last_failure']}" if activity["last_failure"] else ""
        lines.append(
            f"activity in flight: {activity['activity']} (attempt {activity['attempt']}{failure})"
        )
    emit(as_json, info, lines)


_STATUS_NAMES = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "terminated": "Terminated",
    "timed_out": "TimedOut",
    "cancelled": "Canceled",
}


def _status(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "unknown"


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _plain(value: object) -> str:
    return "-" if value is None else str(value)


def _on_temporal(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    address = require_endpoint(settings, "temporal")

    async def run() -> T:
        try:
            client = await asyncio.wait_for(
                Client.connect(
                    address, namespace=settings.temporal_namespace, data_converter=DATA_CONVERTER
                ),
                CONNECT_TIMEOUT_S,
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise click.ClickException(f"cannot reach temporal at {address}: {exc}") from None
        return await work(client)

    return asyncio.run(run())
