"""`orderly load`: place orders through the HTTP API and report throughput, latency, outcomes.

Closed loop (``--orders N --concurrency C``): C orders in flight at a time, each placed when
one ends. Open loop (``--rate R --duration D``): a new order every 1/R s for D s, whatever
the platform's pace (``--concurrency`` then only caps the orders in flight).

An order's accept latency is its ``POST /orders`` round trip; its end-to-end latency runs
from sending that POST until ``GET /orders/{id}`` shows it terminal in the read model. Each
order is polled with a growing wait (cli.api), through a few shared slots, so watching
thousands of orders does not swamp the service; the end seen trails the real one by at most
about a fifth of the order's age (250 ms at most).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import click

from cli.api import ApiFailed, OrderApi, order_api, unreachable
from cli.durations import Duration, format_ms
from cli.errors import one_line
from cli.options import emit, stack_options
from cli.table import table
from cli.workload import Workload
from orderly_platform.percentiles import REPORTED, latency_summary_ms
from orderly_platform.settings import Settings

DEFAULT_ORDERS, DEFAULT_CONCURRENCY, OPEN_LOOP_MAX_IN_FLIGHT = 100, 10, 1_000
# GETs polling for orders' ends in flight at once, at most.
POLL_SLOTS = 16
# Outcomes besides the terminal statuses: not accepted, or not ended within --timeout.
FAILED, UNFINISHED = "FAILED", "PENDING"
ERROR_EXAMPLES = 5


@dataclass(frozen=True)
class Outcome:
    status: str
    accept_s: float | None = None
    # When the POST was answered, in seconds from the start of the run.
    accepted_at_s: float | None = None
    end_to_end_s: float | None = None
    reason: str | None = None
    error: str | None = None


@dataclass
class Tally:
    """The outcomes so far; what the progress bar shows and the report sums up."""

    outcomes: list[Outcome] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.by_status[outcome.status] += 1

    def line(self) -> str:
        return ", ".join(f"{n} {status.lower()}" for status, n in sorted(self.by_status.items()))


@click.command("load")
@click.option(
    "--orders",
    type=click.IntRange(1),
    default=None,
    help=f"Closed loop: place this many orders (default {DEFAULT_ORDERS}).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=None,
    help=f"Orders in flight at once (closed loop, default {DEFAULT_CONCURRENCY}); with --rate, "
    f"a cap on them (default {OPEN_LOOP_MAX_IN_FLIGHT}).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Open loop: start this many orders per second (with --duration).",
)
@click.option(
    "--duration",
    "duration_ms",
    type=Duration(),
    default=None,
    help="Open loop: for this long: 30s, 5m.",
)
@click.option(
    "--timeout",
    "timeout_ms",
    type=Duration(),
    default="120s",
    show_default=True,
    help="How long each order may take to end before it counts as PENDING.",
)
@click.option("--seed", type=int, default=None, help="Same seed, same orders.")
@stack_options
def load_command(
    settings: Settings,
    as_json: bool,
    orders: int | None,
    concurrency: int | None,
    rate: float | None,
    duration_ms: int | None,
    timeout_ms: int,
    seed: int | None,
) -> None:
    """Place orders through the HTTP API (a realistic mix on a catalog of its own), with a
    progress bar on stderr, then report orders/s, accept and end-to-end latency p50/p95/p99
    and outcomes. Exit 1 when an order was refused or did not end within --timeout."""
    if rate is not None and orders is not None:
        raise click.UsageError("--orders (closed loop) and --rate (open loop) exclude each other")
    if (rate is None) != (duration_ms is None):
        raise click.UsageError("--rate and --duration go together")
    if duration_ms == 0:
        raise click.BadParameter("must be longer than 0", param_hint="'--duration'")
    open_loop = rate is not None and duration_ms is not None
    if open_loop:
        assert rate is not None and duration_ms is not None
        total = max(1, round(rate * duration_ms / 1000))
        in_flight = concurrency or OPEN_LOOP_MAX_IN_FLIGHT
    else:
        total = orders or DEFAULT_ORDERS
        in_flight = concurrency or DEFAULT_CONCURRENCY
    run = uuid.uuid4().hex[:8]
    workload = Workload(run, total, seed)
    tally = Tally()

    async def load() -> float:
        # A connection for every order in flight and every poll: a request waiting for a
        # connection would count its wait as accept latency.
        async with order_api(settings, connections=in_flight + POLL_SLOTS) as api:
            await workload.stock(api)
            placing = _Placing(api, workload, timeout_ms / 1000, min(POLL_SLOTS, in_flight))
            # On stderr, so that --json output stays parseable.
            with click.progressbar(
                length=total,
                label=f"load {run}",
                file=sys.stderr,
                show_pos=True,
                item_show_func=lambda line: line,
            ) as bar:

                def ended(outcome: Outcome) -> None:
                    tally.add(outcome)
                    bar.update(1, tally.line())

                if open_loop:
                    assert rate is not None
                    await placing.open_loop(total, rate, in_flight, ended)
                else:
                    await placing.closed_loop(total, in_flight, ended)
                return time.perf_counter() - placing.started

    try:
        elapsed = asyncio.run(load())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(settings, exc) from None
    report = _report(
        tally.outcomes,
        elapsed,
        run=run,
        mode="open" if open_loop else "closed",
        concurrency=in_flight,
        rate=rate,
        duration_s=duration_ms / 1000 if duration_ms is not None else None,
    )
    emit(as_json, report, _lines(report))
    failed, unfinished = tally.by_status[FAILED], tally.by_status[UNFINISHED]
    problems = [
        f"{failed} orders were not accepted" if failed else "",
        f"{unfinished} did not end within {format_ms(timeout_ms)}" if unfinished else "",
    ]
    if failed or unfinished:
        raise click.ClickException(" and ".join(p for p in problems if p))


class _Placing:
    """Places the workload's orders and follows each to its end."""

    def __init__(self, api: OrderApi, workload: Workload, timeout_s: float, polls: int) -> None:
        self.started = time.perf_counter()
        self.api = api
        self.workload = workload
        self.timeout_s = timeout_s
        self.polls = asyncio.Semaphore(polls)

    async def closed_loop(
        self, total: int, concurrency: int, ended: Callable[[Outcome], None]
    ) -> None:
        remaining = iter(range(total))  # shared: each worker takes the next order

        async def worker() -> None:
            for _ in remaining:
                ended(await self.one())

        await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))

    async def open_loop(
        self, total: int, rate: float, max_in_flight: int, ended: Callable[[Outcome], None]
    ) -> None:
        in_flight = asyncio.Semaphore(max_in_flight)
        tasks = []

        async def tracked() -> None:
            try:
                ended(await self.one())
            finally:
                in_flight.release()

        started = time.perf_counter()
        for n in range(total):
            # Due times from the start, not from the previous order: a late start does not
            # push the ones after it back.
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            tasks.append(asyncio.create_task(tracked()))
        await asyncio.gather(*tasks)

    async def one(self) -> Outcome:
        plan = self.workload.next_order()
        sent = time.perf_counter()
        try:
            order_id = await self.api.place_order(
                plan.customer_id,
                plan.items,
                plan.payment_token,
                idempotency_key=f"load-{uuid.uuid4().hex}",
            )
        except (ApiFailed, aiohttp.ClientError, TimeoutError) as exc:
            return Outcome(FAILED, error=one_line(exc))
        accepted = time.perf_counter()
        accept_s, accepted_at_s = accepted - sent, accepted - self.started
        try:
            if plan.cancel:
                await self.api.cancel(order_id, "changed my mind (load)")
            order = await self.api.poll_until_terminal(order_id, self.timeout_s, self.polls)
        except (ApiFailed, aiohttp.ClientError, TimeoutError) as exc:
            return Outcome(FAILED, accept_s, accepted_at_s, error=one_line(exc))
        if order is None or order["status"] == UNFINISHED:
            return Outcome(
                UNFINISHED, accept_s, accepted_at_s, error=f"order {order_id} did not end"
            )
        return Outcome(
            order["status"],
            accept_s,
            accepted_at_s,
            end_to_end_s=time.perf_counter() - sent,
            reason=order.get("reason"),
        )


