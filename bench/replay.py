"""How fast the read models are rebuilt by replaying history, against raw COPY of their rows.

``./pants run bench/replay.py -- [--events 1000000] [--smoke] [--json PATH]`` starts, in one
run, a real Redis and a real Postgres (durable, as shipped), migrates it, then:

1. generates ``--events`` events of a realistic order mix (``contracts.testing.order_mix``:
   80% confirmed, 8% out of stock, 7% declined, 5% cancelled, a few hundred orders in
   flight) and COPYs them into ``event_archive`` as if the projector had archived them and
   trimming had emptied the streams: a replay has to read all of it from the archive;
2. rebuilds every read model (``projections.rebuild``: archive, then live tail, into fresh
   tables, then the atomic swap), timed end to end: events/s = events / seconds;
3. ceiling: raw asyncpg ``COPY`` of the rows those events produced into empty copies of the
   same tables (same columns and indexes), in the same run: events / COPY seconds. The ratio
   is replay rate / COPY rate: how close decoding, folding and applying the events gets to
   just writing the answer.

Then the projection lag under steady load (``bench.projection_lag``) unless ``--no-lag``.
Targets (from the issue): replay >= 100,000 events/s; lag p99 < 500 ms at 2,000 events/s,
printed as PASS/FAIL; the exit status is 0 either way: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

import migrations
from bench.projection_lag import measure_projection_lag, render
from bench.running import run_and_report
from contracts import encode_envelope
from contracts.testing import order_mix
from eventbus.topology import Topology, category_of
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer, RedisServer
from orderly_platform.logs import configure_logging
from orderly_platform.runtime import tune_gc_for_throughput
from projections.rebuild import RebuildResult, Workers, rebuild
from projections.registry import PROJECTIONS

PARTITIONS = 4
EVENTS_PER_ORDER = 6.5  # the mix's average, to size the order count
TARGET_REPLAY_EVENTS = 100_000
ARCHIVE_COLUMNS = [
    "source", "id", "stream", "entry_ms", "entry_seq", "type", "subject", "time", "payload"
]  # fmt: skip


def archive_rows(events: int, start: datetime) -> Iterator[tuple[Any, ...]]:
    """``events`` archived events, each at a distinct position of its partition's stream."""
    topology = Topology(PARTITIONS)
    first_ms = int(start.timestamp() * 1000)
    orders = int(events / EVENTS_PER_ORDER) + 1
    for n, envelope in enumerate(order_mix(orders, skus=500, customers=20_000, start=start)):
        if n == events:
            return
        stream = topology.partition(category_of(envelope.type), envelope.subject).stream
        yield (
            envelope.source,
            envelope.id,
            stream,
            first_ms + n // 4,
            n % 4,
            envelope.type,
            envelope.subject,
            envelope.time,
            encode_envelope(envelope),
        )


async def fill_archive(postgres_url: str, events: int) -> float:
    """COPY the history into the archive; returns the seconds it took (generation included)."""
    started = time.perf_counter()
    connection = await asyncpg.connect(postgres_url)
    try:
        rows = archive_rows(events, datetime.now(UTC) - timedelta(days=1))
        while chunk := [row for _, row in zip(range(50_000), rows, strict=False)]:
            await connection.copy_records_to_table(
                "event_archive", records=chunk, columns=ARCHIVE_COLUMNS
            )
        await connection.execute("ANALYZE event_archive")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def replay_all(redis_url: str, postgres_url: str, processes: int) -> RebuildResult:
    """Rebuild every rebuildable read model from one replay, as the CLI does."""
    redis = aioredis.Redis.from_url(redis_url)
    engine = create_engine(postgres_url, pool_size=8)
    partitions = Topology(PARTITIONS).all_partitions()
    try:
        rebuildable = [p for p in PROJECTIONS.values() if p.rebuildable]
        workers = Workers(processes, redis_url, postgres_url)
        return await rebuild(redis, engine, rebuildable, partitions, workers=workers)
    finally:
        await redis.aclose()
        await engine.dispose()


