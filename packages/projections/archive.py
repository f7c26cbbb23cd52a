"""The event archive as a projection: every event, once, with its stream position."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from eventbus.consumer import StreamEntry
from projections.positions import StreamPosition
from projections.tables import event_archive

ARCHIVE = "archive"


async def archive_entries(connection: AsyncConnection, entries: list[StreamEntry]) -> None:
    """Insert the entries' events; an event already archived (same source+id) is kept as is."""
    rows = []
    for entry in entries:
        envelope = entry.envelope()
        position = StreamPosition.parse(entry.entry_id)
        rows.append(
            {
                "source": envelope.source,
                "id": envelope.id,
                "stream": entry.partition.stream,
                "entry_ms": position.ms,
                "entry_seq": position.seq,
                "type": envelope.type,
                "subject": envelope.subject,
                "time": envelope.time,
                "payload": entry.payload,
            }
        )
    # A requeued dead letter is a new entry of an event already archived: keep the first.
    await connection.execute(insert(event_archive).values(rows).on_conflict_do_nothing())
