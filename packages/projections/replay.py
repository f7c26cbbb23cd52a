"""Replay a stream partition: the archive, then the live tail, with no gap and no duplicate.

Redis keeps only the recent tail of a stream; older entries live in ``event_archive``. The
two overlap, and while a replay runs, events keep arriving, the archive keeps filling and
trimming keeps cutting the stream's head. The reader therefore works from snapshots:

1. One MULTI reads, at a single instant, the next page of the stream after the last
   position replayed and the stream's first remaining entry F.
2. Every entry between the last position and F is gone from Redis; trimming only removes
   what is already archived, so the archive holds all of them: read those from it.
3. Then the page itself, which starts at F or later.

Positions only move forward, each step reads strictly after the last one, so nothing comes
twice; and what lies between the last position and the next page is always in one of the
two sources at the instant of the snapshot, so nothing is skipped.

Not every entry in Redis is history: a dead letter requeued for a group other than the
archive is a second copy of an event (see ``requeued_copy_is_history``), and an entry that
cannot be decoded was dead-lettered by every consumer; a replay skips both.

Entries are grouped by partition because that is the order every projection relies on: an
order's events all live in one partition, as do a SKU's catalog events.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Collection

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContractError
from eventbus.scripts import as_text
from eventbus.topology import Partition
from orderly_platform.logs import get_logger
from projections.archive import ARCHIVE
from projections.positions import BEGINNING, StreamPosition
from projections.recorded import Recorded
from projections.tables import event_archive

log = get_logger(__name__)

PAGE = 5_000


async def replay(
    redis: aioredis.Redis,
    connection: AsyncConnection,
    partition: Partition,
    *,
    after: StreamPosition = BEGINNING,
    until: StreamPosition | None = None,
    page: int = PAGE,
    payloads_of: Collection[str] | None = None,
) -> AsyncIterator[list[Recorded]]:
    """Batches of the partition's events after ``after`` (up to ``until``), in stream order.

    Without ``until`` it ends once it has caught up with the stream as of its last snapshot.
    With ``payloads_of`` (event names), events read from the archive carry their payload
    only if named there (the others carry empty bytes: their attributes are all a reader
    gets, and decoding their data fails loudly).
    """
    stream = partition.stream
    last = after
    while until is None or last < until:
        async with redis.pipeline(transaction=True) as snapshot:
            snapshot.xrange(stream, f"({last}", str(until) if until else "+", count=page)
            snapshot.xrange(stream, "-", "+", count=1)
            tail, head = await snapshot.execute()
        first = StreamPosition.parse(as_text(head[0][0])) if head else None
        if first is None or first > last:
            # Trimmed (or never kept): [last, first) comes from the archive.
            bound: StreamPosition | None = first
            inclusive = False
            if until is not None and (first is None or first > until):
                bound, inclusive = until, True
            archived = _archived(
                connection,
                stream,
                last,
                bound,
                inclusive=inclusive,
                page=page,
                payloads_of=payloads_of,
            )
            async for batch in archived:
                last = batch[-1].position
                yield batch
        if tail:
            batch = _history_in(stream, tail)
            # Past the whole page, skipped entries included, or the next step reads it again.
            last = StreamPosition.parse(as_text(tail[-1][0]))
            if batch:
                yield batch
        if len(tail) < page:
            return  # caught up with the snapshot: what came since is for the next replay


def _history_in(stream: str, tail: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Recorded]:
    """The entries of a page read from Redis that belong to the stream's history."""
    records = []
    for entry_id, fields in tail:
        requeued_for = fields.get(b"requeued_for")
        if requeued_for is not None and not requeued_copy_is_history(as_text(requeued_for)):
            continue
        position = StreamPosition.parse(as_text(entry_id))
        try:
            # No "event" field decodes as empty bytes and fails, as it does in a consumer.
            records.append(Recorded.decode(stream, position, fields.get(b"event", b"")))
        except ContractError as exc:
            # Live consumers dead-letter such an entry, so no projection ever applied it and
            # the archive never held it: a replay leaves it out too, rather than failing.
            log.warning(
                "replay skips an undecodable entry",
                stream=stream,
                entry_id=str(position),
                error=str(exc),
            )
    return records


def requeued_copy_is_history(requeued_for: str) -> bool:
    """Whether a dead letter requeued for the group ``requeued_for`` (a new stream entry, a
    copy of an event whose original entry is older) belongs to the history replays yield.

    Requeued for the archive: the archive dead-lettered the original, so it never held it,
    and trimming has passed it since, so the copy is the only record of the event there is.
    (Trimming passes it once the archive has applied a later entry of the partition; in a
    partition quiet since, that is the copy itself, and a replay between the requeue and
    the next trim meets the original and the copy both.)
    Requeued for any other group: the original is archived (or still in the stream) and is
    the historical record; the copy only redelivers it to that group (the others ack it
    unhandled), so a replay yielding it too would apply the event twice.
    """
    return requeued_for == ARCHIVE.name


# Keyset pages in stream order, served by the event_archive_position index. Run on the driver
# connection: at a million rows, building SQLAlchemy rows costs as much as the query.
_ARCHIVED = """
    SELECT entry_ms, entry_seq, {payload}, source, id, type, subject, time
    FROM {table}
    WHERE stream = $1 AND (entry_ms, entry_seq) > ($2, $3) {bound}
    ORDER BY entry_ms, entry_seq LIMIT $4
"""
_BOUNDS = {
    None: "",
    False: "AND (entry_ms, entry_seq) < ($5, $6)",
    True: "AND (entry_ms, entry_seq) <= ($5, $6)",
}


@functools.cache
def _archived_query(inclusive: bool | None, only_some_payloads: bool) -> str:
    """The page query; ``inclusive`` None: no bound. With ``only_some_payloads`` the last
    parameter lists the event names whose payloads are wanted (the others come back NULL)."""
    names = "$5" if inclusive is None else "$7"
    payload = (
        f"CASE WHEN split_part(type, '.', 2) = ANY({names}::text[]) THEN payload END"
        if only_some_payloads
        else "payload"
    )
    return _ARCHIVED.format(payload=payload, table=event_archive.name, bound=_BOUNDS[inclusive])


async def _archived(
    connection: AsyncConnection,
    stream: str,
    after: StreamPosition,
    bound: StreamPosition | None,
    *,
    inclusive: bool,
    page: int,
    payloads_of: Collection[str] | None,
) -> AsyncIterator[list[Recorded]]:
    # The same connection, so the same transaction as the caller's own statements.
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    query = _archived_query(None if bound is None else inclusive, payloads_of is not None)
    extra: list[object] = [] if bound is None else [bound.ms, bound.seq]
    if payloads_of is not None:
        extra.append(list(payloads_of))
    last = after
    while True:
        rows = await driver.fetch(query, stream, last.ms, last.seq, page, *extra)
        if not rows:
            return
        # Not decoded: the columns say what a projection needs to choose (see Recorded).
        batch = [
            Recorded(
                stream,
                StreamPosition(ms, seq),
                payload or b"",
                source=source,
                id=event_id,
                type=event_type,
                subject=subject,
                time=at,
            )
            for ms, seq, payload, source, event_id, event_type, subject, at in rows
        ]
        last = batch[-1].position
        yield batch
        if len(rows) < page:
            return