async def copy_ceiling(postgres_url: str) -> tuple[float, dict[str, int]]:
    """COPY the rebuilt tables' rows into empty copies of them; seconds, rows per table."""
    connection = await asyncpg.connect(postgres_url)
    counts: dict[str, int] = {}
    elapsed = 0.0
    try:
        for projection in PROJECTIONS.values():
            if not projection.rebuildable:
                continue
            for table in projection.tables:
                copy = f"bench_copy_{table.name}"
                await connection.execute(f"DROP TABLE IF EXISTS {copy}")
                await connection.execute(f"CREATE TABLE {copy} (LIKE {table.name} INCLUDING ALL)")
                rows = await connection.fetch(f"SELECT * FROM {table.name}")
                counts[table.name] = len(rows)
                started = time.perf_counter()
                await connection.copy_records_to_table(copy, records=[tuple(r) for r in rows])
                elapsed += time.perf_counter() - started
                await connection.execute(f"DROP TABLE {copy}")
    finally:
        await connection.close()
    return elapsed, counts


async def run(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orderly-bench-", ignore_cleanup_errors=True) as tmp:
        async with AsyncExitStack() as stack:
            workdir = Path(tmp)
            redis_server, postgres_server = RedisServer(workdir), PostgresServer(workdir)
            stack.push_async_callback(redis_server.stop)
            stack.push_async_callback(postgres_server.stop)
            await asyncio.gather(redis_server.start(), postgres_server.start())
            await migrations.upgrade_async(postgres_server.url)
            print(f"archiving {options.events:,} events of the order mix", flush=True)
            fill_s = await fill_archive(postgres_server.url, options.events)
            print(f"  generated and COPYed in {fill_s:.1f} s; replaying", flush=True)
            result = await replay_all(redis_server.url, postgres_server.url, options.processes)
            copy_s, rows = await copy_ceiling(postgres_server.url)
            report: dict[str, Any] = {
                "events": options.events,
                "processes": options.processes,
                "projections": result.projections,
                "replay_seconds": result.seconds,
                "phases_seconds": result.phases,
                "replay_events_per_s": options.events / result.seconds,
                "copy_seconds": copy_s,
                "copy_events_per_s": options.events / copy_s,
                "rows": rows,
            }
            report["ratio_to_copy"] = report["replay_events_per_s"] / report["copy_events_per_s"]
        if options.lag:
            report["lag"] = await measure_projection_lag(
                Path(tmp), rate=options.rate, duration_s=options.duration, smoke=options.smoke
            )
    return report


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"replay of {report['events']:,} events into the read models, "
        f"{report['processes']} replay process(es)"
    ]
    phases = ", ".join(f"{name} {s:.2f} s" for name, s in report["phases_seconds"].items())
    lines.append(
        f"  {', '.join(report['projections'])}: {report['replay_seconds']:.2f} s "
        f"({report['replay_events_per_s']:,.0f} events/s; {phases})"
    )
    rows = ", ".join(f"{n:,} {t}" for t, n in report["rows"].items())
    lines.append(
        f"raw COPY of the resulting rows ({rows}): {report['copy_seconds']:.2f} s "
        f"({report['copy_events_per_s']:,.0f} events/s)"
    )
    lines.append(f"ratio replay / COPY: {report['ratio_to_copy']:.2f}x")
    ok = report["replay_events_per_s"] >= TARGET_REPLAY_EVENTS
    lines.append(
        f"target replay >= {TARGET_REPLAY_EVENTS:,} events/s: "
        f"{report['replay_events_per_s']:,.0f} {'PASS' if ok else 'FAIL'}"
    )
    if "lag" in report:
        lines.append(render(report["lag"]))
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument(
        "--processes", type=int, default=2, help="replay processes (as `projections rebuild`)"
    )
    parser.add_argument("--no-lag", dest="lag", action="store_false", help="skip the lag part")
    parser.add_argument("--rate", type=int, default=2_000, help="lag part: events/s")
    parser.add_argument("--duration", type=float, default=30.0, help="lag part: seconds")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    options = parser.parse_args(argv)
    if options.smoke:
        options.events = min(options.events, 5_000)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(os.environ.get("ORDERLY_LOG_LEVEL", "WARNING"), "console")
    tune_gc_for_throughput()  # as `orderly projections rebuild` does
    return run_and_report(lambda: run(options), render_report, options.json)


if __name__ == "__main__":
    sys.exit(main())