def _report(
    outcomes: list[Outcome],
    elapsed_s: float,
    *,
    run: str,
    mode: str,
    concurrency: int,
    rate: float | None,
    duration_s: float | None,
) -> dict[str, Any]:
    accepted = [o.accept_s for o in outcomes if o.accept_s is not None]
    ended = [o.end_to_end_s for o in outcomes if o.end_to_end_s is not None]
    # Accepts per second while orders were being placed; ends over the whole run.
    accepting_s = max((o.accepted_at_s or 0.0 for o in outcomes), default=0.0)
    errors = [o.error for o in outcomes if o.error]
    return {
        "run": run,
        "mode": mode,
        "orders": len(outcomes),
        "concurrency": concurrency,
        "rate": rate,
        "duration_s": duration_s,
        "elapsed_s": round(elapsed_s, 3),
        # Orders that reached a terminal status, per second of the whole run.
        "orders_per_s": _per_s(len(ended), elapsed_s),
        "accepted_per_s": _per_s(len(accepted), accepting_s),
        "accept_latency_ms": latency_summary_ms(accepted),
        "end_to_end_latency_ms": latency_summary_ms(ended),
        "outcomes": dict(sorted(Counter(o.status for o in outcomes).items())),
        "reasons": dict(Counter(o.reason for o in outcomes if o.reason).most_common()),
        "errors": list(dict.fromkeys(errors))[:ERROR_EXAMPLES],
    }


def _lines(report: dict[str, Any]) -> list[str]:
    how = (
        f"open loop at {report['rate']:g}/s for {report['duration_s']:g} s"
        f" (at most {report['concurrency']} in flight)"
        if report["mode"] == "open"
        else f"closed loop, {report['concurrency']} in flight"
    )
    names = [name for name, _ in REPORTED] + ["max"]
    latency = table(
        ("LATENCY", *(name.upper() for name in names)),
        [
            [label, *(_ms(report[key][name]) for name in names)]
            for label, key in (
                ("accept", "accept_latency_ms"),
                ("end to end", "end_to_end_latency_ms"),
            )
        ],
    )
    total = report["orders"] or 1
    outcomes = table(
        ("OUTCOME", "ORDERS", "SHARE"),
        [
            [status, str(n), f"{100 * n / total:.0f}%"]
            for status, n in sorted(report["outcomes"].items(), key=lambda item: -item[1])
        ],
    )
    lines = [
        f"run {report['run']}: {report['orders']} orders, {how}, {report['elapsed_s']:.1f} s",
        f"throughput: {report['orders_per_s']:g} orders/s ended,"
        f" {report['accepted_per_s']:g} orders/s accepted",
        "",
        *latency,
        "",
        *outcomes,
    ]
    if report["reasons"]:
        reasons = ", ".join(f"{reason} ({n})" for reason, n in report["reasons"].items())
        lines += ["", f"reasons: {reasons}"]
    lines += [f"error: {error}" for error in report["errors"]]
    return lines


def _per_s(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"
