"""`orderly sagas ls|stuck|describe`: the order sagas as Temporal and the saga-health read
model see them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from cli.durations import Duration, format_ms
from cli.options import emit, stack_options
from cli.postgres import run_on_postgres
from cli.table import table
from cli.temporal import run_on_temporal
from orderly_platform.settings import Settings
from projections.saga_health import StuckSaga, pending_count, stuck_sagas
from saga.workflow import OrderSaga


@click.group("sagas")
def sagas_group() -> None:
    """Order sagas (Temporal workflows, one per order): list them, find the stuck ones, look
    into one."""


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

    rows = run_on_temporal(settings, listing)
    lines = table(
        ("ORDER", "STATUS", "STARTED", "CLOSED"),
        [[r["order_id"], r["status"], r["started"] or "-", r["closed"] or "-"] for r in rows],
    )
    emit(as_json, rows, lines)


@sagas_group.command("stuck")
@click.option(
    "--older-than",
    "older_than_ms",
    type=Duration(),
    default="5m",
    show_default=True,
    help="Only orders whose saga has waited on its current step at least this long.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@stack_options
def stuck_command(settings: Settings, as_json: bool, older_than_ms: int, limit: int) -> None:
    """Orders not yet terminal whose saga waits on one step longer than --older-than: what
    each waits on and since when, the longest wait first (from the saga-health read model,
    which trails the events by the projection lag)."""

    async def stuck(engine: AsyncEngine) -> tuple[list[StuckSaga], int]:
        found = await stuck_sagas(engine, timedelta(milliseconds=older_than_ms), limit=limit)
        return found, await pending_count(engine)

    found, in_flight = run_on_postgres(settings, stuck)
    rows = [
        {
            "order_id": saga.order_id,
            "waiting_for": saga.waiting_for,
            "waiting_since": saga.waiting_since.isoformat(),
            "waiting_ms": saga.waiting_ms,
            "customer_id": saga.customer_id,
            "placed_at": saga.placed_at.isoformat(),
            "total": saga.total,
            "currency": saga.currency,
        }
        for saga in found
    ]
    lines = table(
        ("ORDER", "WAITING FOR", "SINCE", "WAITED", "CUSTOMER"),
        [
            [
                saga.order_id,
                saga.waiting_for or "-",
                saga.waiting_since.isoformat(),
                format_ms(saga.waiting_ms),
                saga.customer_id,
            ]
            for saga in found
        ],
    )
    threshold = format_ms(older_than_ms)
    if not rows:
        lines = [f"no saga has waited {threshold} or longer ({in_flight} orders in flight)"]
    else:
        lines.append(f"{len(rows)} of {in_flight} orders in flight waited {threshold} or longer")
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

    info = run_on_temporal(settings, describe)
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
