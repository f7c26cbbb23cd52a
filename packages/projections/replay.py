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

Entries are grouped by partition because that is the order every projection relies on: an
order's events all live in one partition, as do a SKU's catalog events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventbus.scripts import as_text
from eventbus.topology import Partition
from projections.positions import BEGINNING, StreamPosition
from projections.recorded import Recorded
from projections.tables import event_archive

PAGE = 5_000


async def replay(
    redis: aioredis.Redis,
    connection: AsyncConnection,
    partition: Partition,
    *,
    after: StreamPosition = BEGINNING,
    until: StreamPosition | None = None,
    page: int = PAGE,
) -> AsyncIterator[list[Recorded]]:
    """Batches of the partition's events after ``after`` (up to ``until``), in stream order.

    Without ``until`` it ends once it has caught up with the stream as of its last snapshot.
    """
    stream = partition.stream
    last = after
    while until is None or last < until:
        async with redis.pipeline(transaction=True) as snapshot:
            snapshot.xrange(stream, f"({last}", str(until) if until else "+", count=page)
            snapshot.xrange(stream, "-", "+", count=1)
            tail, head = await snapshot.execute()
        first = StreamPosition.parse(as_text(head[0][0])) if head else None
        replayed_any = False
        if first is None or first > last:
            # Trimmed (or never kept): [last, first) comes from the archive.
            bound: StreamPosition | None = first
            inclusive = False
            if until is not None and (first is None or first > until):
                bound, inclusive = until, True
            archived = _archived(connection, stream, last, bound, inclusive=inclusive, page=page)
            async for batch in archived:
                replayed_any = True
                last = batch[-1].position
                yield batch
        if tail:
            batch = [
                Recorded.decode(stream, StreamPosition.parse(as_text(entry_id)), fields[b"event"])
                for entry_id, fields in tail
            ]
            replayed_any = True
            last = batch[-1].position
            yield batch
        if not replayed_any and len(tail) < page:
            return  # caught up with the snapshot


async def _archived(
    connection: AsyncConnection,
    stream: str,
    after: StreamPosition,
    bound: StreamPosition | None,
    *,
    inclusive: bool,
    page: int,
) -> AsyncIterator[list[Recorded]]:
    position = sa.tuple_(event_archive.c.entry_ms, event_archive.c.entry_seq)
    last = after
    while True:
        query = (
            sa.select(event_archive.c.entry_ms, event_archive.c.entry_seq, event_archive.c.payload)
            .where(event_archive.c.stream == stream, position > sa.tuple_(*last))
            .order_by(event_archive.c.entry_ms, event_archive.c.entry_seq)
            .limit(page)
        )
        if bound is not None:
            upper = sa.tuple_(*bound)
            query = query.where(position <= upper if inclusive else position < upper)
        rows = (await connection.execute(query)).all()
        if not rows:
            return
        batch = [
            Recorded.decode(stream, StreamPosition(row.entry_ms, row.entry_seq), row.payload)
            for row in rows
        ]
        last = batch[-1].position
        yield batch
        if len(rows) < page:
            return
