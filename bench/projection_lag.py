"""Projection lag: how long after its append an order shows in ``GET /orders/{id}``, under load.

``./pants run bench/projection_lag.py -- [--rate 2000] [--duration 30] [--smoke] [--json PATH]``
starts, in one run, a real Redis (``RedisServer``, AOF ``everysec`` as shipped), a real Postgres
(``PostgresServer``, durable as shipped: fsync and synchronous commit on), migrates it, and runs
the real projector and order service as their own processes (4 partitions), then:

1. drives a steady ``--rate`` events/s of a realistic order mix: the catalog of
   ``contracts.testing.order_mix``, then order histories of ``contracts.testing.order_history``
   in its outcome mix (80% confirmed, 8% out of stock, 7% declined, 5% cancelled; ~6.9 events an
   order), 300 orders in flight at a time, a new one placed as soon as one ends (see
   ``order_events`` for why not ``order_mix`` itself). Each event carries the time it is sent and
   goes through ``EventAppender.append_units`` (one unit an event, as separate writers would
   append them). A tick every 10 ms appends what is due by then, computed from
   the elapsed time, so a slow round trip makes the next batch bigger instead of making the
   schedule drift. Appends go one round trip at a time: an order's events then reach the
   streams in the order its saga emitted them. The first seconds are a warm-up (connection
   pools, first batches) and are not sampled;
2. for every ``--sample-every``-th ``OrderPlaced`` (every 4th: ~70 orders/s, ~2,200 samples in
   30 s at 2,000 events/s, so the p99 rests on ~22 samples above it), polls
   ``GET /orders/{id}`` on the order service (aiohttp, keep-alive) from the moment its append
   returned, every 5 ms per pending order, at most ``--max-polls`` (16) in flight. Lag = the 200's
   arrival minus the append's return. Resolution: the order became visible between the last 404
   poll's start and the 200's arrival; that window's p50/p99 is reported beside the lag;
3. reads the projector's own view (``projections.status.projection_lag``: events not applied
   yet, per projection) every second, at the end of the load and after the last sample.

The figures are the lag p50/p95/p99/max, the achieved append rate (it must be within 2% of the
target, else the run did not measure that rate, and says so), the cores each process kept busy
while sampling (Postgres counts its backends), and Postgres commits/s with the events each
commit carried (the projector's batch size: it commits once per batch and projection). Any append refused or failed and any answer
other than 200 or 404 fails the run loudly. Target (from the issue): lag p99 < 500 ms at 2,000
events/s, printed as PASS/FAIL; the exit status is 0 either way: a benchmark, not a test. The
load generator, the poller and every server share this machine's cores: the cores line says
what the measurement itself cost.

``measure_projection_lag(workdir, rate=..., duration_s=..., smoke=...)`` does the whole run and
returns the report as JSON-able data, for other benchmarks (bench/replay.py) to include.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis
import sqlalchemy as sa
from redis.utils import HIREDIS_AVAILABLE
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from bench.publish import machine_busy_s, process_cpu_s
from bench.running import BenchmarkFailed, run_and_report
from contracts import Event, EventEnvelope, OrderItem, OrderPlaced, new_envelope
from contracts.testing import OUTCOMES, SOURCE, WEIGHTS, order_history, order_mix, subject_of
from eventbus.appender import AppendRefused, EventAppender, PendingAppend
from eventbus.topology import Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer, PythonService, RedisServer
from orderly_platform.logs import configure_logging
from orderly_platform.percentiles import percentile
from projections.registry import PROJECTIONS
from projections.status import projection_lag

PARTITIONS = 4
SKUS = 100
CUSTOMERS = 10_000
ORDERS_IN_FLIGHT = 300
TICK_S = 0.010
WARMUP_S = 3.0
SAMPLE_EVERY = 4
POLL_INTERVAL_S = 0.005
MAX_CONCURRENT_POLLS = 16
# How long a sampled order may take to show up once the load has stopped.
DRAIN_TIMEOUT_S = 30.0
STATUS_INTERVAL_S = 1.0
PROGRESS_EVERY_S = 5.0

TARGET_RATE = 2_000
TARGET_P99_MS = 500.0
RATE_TOLERANCE = 0.02
SMOKE_RATE = 200
SMOKE_DURATION_S = 3.0
SMOKE_WARMUP_S = 1.0


# --- CPU use --------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children, the live ones and those it has reaped.

    Postgres serves each connection from a backend process forked by the postmaster; a backend
    that exits moves its CPU time into the postmaster's cutime/cstime (fields 16 and 17).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    total = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    total += process_cpu_s(pid)
    for child in children_of(pid):
        try:
            total += process_cpu_s(child)
        except OSError:  # exited between the listing and the read: counted in cutime soon
            continue
    return total


class CoresMeter:
    """Cores each process (tree) kept busy between ``start()`` and ``cores()``.

    ``bench.publish.CpuMeter`` reads one process each; this one takes any reader, so that
    Postgres can be counted with its backends.
    """

    def __init__(self, readers: dict[str, Callable[[], float]]) -> None:
        self.readers = {**readers, "machine": machine_busy_s}
        self._start: dict[str, float] = {}
        self._started = 0.0

    def start(self) -> None:
        self._start = {name: read() for name, read in self.readers.items()}
        self._started = time.monotonic()

    def cores(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._started
        if elapsed < 1.0:  # CPU time is counted in 10 ms ticks: too coarse for short runs
            return {}
        return {
            name: round((read() - self._start[name]) / elapsed, 2)
            for name, read in self.readers.items()
        }


# --- the servers ---------------------------------------------------------------------------


@dataclass
class Stack:
    redis_server: RedisServer
    postgres: PostgresServer
    projector: PythonService
    order_service: PythonService
    redis: aioredis.Redis
    engine: AsyncEngine

    @property
    def services(self) -> list[PythonService]:
        return [self.projector, self.order_service]

    def cores_meter(self) -> CoresMeter:
        def one(process_pid: int | None) -> Callable[[], float]:
            assert process_pid is not None
            return lambda: process_cpu_s(process_pid)

        postgres_pid = self.postgres.process.pid
        assert postgres_pid is not None
        return CoresMeter(
            {
                "bench": one(os.getpid()),
                "order-service": one(self.order_service.process.pid),
                "projector": one(self.projector.process.pid),
                "redis": one(self.redis_server.process.pid),
                "postgres": lambda: process_tree_cpu_s(postgres_pid),
            }
        )


async def start_stack(exit_stack: AsyncExitStack, workdir: Path) -> Stack:
    """Redis and Postgres, the schema, then the projector and the order service.

    ``exit_stack`` stops them in reverse: services first, so they drain into the servers.
    """
    redis_server = RedisServer(workdir)
    exit_stack.push_async_callback(redis_server.stop)
    postgres = PostgresServer(workdir)
    exit_stack.push_async_callback(postgres.stop)
    await asyncio.gather(redis_server.start(), postgres.start())
    announce("migrating the read models")
    await migrations.upgrade_async(postgres.url)
    env = {
        "ORDERLY_REDIS_URL": redis_server.url,
        "ORDERLY_POSTGRES_URL": postgres.url,
        "ORDERLY_API_TOKEN": secrets.token_urlsafe(16),
        "ORDERLY_STREAM_PARTITIONS": str(PARTITIONS),
        "ORDERLY_LOG_LEVEL": "WARNING",
    }
    projector = PythonService("projector", "projector", workdir, env=env)
    exit_stack.push_async_callback(projector.stop)
    order_service = PythonService("order-service", "order_service", workdir, env=env)
    exit_stack.push_async_callback(order_service.stop)
    announce("starting the projector and the order service")
    await asyncio.gather(projector.start(), order_service.start())
    redis = aioredis.Redis.from_url(redis_server.url)
    exit_stack.push_async_callback(redis.aclose)
    engine = create_engine(postgres.url, pool_size=2)
    exit_stack.push_async_callback(engine.dispose)
    return Stack(redis_server, postgres, projector, order_service, redis, engine)


def check_alive(stack: Stack) -> None:
    for service in stack.services:
        if service.process.returncode is not None:
            raise BenchmarkFailed(
                f"{service.name} exited with status {service.process.returncode} during the run"
            )


def print_log_tails(stack: Stack) -> None:
    for service in stack.services:
        tail = service.process.log_tail().strip()
        if tail:
            print(f"--- {service.name} log ({service.process.log_path}) ---\n{tail}", flush=True)


# --- the load ------------------------------------------------------------------------------


PlacedCallback = Callable[[str, float], None]


@dataclass
class SteadyLoad:
    """Appends ``rate`` events/s until ``total`` are in, one round trip at a time."""

    appender: EventAppender
    events: Iterator[EventEnvelope]
    rate: int
    total: int
    on_placed: PlacedCallback
    started: float = 0.0
    finished: float = 0.0
    appended: int = 0
    orders_placed: int = 0
    largest_batch: int = 0
    largest_batch_at_s: float = 0.0
    lateness_s: list[float] = field(default_factory=list)
    append_s: list[float] = field(default_factory=list)

    async def run(self, check: Callable[[], Awaitable[None]]) -> None:
        self.started = time.monotonic()
        tick = 1
        while self.appended < self.total:
            due_at = self.started + tick * TICK_S
            delay = due_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.lateness_s.append(now - due_at)
            await check()
            due = min(self.total, int((now - self.started) * self.rate)) - self.appended
            if due > 0:
                await self._append(due)
            # Ticks missed while appending are skipped: the next one appends what they owed.
            tick = int((time.monotonic() - self.started) / TICK_S) + 1
        self.finished = time.monotonic()

    async def _append(self, count: int) -> None:
        now = datetime.now(UTC)
        envelopes = [msgspec.structs.replace(next(self.events), time=now) for _ in range(count)]
        sent = time.monotonic()
        outcomes = await self.appender.append_units([[PendingAppend(e)] for e in envelopes])
        returned = time.monotonic()
        self.append_s.append(returned - sent)
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            if isinstance(outcome, AppendRefused):
                raise BenchmarkFailed(f"append of {envelope.type} {envelope.id} refused: {outcome}")
            if outcome[0].duplicate:
                raise BenchmarkFailed(f"{envelope.type} {envelope.id} was taken for a duplicate")
            if isinstance(envelope.data, OrderPlaced):
                self.orders_placed += 1
                self.on_placed(envelope.subject, returned)
        self.appended += count
        if count > self.largest_batch:
            self.largest_batch, self.largest_batch_at_s = count, sent - self.started

    @property
    def achieved_rate(self) -> float:
        return self.appended / (self.finished - self.started)


# --- visibility ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Visible:
    lag_s: float
    # The order became visible between the last 404 poll's start and the 200's arrival.
    window_s: float
    polls: int


class VisibilityPoller:
    """Polls ``GET /orders/{id}`` for each watched order until it answers 200."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, max_concurrent: int) -> None:
        self.session = session
        self.base_url = base_url
        self._slots = asyncio.Semaphore(max_concurrent)
        self.visible: list[Visible] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.request_s: list[float] = []
        self.failure: BaseException | None = None

    def watch(self, order_id: str, appended_at: float) -> None:
        task = asyncio.create_task(self._watch(order_id, appended_at))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    def check(self) -> None:
        """Raise the first error a poll met, so that the run stops on it."""
        if self.failure is not None:
            raise BenchmarkFailed(f"polling GET /orders/{{id}} failed: {self.failure!r}")

    @property
    def pending(self) -> int:
        return sum(1 for task in self.tasks if not task.done())

    async def _watch(self, order_id: str, appended_at: float) -> None:
        url = f"{self.base_url}/orders/{order_id}"
        last_miss = appended_at
        polls = 0
        while True:
            async with self._slots:
                sent = time.monotonic()
                async with self.session.get(url) as response:
                    body = await response.read()
                answered = time.monotonic()
            polls += 1
            self.requests += 1
            self.request_s.append(answered - sent)
            if response.status == 200:
                self.visible.append(Visible(answered - appended_at, answered - last_miss, polls))
                return
            if response.status != 404:
                raise BenchmarkFailed(
                    f"GET /orders/{order_id} answered {response.status}: {body[:300]!r}"
                )
            last_miss = sent
            await asyncio.sleep(max(0.0, sent + POLL_INTERVAL_S - time.monotonic()))

    async def drain(self, timeout_s: float) -> int:
        """Wait for the watched orders to show; cancel the rest and return how many."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout_s)
        unresolved = [task for task in self.tasks if not task.done()]
        for task in unresolved:
            task.cancel()
        await asyncio.gather(*unresolved, return_exceptions=True)
        self.check()
        return len(unresolved)


# --- the projector's own view --------------------------------------------------------------


async def projector_view(stack: Stack) -> dict[str, dict[str, int]]:
    partitions = Topology(PARTITIONS).all_partitions()
    view = {}
    for name in PROJECTIONS:
        lag = await projection_lag(stack.redis, stack.engine, name, partitions)
        view[name] = {"unapplied": lag.unapplied, "behind_ms": lag.behind_ms}
    return view


@dataclass
class ProjectorWatch:
    """The projector's view every second while the load runs, with a progress line."""

    stack: Stack
    load: SteadyLoad
    poller: VisibilityPoller
    largest: dict[str, dict[str, int]] = field(default_factory=dict)

    async def run(self) -> None:
        last_progress = time.monotonic()
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            view = await projector_view(self.stack)
            for name, figures in view.items():
                seen = self.largest.setdefault(name, dict.fromkeys(figures, 0))
                for key, value in figures.items():
                    seen[key] = max(seen[key], value)
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                self._progress(view)

    def _progress(self, view: dict[str, dict[str, int]]) -> None:
        elapsed = time.monotonic() - self.load.started
        unapplied = ", ".join(f"{name} {figures['unapplied']:,}" for name, figures in view.items())
        print(
            f"    {elapsed:5.1f} s: {self.load.appended:,} events appended, "
            f"{len(self.poller.visible):,} samples visible, {self.poller.pending} pending; "
            f"unapplied: {unapplied}",
            flush=True,
        )


