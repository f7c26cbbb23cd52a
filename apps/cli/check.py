"""`orderly check`: the invariants of ARCHITECTURE.md, against the running stack.

- terminal: every accepted order reaches CONFIRMED, REJECTED or CANCELLED. Orders whose
  saga still runs are in flight, not broken; a PENDING order with no running saga is.
- payments: at the provider, at most one capture per order, and a captured order that is not
  CONFIRMED has exactly one refund of the captured amount.
- stock: no SKU has negative on_hand, reserved or available stock; what the SKU's entry says
  is reserved is what its orders' records hold; and only live (PENDING) orders hold stock.
- read models: each equals a fresh replay of the events (``projections verify``).

It first waits up to ``--settle`` seconds for orders in flight to end, so that it can run
right after a load. Exit status 1 when an invariant is broken.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from cli.bus import topology
from cli.errors import one_line
from cli.options import emit, stack_options
from cli.postgres import CONNECT_TIMEOUT_S
from cli.table import table
from cli.temporal import connect_temporal
from eventbus.scripts import as_text
from eventbus.topology import CATALOG
from orderly_platform.database import create_engine
from orderly_platform.settings import Settings
from orderly_platform.stack_file import redacted, require_endpoint
from projections.orders import TERMINAL
from projections.rebuild import verify
from projections.registry import PROJECTIONS

EXAMPLES = 5


@dataclass
class Finding:
    invariant: str
    broken: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.broken


@click.command("check")
@click.option(
    "--settle",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for orders in flight to end before judging.",
)
@stack_options
def check_command(settings: Settings, as_json: bool, settle: float) -> None:
    """Verify the platform's invariants; exit 1 when one is broken."""
    endpoints = {
        name: require_endpoint(settings, name)
        for name in ("redis", "postgres", "temporal", "payment-provider")
    }
    try:
        findings = asyncio.run(_check(settings, endpoints, settle))
    except (
        OSError,
        asyncpg.PostgresError,
        aiohttp.ClientError,
        RPCError,
        RedisError,
        SQLAlchemyError,
    ) as exc:
        raise click.ClickException(f"cannot check: {type(exc).__name__}: {one_line(exc)}") from None
    rows = [
        [f.invariant, "ok" if f.ok else "BROKEN", "; ".join(f.broken[:EXAMPLES]) or f.note]
        for f in findings
    ]
    data = [
        {"invariant": f.invariant, "ok": f.ok, "broken": f.broken, "note": f.note} for f in findings
    ]
    emit(as_json, data, table(("INVARIANT", "STATUS", "DETAIL"), rows))
    if not all(f.ok for f in findings):
        raise SystemExit(1)


