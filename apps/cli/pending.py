"""`orderly pending`: entries delivered to a consumer group but not acknowledged yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import click
import redis.asyncio as aioredis

from cli.bus import run_on_redis, topology
from cli.durations import Duration, format_ms
from cli.options import emit, stack_options
from cli.table import table
from eventbus.scripts import as_text
from eventbus.topology import Partition
from orderly_platform.settings import Settings


@dataclass(frozen=True)
class PendingEntry:
    stream: str
    group: str
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


async def pending_entries(
    redis: aioredis.Redis,
    partitions: Sequence[Partition],
    *,
    group: str | None = None,
    min_idle_ms: int = 0,
    limit: int = 100,
) -> list[PendingEntry]:
    """XPENDING's extended form for every stream and group, oldest entries first."""
    entries: list[PendingEntry] = []
    for partition in partitions:
        # XINFO GROUPS fails on a missing key; a stream nobody wrote to has no groups anyway.
        if not await redis.exists(partition.stream):
            continue
        for info in await redis.xinfo_groups(partition.stream):
            name = as_text(info["name"])
            if group is not None and name != group:
                continue
            # IDLE filters on the server, so a large backlog of fresh entries is not shipped.
            reply = await redis.xpending_range(
                partition.stream, name, "-", "+", limit, idle=min_idle_ms or None
            )
            entries += [
                PendingEntry(
                    stream=partition.stream,
                    group=name,
                    entry_id=as_text(item["message_id"]),
                    consumer=as_text(item["consumer"]),
                    idle_ms=int(item["time_since_delivered"]),
                    deliveries=int(item["times_delivered"]),
                )
                for item in reply
            ]
    return entries


@click.command("pending")
@click.option("--group", default=None, help="Only this consumer group.")
@click.option(
    "--older-than",
    "older_than_ms",
    type=Duration(),
    default=None,
    help="Only entries idle at least this long: 500ms, 30s, 5m, 1h.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="At most this many entries per stream and group (the oldest).",
)
@stack_options
def pending_command(
    settings: Settings,
    as_json: bool,
    group: str | None,
    older_than_ms: int | None,
    limit: int,
) -> None:
    """Pending entries per stream and group: id, consumer, idle time, deliveries."""
    partitions = topology(settings).all_partitions()
    entries = run_on_redis(
        settings,
        lambda redis: pending_entries(
            redis, partitions, group=group, min_idle_ms=older_than_ms or 0, limit=limit
        ),
    )
    emit(as_json, entries, _lines(entries))


def _lines(entries: list[PendingEntry]) -> list[str]:
    if not entries:
        return ["no pending entries"]
    return table(
        ("STREAM", "GROUP", "ENTRY", "CONSUMER", "IDLE", "DELIVERIES"),
        [
            [e.stream, e.group, e.entry_id, e.consumer, format_ms(e.idle_ms), str(e.deliveries)]
            for e in entries
        ],
    )