# --- what the processes did while sampling -------------------------------------------------


async def postgres_commits(engine: AsyncEngine) -> int:
    """Transactions committed in the database so far: the projector's batches, nearly all.

    Reads roll back; backends publish their counts about once a second.
    """
    async with engine.connect() as connection:
        statement = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        return int((await connection.execute(sa.text(statement))).scalar_one())


@dataclass
class SamplingWindow:
    """The cores each process kept busy, and Postgres' commits, while samples were taken."""

    stack: Stack
    meter: CoresMeter
    started: float = math.inf
    commits_at_start: int = 0

    @property
    def open(self) -> bool:
        return self.started != math.inf

    async def start(self) -> None:
        self.started = time.monotonic()
        self.meter.start()
        self.commits_at_start = await postgres_commits(self.stack.engine)

    async def close(self, events: int) -> dict[str, Any]:
        cores = self.meter.cores()
        elapsed = time.monotonic() - self.started
        commits = await postgres_commits(self.stack.engine) - self.commits_at_start
        return {
            "seconds": round(elapsed, 3),
            "cpu_cores": cores,
            "postgres_commits_per_s": round(commits / elapsed, 1),
            # Every projection's consumer reads every event (and commits its checkpoint).
            "events_per_commit": round(events * len(PROJECTIONS) / commits, 1) if commits else 0,
        }


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    rate: int
    duration_s: float
    warmup_s: float
    smoke: bool
    sample_every: int
    max_concurrent_polls: int
    seed: int = field(default_factory=lambda: secrets.randbits(32))

    @property
    def total_events(self) -> int:
        return round(self.rate * (self.warmup_s + self.duration_s))


