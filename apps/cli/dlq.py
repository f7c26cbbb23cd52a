"""`orderly dlq {ls,show,requeue,drop}`: entries that were delivered too often without success.

A dead letter is named by the id `dlq ls` prints (`<dead-letter stream>/<entry id>`), or by
its entry id alone when that is unambiguous.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import redis.asyncio as aioredis

from cli.bus import run_on_redis, topology
from cli.options import emit, stack_options
from cli.table import table
from eventbus.dead_letters import DeadLetter, DeadLetterNotFound, DeadLetters
from orderly_platform.settings import Settings


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: list, show, requeue or drop them."""


@dlq_group.command("ls")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most N."
)
@stack_options
def ls_command(settings: Settings, as_json: bool, limit: int) -> None:
    """The dead letters, oldest first, with the last line of their error."""
    partitions = topology(settings).all_partitions()
    letters = run_on_redis(settings, lambda redis: DeadLetters(redis, partitions).list(limit))
    summaries = [letter.summary() for letter in letters]
    lines = (
        table(
            ("ID", "STREAM ENTRY", "GROUP", "DELIVERIES", "AT", "ERROR"),
            [
                [
                    letter.address,
                    letter.entry_id,
                    letter.group,
                    str(letter.deliveries),
                    letter.at,
                    str(summary["error"]),
                ]
                for letter, summary in zip(letters, summaries, strict=True)
            ],
        )
        if letters
        else ["no dead letters"]
    )
    emit(as_json, summaries, lines)


@dlq_group.command("show")
@click.argument("dead_letter_id", metavar="ID")
@stack_options
def show_command(settings: Settings, as_json: bool, dead_letter_id: str) -> None:
    """One dead letter in full: its error with traceback and the event."""
    partitions = topology(settings).all_partitions()
    with _known_letter():
        letter = run_on_redis(
            settings, lambda redis: DeadLetters(redis, partitions).show(dead_letter_id)
        )
    details = letter.details()
    lines = [f"{key}: {value}" for key, value in details.items() if key not in {"error", "event"}]
    lines += ["error:", *_indented(letter.error), "event:", *_indented(str(details["event"]))]
    emit(as_json, details, lines)


@dlq_group.command("requeue")
@click.argument("dead_letter_id", metavar="ID")
@stack_options
def requeue_command(settings: Settings, as_json: bool, dead_letter_id: str) -> None:
    """Append the event to its stream again (every group sees a new entry); print its id."""
    partitions = topology(settings).all_partitions()

    async def requeue(redis: aioredis.Redis) -> tuple[DeadLetter, str]:
        dead_letters = DeadLetters(redis, partitions)
        # Resolve first: the full address makes the requeue unambiguous and names the stream.
        letter = await dead_letters.show(dead_letter_id)
        return letter, await dead_letters.requeue(letter.address)

    with _known_letter():
        letter, new_id = run_on_redis(settings, requeue)
    stream = letter.partition.stream
    emit(
        as_json,
        {"id": letter.address, "stream": stream, "entry_id": new_id},
        [f"requeued {letter.address} to {stream} as {new_id}"],
    )


@dlq_group.command("drop")
@click.argument("dead_letter_id", metavar="ID")
@stack_options
def drop_command(settings: Settings, as_json: bool, dead_letter_id: str) -> None:
    """Delete a dead letter for good; print what was dropped."""
    partitions = topology(settings).all_partitions()

    async def drop(redis: aioredis.Redis) -> DeadLetter:
        dead_letters = DeadLetters(redis, partitions)
        letter = await dead_letters.show(dead_letter_id)
        await dead_letters.drop(letter.address)
        return letter

    with _known_letter():
        letter = run_on_redis(settings, drop)
    summary = letter.summary()
    emit(
        as_json,
        summary,
        [
            f"dropped {letter.address}: {letter.stream} entry {letter.entry_id} "
            f"(group {letter.group}, {letter.deliveries} deliveries): {summary['error']}"
        ],
    )


@contextmanager
def _known_letter() -> Iterator[None]:
    try:
        yield
    except DeadLetterNotFound as exc:
        raise click.ClickException(str(exc)) from None


def _indented(text: str) -> list[str]:
    return [f"  {line}" for line in text.rstrip().splitlines()]
