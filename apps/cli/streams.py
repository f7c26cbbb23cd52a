"""`orderly streams`: length, dead letters and consumer-group health of every orderly stream."""

from __future__ import annotations

import click

from cli.bus import run_on_redis, topology
from cli.durations import format_ms
from cli.options import emit, stack_options
from cli.table import table
from eventbus.inspection import StreamState, stream_states
from orderly_platform.settings import Settings

HEADERS = (
    "STREAM",
    "LENGTH",
    "DEAD",
    "GROUP",
    "CONSUMERS",
    "PENDING",
    "LAG",
    "OLDEST PENDING",
    "IDLE",
)


@click.command("streams")
@stack_options
def streams_command(settings: Settings, as_json: bool) -> None:
    """Per stream: length, dead letters; per consumer group: consumers, pending, lag, oldest."""
    partitions = topology(settings).all_partitions()
    states = run_on_redis(settings, lambda redis: stream_states(redis, partitions))
    emit(as_json, states, _lines(states))


def _lines(states: list[StreamState]) -> list[str]:
    if not states:
        return ["no orderly streams yet"]
    rows = []
    for state in states:
        stream = [state.stream, str(state.length), str(state.dead_letters)]
        if not state.groups:
            rows.append([*stream, "-", "", "", "", "", ""])
        for group in state.groups:
            rows.append(
                [
                    *stream,
                    group.name,
                    str(group.consumers),
                    str(group.pending),
                    # Redis cannot compute the lag after entries were deleted from the stream.
                    "?" if group.lag is None else str(group.lag),
                    group.oldest_pending_id or "-",
                    (
                        "-"
                        if group.oldest_pending_idle_ms is None
                        else format_ms(group.oldest_pending_idle_ms)
                    ),
                ]
            )
    return table(HEADERS, rows)