def announce(message: str) -> None:
    print(f"  {message} ...", flush=True)


def order_events(seed: int) -> Iterator[EventEnvelope]:
    """The catalog, then orders in a steady state: ``ORDERS_IN_FLIGHT`` at a time, endlessly.

    ``order_mix`` itself is not steady: past 300 orders in flight it still places an order
    every other event, so its in-flight set grows without bound until all orders are placed.
    Cut after N events it is a quarter OrderPlaced (4 events an order, thousands in flight);
    taken whole, every order is placed in its first third. Its outcome mix and histories
    (``order_history``) are what is kept here; ids are random (uuid4), so nothing is ever
    taken for a duplicate of an earlier run.
    """
    yield from order_mix(0, skus=SKUS, start=datetime.now(UTC))  # no order: the catalog only
    rng = random.Random(seed)
    in_flight: list[list[tuple[str, Event]]] = []
    while True:
        if len(in_flight) < ORDERS_IN_FLIGHT:
            in_flight.append(placed_order(rng))
        slot = rng.randrange(len(in_flight))
        order_id, event = in_flight[slot].pop()
        if not in_flight[slot]:
            in_flight[slot] = in_flight[-1]
            in_flight.pop()
        yield new_envelope(event, source=SOURCE, subject=subject_of(event, order_id))


