"""How fast the event backbone takes events in and hands them out, each against its ceiling.

``./pants run bench/publish.py -- [--duration 15] [--smoke] [--json PATH]`` starts, in one run,
a real Redis (``RedisServer``, AOF ``everysec`` as shipped), the real order service as its own
process (``python -m order_service``, 4 partitions) and a null aiohttp server, then measures:

(a) single-event ``POST /events`` (structured mode), wrk with keep-alive over 64 connections.
    Ceiling: (c). Both are one Python process on the default asyncio loop behind aiohttp,
    driven by the same wrk script and settings, so the ratio is what the order service's own
    work (auth, CloudEvents decoding and validation, the append round trip to Redis, the JSON
    answer) costs against the HTTP framework alone on the same machine in the same run.
(b) batched ``POST /events`` (``application/cloudevents-batch+json``), 100 events a request.
    Ceiling: (d). Per-request HTTP cost is spread over 100 events, so what is left is decoding
    events and appending them; the fastest an event can get into a stream from Python is a
    pipelined XADD of the same payload, so that is the bound (a generous one: the append script
    also deduplicates and versions every event and raises its SKU's live catalog copy, seven
    Redis commands instead of one).
(c) a null aiohttp handler (``bench.null_server``): reads the body and answers 202.
(d) raw pipelined XADD from redis.asyncio: pipelines of 100, non-transactional, 4 at a time,
    each event the size of one encoded StockReceived envelope.
(e) consumer-group throughput: N events pre-filled with ``EventAppender.append_batch`` (batches
    of 1,000; reported too, against (d)), then ``StreamConsumer`` (batch 1,000, block 100 ms)
    with a no-op handler, and again with a handler that decodes every envelope.
(f) ``POST /orders``, one item of one of 1,000 catalogued SKUs a request, each request with an
    Idempotency-Key of its own. Ceiling: (a), the same HTTP, auth and single append; what is
    left is the pipelined read of the key's record and the catalog copy, pricing, and the
    claim of the key's record in the append.

Every HTTP event has a unique CloudEvents id and every order a unique Idempotency-Key (dedupe
would otherwise turn repeats into no-ops), and after each HTTP run the streams must have grown
by the number of accepted events wrk counted: the run fails loudly on any error status or a mismatch. Targets (from the issue):
single-event HTTP >= 0.5x the null handler, batches >= 50,000 events/s, consumer group
>= 50,000 events/s with a no-op handler; they are printed as PASS/FAIL, and the exit status is
0 either way: this is a benchmark, not a test. The machines are shared and noisy, so compare
ratios measured in one run rather than absolute figures across runs.

Beside each figure: wrk's p50/p99 latency and the cores each process (and the whole machine)
kept busy, which says whether a figure is bound by the service's one Python core, by Redis or
by the machine. The order service runs on this process's ``sys.path``; the BUILD file adds the
declared ``hiredis`` parser to it, as the venv of ``./orderly up`` has it (the header says
which parser was used).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

from bench.running import BenchmarkFailed, run_and_report
from bench.wrk import Mode, WrkResult, WrkSettings, run_wrk, write_script
from contracts import (
    CatalogItemUpdated,
    EventEnvelope,
    StockReceived,
    encode_envelope,
    new_envelope,
)
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.topology import CATALOG, ORDERS, Partition, Topology
from inventory.catalog_copy import catalog_side_writes
from orderly_platform.embedded import PythonService, RedisServer
from orderly_platform.logs import configure_logging

PARTITIONS = 4
BATCH_EVENTS = 100
RAW_PIPELINE = 100
RAW_CONCURRENCY = 4
PREFILL_BATCH = 1_000
CATALOG_SKUS = 1_000
CONSUMER_BATCH = 1_000
CONSUMER_BLOCK_MS = 100

TARGET_SINGLE_RATIO = 0.5
TARGET_BATCH_EVENTS = 50_000
TARGET_CONSUMER_EVENTS = 50_000


# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration_s: int
    connections: int
    threads: int
    consumer_events: int
    raw_xadds: int
    smoke: bool
    json_path: Path | None


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/publish.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run (15)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--consumer-events", type=int, default=200_000, help="events pre-filled for (e) (200000)"
    )
    parser.add_argument(
        "--raw-xadds", type=int, default=200_000, help="XADDs for the raw ceiling (200000)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run (2 s wrk, 5,000 consumer events) for CI"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.connections < args.threads:
        parser.error("--connections must be at least --threads, which must be at least 1")
    if args.duration < 1 or args.consumer_events < 1 or args.raw_xadds < 1:
        parser.error("--duration, --consumer-events and --raw-xadds must be positive")
    return Options(
        duration_s=2 if args.smoke else args.duration,
        connections=args.connections,
        threads=args.threads,
        consumer_events=5_000 if args.smoke else args.consumer_events,
        raw_xadds=20_000 if args.smoke else args.raw_xadds,
        smoke=args.smoke,
        json_path=args.json,
    )


# --- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    label: str
    rate: float
    unit: str = "events/s"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    figure: str
    ceiling: str
    ceiling_label: str


@dataclass(frozen=True)
class TargetResult:
    description: str
    measured: str
    passed: bool


COMPARISONS = [
    Comparison("single_http", "null_handler", "null handler"),
    Comparison("orders_http", "single_http", "single-event POST /events"),
    Comparison("batched_http", "raw_xadd", "raw pipelined XADD"),
    Comparison("appender", "raw_xadd", "raw pipelined XADD"),
    Comparison("consumer_decode", "consumer_noop", "no-op consumer"),
]


@dataclass(frozen=True)
class StreamCheck:
    """Did the streams grow by exactly what wrk says was accepted?

    Requests still in flight when wrk stops are not counted by wrk but may be appended by the
    service, so up to one request per connection (plus one per socket error) may be extra.
    """

    grown: int
    counted: int
    allowance: int

    @property
    def ok(self) -> bool:
        return self.counted <= self.grown <= self.counted + self.allowance

    def describe(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (
            f"streams grew by {self.grown:,} events; wrk counted {self.counted:,} accepted "
            f"(+{self.grown - self.counted:,} from requests in flight at the stop, at most "
            f"{self.allowance:,} allowed): {verdict}"
        )


# --- CPU use --------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores, all processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores each process (and the machine) kept busy while a measurement ran."""

    def __init__(self, processes: dict[str, int | None]) -> None:
        self.processes = {name: pid for name, pid in processes.items() if pid is not None}
        self._start: dict[str, float] = {}
        self._started = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {name: process_cpu_s(pid) for name, pid in self.processes.items()}
        sample["machine"] = machine_busy_s()
        return sample

    def start(self) -> None:
        self._start = self._sample()
        self._started = time.monotonic()

    def cores(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._started
        if elapsed < 1.0:  # CPU time is counted in 10 ms ticks: too coarse for short runs
            return {}
        end = self._sample()
        return {name: round((end[name] - self._start[name]) / elapsed, 2) for name in end}


# --- the servers ---------------------------------------------------------------------------


@dataclass
class Stack:
    redis: RedisServer
    order_service: PythonService
    null_server: PythonService
    client: aioredis.Redis
    token: str
    workdir: Path
    wrk_script: Path
    run_id: str

    def cpu_meter(self, *names: str) -> CpuMeter:
        pids = {
            "bench": os.getpid(),
            "order-service": self.order_service.process.pid,
            "null-server": self.null_server.process.pid,
            "redis": self.redis.process.pid,
        }
        return CpuMeter({name: pids[name] for name in names})


async def start_stack(exit_stack: AsyncExitStack, workdir: Path) -> Stack:
    """Start Redis, the order service and the null server; `exit_stack` stops them all."""
    redis_server = RedisServer(workdir)
    exit_stack.push_async_callback(redis_server.stop)
    await redis_server.start()
    token = secrets.token_urlsafe(16)
    order_service = PythonService(
        "order-service",
        "order_service",
        workdir,
        env={
            "ORDERLY_REDIS_URL": redis_server.url,
            "ORDERLY_API_TOKEN": token,
            "ORDERLY_STREAM_PARTITIONS": str(PARTITIONS),
            "ORDERLY_LOG_LEVEL": "WARNING",
        },
    )
    exit_stack.push_async_callback(order_service.stop)
    null_server = PythonService("null-server", "bench.null_server", workdir, env={})
    exit_stack.push_async_callback(null_server.stop)
    await asyncio.gather(order_service.start(), null_server.start())
    client = aioredis.Redis.from_url(redis_server.url)
    exit_stack.push_async_callback(client.aclose)
    return Stack(
        redis=redis_server,
        order_service=order_service,
        null_server=null_server,
        client=client,
        token=token,
        workdir=workdir,
        wrk_script=write_script(workdir),
        run_id=secrets.token_hex(4),
    )


# --- HTTP: (a), (b), (c) -------------------------------------------------------------------


def catalog_partitions() -> list[Partition]:
    return Topology(PARTITIONS).partitions_of(CATALOG)


async def category_length(client: aioredis.Redis, category: str) -> int:
    async with client.pipeline(transaction=False) as pipe:
        for partition in Topology(PARTITIONS).partitions_of(category):
            pipe.xlen(partition.stream)
        lengths = await pipe.execute()
    return sum(int(length) for length in lengths)


async def settled_length(client: aioredis.Redis, category: str, timeout_s: float = 10.0) -> int:
    """The category's length once requests still in flight at wrk's stop have landed."""
    deadline = time.monotonic() + timeout_s
    previous = await category_length(client, category)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        current = await category_length(client, category)
        if current == previous:
            return current
        previous = current
    return previous


def wrk_details(result: WrkResult, events_per_request: int) -> dict[str, Any]:
    return {
        **asdict(result),
        "requests_per_s": result.requests_per_s,
        "events_per_request": events_per_request,
    }


def refuse_errors(label: str, result: WrkResult) -> None:
    if result.error_statuses:
        raise BenchmarkFailed(
            f"{label}: wrk reported {result.error_statuses:,} Non-2xx or 3xx responses out of "
            f"{result.requests:,}: the figure measures errors, not appends. See the service log."
        )
    if result.requests == 0:
        raise BenchmarkFailed(f"{label}: wrk completed no request at all")


async def measure_null_handler(stack: Stack, settings: WrkSettings) -> Figure:
    label = "null aiohttp handler"
    announce(label, f"{settings.duration_s} s")
    meter = stack.cpu_meter("null-server")
    meter.start()
    result = await run_wrk(
        f"{stack.null_server.url}/events",
        stack.wrk_script,
        settings,
        mode="single",
        events_per_request=1,
        token=stack.token,
        id_prefix=f"null-{stack.run_id}",
    )
    cpu = meter.cores()
    refuse_errors(label, result)
    details = {**wrk_details(result, 1), "cpu_cores": cpu}
    return Figure(label, result.requests_per_s, unit="req/s", details=details)


async def measure_events_endpoint(
    stack: Stack, settings: WrkSettings, *, label: str, mode: Mode, events_per_request: int
) -> Figure:
    """(a), (b) and (f): every accepted request must have appended its events, no more."""
    announce(label, f"{settings.duration_s} s")
    category, path = (ORDERS, "/orders") if mode == "orders" else (CATALOG, "/events")
    before = await category_length(stack.client, category)
    meter = stack.cpu_meter("order-service", "redis")
    meter.start()
    result = await run_wrk(
        f"{stack.order_service.url}{path}",
        stack.wrk_script,
        settings,
        mode=mode,
        events_per_request=events_per_request,
        token=stack.token,
        id_prefix=f"{mode}-{stack.run_id}",
    )
    cpu = meter.cores()
    refuse_errors(label, result)
    check = StreamCheck(
        grown=await settled_length(stack.client, category) - before,
        counted=result.accepted * events_per_request,
        allowance=(settings.connections + result.socket_errors) * events_per_request,
    )
    print(f"    check: {check.describe()}", flush=True)
    if not check.ok:
        raise BenchmarkFailed(f"{label}: {check.describe()}")
    details = wrk_details(result, events_per_request)
    details["stream_check"] = {**asdict(check), "ok": check.ok}
    details["cpu_cores"] = cpu
    return Figure(label, result.requests_per_s * events_per_request, details=details)


async def fill_catalog(stack: Stack) -> None:
    """Price SKU-0 .. SKU-999 for (f), through the appends PUT /catalog makes."""
    topology = Topology(PARTITIONS)
    envelopes = [
        new_envelope(
            CatalogItemUpdated(sku=f"SKU-{n}", price=100 + n, currency="EUR", on_hand=1_000_000),
            source="/bench/catalog",
            subject=f"SKU-{n}",
        )
        for n in range(CATALOG_SKUS)
    ]
    await EventAppender(stack.client, topology).append_batch(
        [PendingAppend(e, side_writes=catalog_side_writes(e, topology)) for e in envelopes]
    )


# --- Redis: (d) and (e) --------------------------------------------------------------------


def stock_envelope(n: int) -> EventEnvelope:
    sku = f"SKU-{n % 1000}"
    return new_envelope(
        StockReceived(sku=sku, quantity=1, warehouse="bench"), source="/bench/prefill", subject=sku
    )


async def measure_raw_xadd(stack: Stack, total: int) -> Figure:
    label = "raw pipelined XADD"
    announce(label, f"{total:,} XADDs")
    payload = encode_envelope(stock_envelope(0))
    streams = [f"bench:raw:{{{index}}}" for index in range(RAW_CONCURRENCY)]
    pipelines = max(1, total // (RAW_PIPELINE * RAW_CONCURRENCY))
    client = aioredis.Redis.from_url(stack.redis.url, max_connections=RAW_CONCURRENCY)
    try:

        async def fill(stream: str) -> None:
            for _ in range(pipelines):
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(RAW_PIPELINE):
                        pipe.xadd(stream, {"event": payload})
                    await pipe.execute()

        meter = stack.cpu_meter("bench", "redis")
        meter.start()
        started = time.perf_counter()
        await asyncio.gather(*(fill(stream) for stream in streams))
        elapsed = time.perf_counter() - started
        cpu = meter.cores()
        written = sum([int(await client.xlen(stream)) for stream in streams])
        await client.delete(*streams)
    finally:
        await client.aclose()
    expected = pipelines * RAW_PIPELINE * RAW_CONCURRENCY
    if written != expected:
        raise BenchmarkFailed(f"{label}: {written:,} entries written, expected {expected:,}")
    details = {
        "xadds": written,
        "seconds": elapsed,
        "payload_bytes": len(payload),
        "pipeline": RAW_PIPELINE,
        "concurrent_pipelines": RAW_CONCURRENCY,
        "cpu_cores": cpu,
    }
    return Figure(label, written / elapsed, unit="XADD/s", details=details)


async def measure_appender(stack: Stack, total: int) -> Figure:
    """Pre-fill for (e), timed: the append script in-process, without HTTP."""
    label = f"EventAppender.append_batch ({PREFILL_BATCH:,}/call)"
    announce(label, f"{total:,} events")
    appender = EventAppender(stack.client, Topology(PARTITIONS))
    elapsed = 0.0
    appended = 0
    for offset in range(0, total, PREFILL_BATCH):
        batch = [
            PendingAppend(stock_envelope(n))
            for n in range(offset, min(total, offset + PREFILL_BATCH))
        ]
        started = time.perf_counter()
        results = await appender.append_batch(batch)
        elapsed += time.perf_counter() - started
        appended += sum(1 for result in results if not result.duplicate)
    if appended != total:
        raise BenchmarkFailed(f"{label}: {appended:,} of {total:,} events appended")
    return Figure(label, total / elapsed, details={"events": total, "seconds": elapsed})


def consumer_for(
    stack: Stack, group: str, handler: Callable[[Sequence[StreamEntry]], Awaitable[None]]
) -> StreamConsumer:
    config = ConsumerConfig(
        group=group,
        consumer="bench-1",
        batch_size=CONSUMER_BATCH,
        block_ms=CONSUMER_BLOCK_MS,
        start_id="$",  # created before the pre-fill: exactly the pre-filled events
    )
    return StreamConsumer(stack.client, catalog_partitions(), handler, config)


async def ignore(entries: Sequence[StreamEntry]) -> None:
    return None


async def decode_all(entries: Sequence[StreamEntry]) -> None:
    for entry in entries:
        entry.envelope()


async def measure_consumer(
    stack: Stack, consumer: StreamConsumer, label: str, expected: int
) -> Figure:
    announce(label, f"{expected:,} events")
    timeout_s = 60 + expected / 1_000
    meter = stack.cpu_meter("bench", "redis")
    meter.start()
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    try:
        while consumer.stats.processed < expected:
            if task.done():
                task.result()
                raise BenchmarkFailed(f"{label}: the consumer stopped before the end")
            if time.perf_counter() - started > timeout_s:
                raise BenchmarkFailed(
                    f"{label}: {consumer.stats.processed:,} of {expected:,} after {timeout_s:.0f} s"
                )
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        cpu = meter.cores()
    finally:
        consumer.stop()
        await stop_task(task)
    pending = await pending_count(consumer)
    if consumer.stats.processed != expected or pending:
        raise BenchmarkFailed(
            f"{label}: processed {consumer.stats.processed:,} of {expected:,}, {pending} pending"
        )
    details = {
        "events": expected,
        "seconds": elapsed,
        "batch_size": CONSUMER_BATCH,
        "cpu_cores": cpu,
    }
    return Figure(label, expected / elapsed, details=details)


async def stop_task(task: asyncio.Task[None]) -> None:
    """Let a stopped consumer finish its batch; cancel it if it does not within 5 s."""
    done, _ = await asyncio.wait({task}, timeout=5)
    if not done:
        task.cancel()
        await asyncio.wait({task})


async def pending_count(consumer: StreamConsumer) -> int:
    total = 0
    for partition in consumer.partitions:
        summary = await consumer.redis.xpending(partition.stream, consumer.config.group)
        total += int(summary["pending"])
    return total


async def measure_consumers(stack: Stack, total: int) -> dict[str, Figure]:
    noop = consumer_for(stack, "bench", ignore)
    decoding = consumer_for(stack, "bench-decode", decode_all)
    await noop.ensure_groups()
    await decoding.ensure_groups()
    appender = await measure_appender(stack, total)
    return {
        "appender": appender,
        "consumer_noop": await measure_consumer(
            stack, noop, "consumer group, no-op handler", total
        ),
        "consumer_decode": await measure_consumer(
            stack, decoding, "consumer group, decoding handler", total
        ),
    }


# --- the run -------------------------------------------------------------------------------


def announce(label: str, size: str) -> None:
    print(f"  measuring {label} ({size}) ...", flush=True)


async def measure_all(stack: Stack, options: Options) -> dict[str, Figure]:
    settings = WrkSettings(options.duration_s, options.connections, options.threads)
    figures = {"null_handler": await measure_null_handler(stack, settings)}
    figures["single_http"] = await measure_events_endpoint(
        stack, settings, label="single-event POST /events", mode="single", events_per_request=1
    )
    figures["batched_http"] = await measure_events_endpoint(
        stack,
        settings,
        label=f"batched POST /events ({BATCH_EVENTS}/request)",
        mode="batch",
        events_per_request=BATCH_EVENTS,
    )
    await fill_catalog(stack)
    figures["orders_http"] = await measure_events_endpoint(
        stack, settings, label="POST /orders (1 item)", mode="orders", events_per_request=1
    )
    figures["raw_xadd"] = await measure_raw_xadd(stack, options.raw_xadds)
    figures.update(await measure_consumers(stack, options.consumer_events))
    return figures


async def run(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orderly-bench-", ignore_cleanup_errors=True) as tmp:
        async with AsyncExitStack() as exit_stack:
            machine_info = {**machine(), "load_average_at_start": load_average()}
            print(f"starting redis, order service and null server under {tmp}", flush=True)
            stack = await start_stack(exit_stack, Path(tmp))
            try:
                figures = await measure_all(stack, options)
            except Exception:
                print_log_tails(stack)
                raise
            machine_info["redis"] = (await stack.client.info("server"))["redis_version"]
            machine_info["load_average_at_end"] = load_average()
            print("stopping servers", flush=True)
        return build_report(options, figures, machine_info)


def print_log_tails(stack: Stack) -> None:
    for service in (stack.order_service, stack.null_server):
        tail = service.process.log_tail().strip()
        if tail:
            print(f"--- {service.name} log ({service.process.log_path}) ---\n{tail}", flush=True)


# --- report --------------------------------------------------------------------------------


def ratio(figures: dict[str, Figure], comparison: Comparison) -> float:
    return figures[comparison.figure].rate / figures[comparison.ceiling].rate


def evaluate_targets(figures: dict[str, Figure]) -> list[TargetResult]:
    single = figures["single_http"].rate / figures["null_handler"].rate
    batched = figures["batched_http"].rate
    consumer = figures["consumer_noop"].rate
    return [
        TargetResult(
            f"single-event HTTP >= {TARGET_SINGLE_RATIO}x null handler",
            f"{single:.2f}x",
            single >= TARGET_SINGLE_RATIO,
        ),
        TargetResult(
            f"batched HTTP >= {TARGET_BATCH_EVENTS:,} events/s",
            f"{batched:,.0f} events/s",
            batched >= TARGET_BATCH_EVENTS,
        ),
        TargetResult(
            f"consumer group, no-op handler >= {TARGET_CONSUMER_EVENTS:,} events/s",
            f"{consumer:,.0f} events/s",
            consumer >= TARGET_CONSUMER_EVENTS,
        ),
    ]


def machine() -> dict[str, Any]:
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory": memory,
        "python": platform.python_version(),
        # The order service runs on the same sys.path as this process, so it parses alike.
        "redis_parser": "hiredis" if HIREDIS_AVAILABLE else "python",
    }


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def build_report(
    options: Options, figures: dict[str, Figure], machine_info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "figures": {key: asdict(figure) for key, figure in figures.items()},
        "comparisons": [
            {**asdict(c), "ratio": ratio(figures, c)} for c in COMPARISONS if c.figure in figures
        ],
        "targets": [asdict(target) for target in evaluate_targets(figures)],
    }


def format_rate(figure: dict[str, Any]) -> str:
    return f"{figure['rate']:,.0f} {figure['unit']}"


def latency(figure: dict[str, Any]) -> str:
    details = figure["details"]
    if "latency_p50_us" not in details:
        return ""
    p50, p99 = details["latency_p50_us"] / 1000, details["latency_p99_us"] / 1000
    return f"{p50:.1f} / {p99:.1f} ms"


def cpu(figure: dict[str, Any]) -> str:
    cores = figure["details"].get("cpu_cores", {})
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items())


def render(report: dict[str, Any]) -> str:
    figures = report["figures"]
    ceilings = {c["figure"]: c for c in report["comparisons"]}
    m = report["machine"]
    o = report["options"]
    lines = [
        "",
        f"Event backbone (bench/publish), {report['date']}: {m['nproc']} cores, {m['memory']}, "
        f"load average {m['load_average_at_start']} at start; Redis {m['redis']}, "
        f"Python {m['python']}, redis-py parser {m['redis_parser']}; "
        f"wrk {o['threads']} threads x {o['connections']} connections x {o['duration_s']} s",
        "",
        f"  {'figure':<40} {'rate':>16}  {'ceiling':<36} {'ratio':>5}  {'p50 / p99':<16} "
        "CPU (cores busy)",
    ]
    for key, figure in figures.items():
        comparison = ceilings.get(key)
        ceiling, ratio_text = "", ""
        if comparison:
            ceiling_figure = figures[comparison["ceiling"]]
            ceiling = f"{comparison['ceiling_label']} ({format_rate(ceiling_figure)})"
            ratio_text = f"{comparison['ratio']:.2f}x"
        lines.append(
            f"  {figure['label']:<40} {format_rate(figure):>16}  {ceiling:<36} {ratio_text:>5}  "
            f"{latency(figure):<16} {cpu(figure)}".rstrip()
        )
    lines += ["", "Targets (the exit status is 0 either way):"]
    for target in report["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(f"  {verdict}  {target['description']}: {target['measured']}")
    return "\n".join(lines)


# --- entry point ---------------------------------------------------------------------------


async def main_async(options: Options) -> dict[str, Any]:
    # SIGTERM is handled like Ctrl-C: cancel, so every `finally` stops what it started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(options)


def main(argv: Sequence[str]) -> int:
    options = parse_args(argv)
    configure_logging("WARNING", "console")
    return run_and_report(lambda: main_async(options), render, options.json_path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
