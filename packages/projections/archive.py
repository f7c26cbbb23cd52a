"""The event archive as a projection: every event, once, with its stream position."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from projections import tables
from projections.projection import Apply, Projection
from projections.recorded import Recorded


def archive_writer(event_archive: sa.Table) -> Apply:
    # An event already archived may come again under a new entry id (a dead letter requeued
    # with no group recorded, so for every group): keep the first.
    statement = insert(event_archive).on_conflict_do_nothing()

    async def apply(connection: AsyncConnection, records: list[Recorded]) -> None:
        rows = [
            {
                "source": record.source,
                "id": record.id,
                "stream": record.stream,
                "entry_ms": record.position.ms,
                "entry_seq": record.position.seq,
                "type": record.type,
                "subject": record.subject,
                "time": record.time,
                "payload": record.payload,
            }
            for record in records
        ]
        await connection.execute(statement, rows)

    return apply


# The archive is what replays read, so it is never rebuilt from itself.
ARCHIVE = Projection("archive", (tables.event_archive,), archive_writer, rebuildable=False)