def placed_order(rng: random.Random) -> list[tuple[str, Event]]:
    """One order's history in ``order_mix``'s mix of outcomes, last event first."""
    order_id = str(uuid.uuid4())
    items = tuple(
        OrderItem(sku=f"SKU-{n:04d}", quantity=rng.randint(1, 3))
        for n in rng.sample(range(SKUS), rng.randint(1, 3))
    )
    history = order_history(
        order_id,
        rng.choices(OUTCOMES, WEIGHTS)[0],
        customer_id=f"c-{rng.randrange(CUSTOMERS)}",
        items=items,
        stock_moves=True,
    )
    return [(order_id, event) for event in reversed(history)]


async def run_load(stack: Stack, settings: RunSettings) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=settings.max_concurrent_polls)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        poller = VisibilityPoller(session, stack.order_service.url, settings.max_concurrent_polls)
        window = SamplingWindow(stack, stack.cores_meter())
        placed = 0

        def sample(order_id: str, appended_at: float) -> None:
            nonlocal placed
            placed += 1
            if appended_at >= window.started and placed % settings.sample_every == 0:
                poller.watch(order_id, appended_at)

        load = SteadyLoad(
            EventAppender(stack.redis, Topology(PARTITIONS)),
            order_events(settings.seed),
            settings.rate,
            settings.total_events,
            sample,
        )
        await projector_view(stack)  # connects this process's engine before the clock starts
        watch = ProjectorWatch(stack, load, poller)
        watcher = asyncio.create_task(watch.run())
        appended_at_start = 0

        async def check() -> None:
            nonlocal appended_at_start
            poller.check()
            check_alive(stack)
            if not window.open and time.monotonic() - load.started >= settings.warmup_s:
                appended_at_start = load.appended
                await window.start()

        try:
            await load.run(check)
            sampling = await window.close(load.appended - appended_at_start)
            at_end_of_load = await projector_view(stack)
        finally:
            watcher.cancel()
            [watched] = await asyncio.gather(watcher, return_exceptions=True)
        if isinstance(watched, Exception):
            raise BenchmarkFailed(f"reading the projector's view failed: {watched!r}")
        announce(f"load done; waiting for {poller.pending} sampled orders to show")
        not_visible = await poller.drain(DRAIN_TIMEOUT_S)
        check_alive(stack)
        if not_visible:
            print(f"  {not_visible:,} sampled orders never showed; the services' logs:")
            print_log_tails(stack)
        projector = {
            "at_end_of_load": at_end_of_load,
            "largest_during_load": watch.largest,
            "after_last_sample": await projector_view(stack),
        }
    return {
        "load": load_figures(load, settings),
        **lag_figures(poller, not_visible, settings, measured_s=sampling["seconds"]),
        "projector": projector,
        "sampling_window": sampling,
    }


