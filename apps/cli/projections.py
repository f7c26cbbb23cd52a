"""`orderly projections status|rebuild`: how far behind each read model is, and rebuilding one."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.bus import run_on_redis, topology
from cli.durations import format_ms
from cli.options import emit, stack_options
from cli.postgres import read_model_engine
from cli.table import table
from orderly_platform.runtime import tune_gc_for_throughput
from orderly_platform.settings import Settings
from orderly_platform.stack_file import require_endpoint
from projections.rebuild import (
    Difference,
    RebuildRefused,
    RebuildResult,
    Workers,
    events_to_replay,
    rebuild,
    verify,
)
from projections.registry import PROJECTIONS
from projections.status import ProjectionLag, projection_lag

T = TypeVar("T")
REBUILDABLE = [name for name, projection in PROJECTIONS.items() if projection.rebuildable]


@click.group("projections")
def projections_group() -> None:
    """Read models in Postgres: their lag, and rebuilding one from the events."""


@projections_group.command("status")
@stack_options
def status_command(settings: Settings, as_json: bool) -> None:
    """Per projection: events not applied yet and how long the oldest has waited."""
    partitions = topology(settings).all_partitions()

    async def lags(redis: aioredis.Redis, engine: AsyncEngine) -> list[ProjectionLag]:
        return [await projection_lag(redis, engine, name, partitions) for name in PROJECTIONS]

    result = _on_read_models(settings, lags)
    rows = [[lag.projection, str(lag.unapplied), format_ms(lag.behind_ms)] for lag in result]
    emit(as_json, result, table(("PROJECTION", "UNAPPLIED", "OLDEST WAITING"), rows))


@projections_group.command("rebuild")
@click.argument("names", metavar="NAME...", nargs=-1, required=True, type=click.Choice(REBUILDABLE))
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=min(os.cpu_count() or 1, 4),
    show_default=True,
    help="Replay the stream partitions in this many processes at once.",
)
@stack_options
def rebuild_command(
    settings: Settings, as_json: bool, names: tuple[str, ...], processes: int
) -> None:
    """Replay every event into fresh tables for each NAME, then swap them in.

    The live tables keep serving, and the projector keeps updating them, until the swap,
    which is atomic. Several names share one replay. The archive itself is the source of
    every replay and is not rebuilt.
    """
    tune_gc_for_throughput()
    partitions = topology(settings).all_partitions()
    chosen = [PROJECTIONS[name] for name in dict.fromkeys(names)]
    label = ", ".join(p.name for p in chosen)

    async def run(redis: aioredis.Redis, engine: AsyncEngine) -> RebuildResult:
        total = await events_to_replay(redis, engine, partitions)
        # On stderr, so that --json output stays parseable.
        with click.progressbar(
            length=total, label=f"rebuilding {label}", file=sys.stderr, show_pos=True
        ) as bar:
            return await rebuild(
                redis,
                engine,
                chosen,
                partitions,
                on_progress=bar.update,
                workers=Workers(
                    processes,
                    require_endpoint(settings, "redis"),
                    require_endpoint(settings, "postgres"),
                ),
            )

    try:
        result = _on_read_models(settings, run)
    except RebuildRefused as exc:
        raise click.ClickException(str(exc)) from None
    rate = result.events / result.seconds if result.seconds else 0.0
    emit(
        as_json,
        result,
        [
            f"rebuilt {label} from {result.events:,} events in {result.seconds:.1f} s "
            f"({rate:,.0f} events/s); the new tables are live"
        ],
    )


@projections_group.command("verify")
@click.argument("names", metavar="[NAME]...", nargs=-1, type=click.Choice(REBUILDABLE))
@stack_options
def verify_command(settings: Settings, as_json: bool, names: tuple[str, ...]) -> None:
    """Compare each read model (all by default) with a fresh replay of the events, row for
    row, without changing it; exits non-zero when one differs (then rebuild it)."""
    partitions = topology(settings).all_partitions()
    chosen = [PROJECTIONS[name] for name in dict.fromkeys(names or REBUILDABLE)]

    async def run(redis: aioredis.Redis, engine: AsyncEngine) -> list[Difference]:
        return await verify(redis, engine, chosen, partitions)

    try:
        differences = _on_read_models(settings, run)
    except RebuildRefused as exc:
        raise click.ClickException(str(exc)) from None
    lines = [f"{p.name}: equal to a fresh replay" for p in chosen]
    if differences:
        lines = [
            f"{d.projection}.{d.table}: {d.only_live} rows only live, {d.only_replayed} only in"
            f" the replay (e.g. {', '.join(d.examples)})"
            for d in differences
        ]
    emit(as_json, {"equal": not differences, "differences": differences}, lines)
    if differences:
        raise SystemExit(1)


def _on_read_models(
    settings: Settings, work: Callable[[aioredis.Redis, AsyncEngine], Awaitable[T]]
) -> T:
    """Run ``work`` with the stack's Redis and read-model database; failures as one line."""

    async def with_engine(redis: aioredis.Redis) -> T:
        # A Postgres failure is reported inside, so that bus.run_on_redis does not report it
        # as Redis' failure.
        async with read_model_engine(settings) as engine:
            return await work(redis, engine)

    return run_on_redis(settings, with_engine)