async def _check(settings: Settings, endpoints: dict[str, str], settle: float) -> list[Finding]:
    temporal = await connect_temporal(settings)
    try:
        postgres = await asyncpg.connect(endpoints["postgres"], timeout=CONNECT_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(
            f"cannot reach postgres at {redacted(endpoints['postgres'])}: {exc}"
        ) from None
    redis = aioredis.Redis.from_url(endpoints["redis"], socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        await _settle(postgres, settle)
        statuses = {
            row["order_id"]: row["status"]
            for row in await postgres.fetch("SELECT order_id, status FROM orders")
        }
        return [
            await _terminal(statuses, temporal),
            await _payments(statuses, endpoints["payment-provider"]),
            await _stock(redis, settings, statuses),
            await _read_models(redis, endpoints["postgres"], settings),
        ]
    finally:
        await postgres.close()
        await redis.aclose()


async def _settle(postgres: asyncpg.Connection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not await postgres.fetchval("SELECT count(*) FROM orders WHERE status = 'PENDING'"):
            return
        await asyncio.sleep(0.5)


async def _terminal(statuses: dict[str, str], temporal: Client) -> Finding:
    finding = Finding("every order ends CONFIRMED, REJECTED or CANCELLED")
    pending = [order_id for order_id, status in statuses.items() if status not in TERMINAL]
    in_flight = 0
    for order_id in pending:
        try:
            description = await temporal.get_workflow_handle(order_id).describe()
        except RPCError:
            description = None
        if description is not None and description.status == WorkflowExecutionStatus.RUNNING:
            in_flight += 1
        else:
            state = "no saga" if description is None else f"saga {_name(description.status)}"
            finding.broken.append(f"{order_id} is PENDING with {state}")
    counts: dict[str, int] = defaultdict(int)
    for status in statuses.values():
        counts[status] += 1
    finding.note = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no orders"
    if in_flight:
        finding.note += f" ({in_flight} still in flight)"
    return finding


async def _payments(statuses: dict[str, str], provider: str) -> Finding:
    finding = Finding("one capture per order; a captured order not confirmed is refunded once")
    slots = asyncio.Semaphore(16)
    captured = 0

    async def audit(session: aiohttp.ClientSession, order_id: str, status: str) -> None:
        nonlocal captured
        async with slots, session.get(f"{provider}/charges", params={"order_id": order_id}) as r:
            r.raise_for_status()
            charges = (await r.json())["charges"]
        captures = [c for c in charges if c["kind"] == "capture"]
        refunds = [c for c in charges if c["kind"] == "refund"]
        captured += bool(captures)
        if len(captures) > 1:
            finding.broken.append(f"{order_id} was captured {len(captures)} times")
        refunded_once = (
            len(captures) == len(refunds) == 1 and refunds[0]["amount"] == captures[0]["amount"]
        )
        if captures and status in ("REJECTED", "CANCELLED") and not refunded_once:
            finding.broken.append(f"{order_id} is {status} with {len(refunds)} refunds")
        if status == "CONFIRMED" and refunds:
            finding.broken.append(f"{order_id} is CONFIRMED but was refunded")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(audit(session, o, s) for o, s in statuses.items()))
    finding.note = f"{captured} orders captured, {len(statuses)} audited"
    return finding


async def _stock(redis: aioredis.Redis, settings: Settings, statuses: dict[str, str]) -> Finding:
    finding = Finding("stock never negative; reserved stock belongs to live orders only")
    held: dict[str, int] = defaultdict(int)
    skus = 0
    for partition in topology(settings).partitions_of(CATALOG):
        prefix = partition.reservation_key("", "")[:-1]  # ".../{catalog:n}:" then order:sku
        async for key in redis.scan_iter(match=f"{_glob(prefix)}*", count=1000):
            record = {as_text(k): as_text(v) for k, v in (await redis.hgetall(key)).items()}
            if record.get("state") != "reserved":
                continue
            order_id, _, sku = as_text(key)[len(prefix) :].rpartition(":")
            held[sku] += int(record.get("quantity", 0))
            status = statuses.get(order_id, "unknown")
            if status != "PENDING":
                finding.broken.append(
                    f"{order_id} ({status}) still holds {record['quantity']} of {sku}"
                )
        item_prefix = partition.catalog_item_key("")
        async for key in redis.scan_iter(match=f"{_glob(item_prefix)}*", count=1000):
            sku = as_text(key)[len(item_prefix) :]
            on_hand, reserved = await redis.hmget(key, "on_hand", "reserved")
            on_hand, reserved = int(on_hand or 0), int(reserved or 0)
            skus += 1
            if on_hand < 0 or reserved < 0 or on_hand - reserved < 0:
                finding.broken.append(f"{sku}: on_hand {on_hand}, reserved {reserved}")
            if reserved != held.get(sku, reserved):
                finding.broken.append(f"{sku}: reserved {reserved} but orders hold {held[sku]}")
    finding.note = f"{skus} SKUs, {sum(held.values())} units reserved"
    return finding


async def _read_models(redis: aioredis.Redis, postgres_url: str, settings: Settings) -> Finding:
    finding = Finding("the read models equal a fresh replay of the events")
    engine = create_engine(postgres_url)
    try:
        chosen = [p for p in PROJECTIONS.values() if p.rebuildable]
        partitions = topology(settings).all_partitions()
        for difference in await verify(redis, engine, chosen, partitions):
            finding.broken.append(
                f"{difference.table}: {difference.only_live} rows only live,"
                f" {difference.only_replayed} only replayed (e.g. {', '.join(difference.examples)})"
            )
    finally:
        await engine.dispose()
    finding.note = (
        f"{', '.join(p.name for p in chosen)} equal to a replay (at {redacted(postgres_url)})"
    )
    return finding


def _glob(text: str) -> str:
    """``text`` as a literal in a SCAN pattern (hash tags have braces, ids may have '*')."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "unknown"