def distribution_ms(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    figures = {f"p{q}": percentile(ordered, q / 100) for q in (50, 95, 99)}
    figures["max"] = ordered[-1]
    figures["mean"] = sum(ordered) / len(ordered)
    return {key: round(value * 1000, 2) for key, value in figures.items()}


def load_figures(load: SteadyLoad, settings: RunSettings) -> dict[str, Any]:
    achieved = load.achieved_rate
    return {
        "target_rate": settings.rate,
        "achieved_rate": round(achieved, 1),
        "kept_up": achieved >= settings.rate * (1 - RATE_TOLERANCE),
        "events": load.appended,
        "seconds": round(load.finished - load.started, 3),
        "orders_placed": load.orders_placed,
        "largest_batch": load.largest_batch,
        "largest_batch_at_s": round(load.largest_batch_at_s, 2),
        "tick_lateness_ms": distribution_ms(load.lateness_s),
        "append_ms": distribution_ms(load.append_s),
    }


def lag_figures(
    poller: VisibilityPoller, not_visible: int, settings: RunSettings, measured_s: float
) -> dict[str, Any]:
    visible = poller.visible
    polls = [v.polls for v in visible]
    return {
        "lag_ms": distribution_ms([v.lag_s for v in visible]),
        "samples": len(visible),
        "not_visible": not_visible,
        "resolution": {
            "poll_interval_ms": POLL_INTERVAL_S * 1000,
            "max_concurrent_polls": settings.max_concurrent_polls,
            "window_ms": distribution_ms([v.window_s for v in visible]),
            "get_latency_ms": distribution_ms(poller.request_s),
            "requests": poller.requests,
            "requests_per_s": round(poller.requests / measured_s, 1) if measured_s > 0 else 0,
            "polls_per_sample": round(sum(polls) / len(polls), 1) if polls else 0,
        },
    }


def machine() -> dict[str, Any]:
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory": memory,
        "python": platform.python_version(),
        "redis_parser": "hiredis" if HIREDIS_AVAILABLE else "python",
        "load_average_at_start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def target(report: dict[str, Any]) -> dict[str, Any]:
    """PASS needs the p99 under target, at the target rate or above, with every sample seen."""
    lag, load = report["lag_ms"], report["load"]
    p99 = lag.get("p99")
    measured = "no sample" if p99 is None else f"p99 {p99:.1f} ms"
    measured += f" at {load['achieved_rate']:,.0f} events/s achieved"
    reasons = []
    if load["target_rate"] < TARGET_RATE:
        reasons.append(f"driven at {load['target_rate']:,} events/s, below the target rate")
    if not load["kept_up"]:
        reasons.append(f"the load fell more than {RATE_TOLERANCE:.0%} behind its rate")
    if report["not_visible"]:
        reasons.append(f"{report['not_visible']:,} sampled orders never showed")
    return {
        "description": f"lag p99 < {TARGET_P99_MS:.0f} ms at {TARGET_RATE:,} events/s",
        "measured": "; ".join([measured, *reasons]),
        "passed": p99 is not None and p99 < TARGET_P99_MS and not reasons,
    }


async def measure_projection_lag(
    workdir: Path,
    *,
    rate: int,
    duration_s: float,
    smoke: bool,
    sample_every: int = SAMPLE_EVERY,
    max_concurrent_polls: int = MAX_CONCURRENT_POLLS,
) -> dict[str, Any]:
    """Start the stack under ``workdir / "projection-lag"``, drive the load, measure the lag.

    ``smoke``: a few seconds at a low rate (``rate`` and ``duration_s`` are then ignored), to
    check in CI that the benchmark still runs. Returns the report (JSON-able); raises
    ``BenchmarkFailed`` on an error the figures must not hide. Every server it started is
    stopped when it returns, its data and logs are left under the directory.
    """
    settings = RunSettings(
        rate=SMOKE_RATE if smoke else rate,
        duration_s=SMOKE_DURATION_S if smoke else duration_s,
        warmup_s=SMOKE_WARMUP_S if smoke else WARMUP_S,
        smoke=smoke,
        sample_every=sample_every,
        max_concurrent_polls=max_concurrent_polls,
    )
    directory = workdir / "projection-lag"
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "rate": settings.rate,
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "smoke": settings.smoke,
            "partitions": PARTITIONS,
            "tick_ms": TICK_S * 1000,
            "sample_every": settings.sample_every,
            "seed": settings.seed,
            "postgres": "durable: fsync and synchronous_commit on",
            "redis": "AOF appendfsync everysec",
        },
    }
    async with AsyncExitStack() as exit_stack:
        announce(f"starting redis and postgres under {directory}")
        stack = await start_stack(exit_stack, directory)
        report["machine"]["redis"] = (await stack.redis.info("server"))["redis_version"]
        async with stack.engine.connect() as connection:
            version = await connection.execute(sa.text("SHOW server_version"))
            report["machine"]["postgres"] = version.scalar_one()
        announce(
            f"driving {settings.rate:,} events/s for {settings.duration_s:g} s "
            f"(+{settings.warmup_s:g} s warm-up, not sampled)"
        )
        try:
            report.update(await run_load(stack, settings))
        except Exception:
            print_log_tails(stack)
            raise
        announce("stopping the servers")
    report["machine"]["load_average_at_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    report["target"] = target(report)
    return report


# --- report --------------------------------------------------------------------------------


def spread(figures: dict[str, float], *keys: str) -> str:
    return " / ".join(f"{figures[key]:,.1f}" for key in keys if key in figures) or "-"


def render(report: dict[str, Any]) -> str:
    m, s, load = report["machine"], report["settings"], report["load"]
    lag, resolution = report["lag_ms"], report["resolution"]
    kept_up = "kept up" if load["kept_up"] else "DID NOT KEEP UP"
    lines = [
        "",
        f"Projection lag (bench/projection_lag), {report['date']}: {m['nproc']} cores, "
        f"{m['memory']}, load average {m['load_average_at_start']} at start, "
        f"{m['load_average_at_end']} at end; Redis {m['redis']} ({s['redis']}), Postgres "
        f"{m['postgres']} ({s['postgres']}), Python {m['python']}, redis-py parser {m['redis_parser']}; "
        f"{s['partitions']} partitions{' (SMOKE RUN)' if s['smoke'] else ''}",
        "",
        f"  load      target {load['target_rate']:,} events/s for {s['duration_s']:g} s "
        f"(+{s['warmup_s']:g} s warm-up): achieved {load['achieved_rate']:,.1f} events/s "
        f"({load['achieved_rate'] / load['target_rate']:.1%}): {kept_up} "
        f"(within {RATE_TOLERANCE:.0%})",
        f"            {load['events']:,} events, {load['orders_placed']:,} orders placed; "
        f"a batch every {s['tick_ms']:g} ms, largest {load['largest_batch']:,} events "
        f"(at {load['largest_batch_at_s']:g} s)",
        f"            append round trip p50/p99/max {spread(load['append_ms'], 'p50', 'p99', 'max')}"
        f" ms; tick lateness p50/p99/max {spread(load['tick_lateness_ms'], 'p50', 'p99', 'max')} ms",
        f"  lag       append returned -> first GET /orders/{{id}} 200, {report['samples']:,} "
        f"orders sampled (1 in {s['sample_every']} placed after the warm-up)",
        f"            p50 / p95 / p99 / max: {spread(lag, 'p50', 'p95', 'p99', 'max')} ms"
        f"   ({report['not_visible']:,} not visible within {DRAIN_TIMEOUT_S:g} s of the end)",
        f"  poll      every {resolution['poll_interval_ms']:g} ms per pending order, at most "
        f"{resolution['max_concurrent_polls']} in flight: {resolution['requests']:,} GETs "
        f"({resolution['requests_per_s']:,.0f}/s), {resolution['polls_per_sample']:g} per sample",
        f"            resolution (last 404 sent -> 200 received) p50/p99 "
        f"{spread(resolution['window_ms'], 'p50', 'p99')} ms; GET latency p50/p99 "
        f"{spread(resolution['get_latency_ms'], 'p50', 'p99')} ms",
    ]
    projector = report["projector"]
    for label, key in (
        ("at the end of the load", "at_end_of_load"),
        ("largest during the load", "largest_during_load"),
        ("after the last sample", "after_last_sample"),
    ):
        view = ", ".join(
            f"{name} {figures['unapplied']:,} ({figures['behind_ms']:,} ms behind)"
            for name, figures in projector[key].items()
        )
        lines.append(f"  projector unapplied events {label}: {view or '-'}")
    window = report["sampling_window"]
    lines.append(
        f"  projector {window['postgres_commits_per_s']:,.0f} Postgres commits/s, "
        f"{window['events_per_commit']:g} events per commit (each projection reads every event)"
    )
    cores = ", ".join(f"{name} {value:.2f}" for name, value in window["cpu_cores"].items())
    lines.append(f"  cores     busy while sampling: {cores or '(run too short)'}")
    t = report["target"]
    verdict = "PASS" if t["passed"] else "FAIL"
    lines += ["", f"{t['description']}: {verdict} ({t['measured']})"]
    return "\n".join(lines)


# --- entry point ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/projection_lag.py",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--rate", type=int, default=TARGET_RATE, help="events/s (2000)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds sampled (30)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_DURATION_S:g} s at {SMOKE_RATE} events/s, for CI",
    )
    parser.add_argument(
        "--sample-every",
        type=int,
        default=SAMPLE_EVERY,
        help=f"poll every Nth order placed ({SAMPLE_EVERY})",
    )
    parser.add_argument(
        "--max-polls",
        type=int,
        default=MAX_CONCURRENT_POLLS,
        help=f"polls in flight at most ({MAX_CONCURRENT_POLLS})",
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    if args.rate < 1 or args.duration <= 0 or args.sample_every < 1 or args.max_polls < 1:
        parser.error("--rate, --duration, --sample-every and --max-polls must be positive")
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM is handled like Ctrl-C: cancel, so every `finally` stops what it started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="orderly-bench-", ignore_cleanup_errors=True) as tmp:
        return await measure_projection_lag(
            Path(tmp),
            rate=args.rate,
            duration_s=args.duration,
            smoke=args.smoke,
            sample_every=args.sample_every,
            max_concurrent_polls=args.max_polls,
        )


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    return run_and_report(lambda: main_async(args), render, args.json)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
