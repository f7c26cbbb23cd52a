"""Apply a batch of stream entries to a projection exactly once.

The projection's writes and its checkpoint (per stream partition) commit in one
transaction. Entries at or below the checkpoint were applied before (a redelivery after a
crash between commit and XACK, or a takeover by a peer) and are skipped, so at-least-once
delivery from the consumer group becomes exactly-once effect in Postgres.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.positions import BEGINNING, StreamPosition
from projections.projection import Apply
from projections.recorded import Recorded
from projections.tables import projection_checkpoints


async def apply_exactly_once(
    engine: AsyncEngine,
    projection: str,
    records: Sequence[Recorded],
    apply: Apply,
    *,
    wait_for_flush: bool = True,
) -> int:
    """Apply the records not applied yet, in stream order per partition; return how many.

    ``wait_for_flush=False`` commits without waiting for the WAL to reach the disk: only for
    work that a crash discards anyway (a rebuild's fresh tables before their swap).
    """
    async with engine.begin() as connection:
        if not wait_for_flush:
            await connection.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
        return await apply_in_transaction(connection, projection, records, apply)


async def apply_in_transaction(
    connection: AsyncConnection, projection: str, records: Sequence[Recorded], apply: Apply
) -> int:
    """``apply_exactly_once`` on a transaction the caller holds (a rebuild's swap)."""
    if not records:
        return 0
    streams = sorted({record.stream for record in records})
    checkpoints = await lock_checkpoints(connection, projection, streams)
    # Grouped by stream, each in position order. Batches mostly arrive in order already,
    # which makes this sort a single pass.
    by_stream: dict[str, list[Recorded]] = {stream: [] for stream in streams}
    for record in records:
        if record.position > checkpoints[record.stream]:
            by_stream[record.stream].append(record)
    fresh = [r for s in streams for r in sorted(by_stream[s], key=_position)]
    if fresh:
        await apply(connection, fresh)
        await _advance(connection, projection, fresh)
    return len(fresh)


_position = attrgetter("position")


async def lock_checkpoints(
    connection: AsyncConnection, projection: str, streams: Sequence[str]
) -> dict[str, StreamPosition]:
    """Lock (and create if missing) the projection's checkpoints of these streams.

    Locks are taken in stream order, so two transactions locking overlapping sets cannot
    deadlock on them; except on a stream's first batches, where the rows created here are
    locked after the ones that existed: a race of three appliers there can deadlock, and
    Postgres then fails one transaction (40P01), whose batch the projector tries again.
    """
    streams = sorted(streams)
    positions = await _lock_rows(connection, projection, streams)
    missing = [s for s in streams if s not in positions]
    if missing:
        # Created, then locked like the others: two appliers of the same partition (a
        # takeover racing the original consumer) then run one after the other. Only a
        # stream's first batch gets here; every later one locks with the one statement above.
        await connection.execute(
            _CREATE_CHECKPOINT,
            [
                {"projection": projection, "stream": s, "entry_ms": 0, "entry_seq": 0}
                for s in missing
            ],
        )
        positions = await _lock_rows(connection, projection, streams)
    return {stream: positions.get(stream, BEGINNING) for stream in streams}


# Statements built once: each runs for every batch of every projection, and a statement
# SQLAlchemy has compiled before costs only its cache lookup.
_CREATE_CHECKPOINT = insert(projection_checkpoints).on_conflict_do_nothing()
_LOCK_CHECKPOINTS = (
    sa.select(
        projection_checkpoints.c.stream,
        projection_checkpoints.c.entry_ms,
        projection_checkpoints.c.entry_seq,
    )
    .where(
        projection_checkpoints.c.projection == sa.bindparam("projection"),
        projection_checkpoints.c.stream.in_(sa.bindparam("streams", expanding=True)),
    )
    .order_by(projection_checkpoints.c.stream)
    .with_for_update()
)
_ADVANCE_CHECKPOINT = (
    sa.update(projection_checkpoints)
    .where(
        projection_checkpoints.c.projection == sa.bindparam("at_projection"),
        projection_checkpoints.c.stream == sa.bindparam("at_stream"),
    )
    .values(
        entry_ms=sa.bindparam("to_ms"), entry_seq=sa.bindparam("to_seq"), updated_at=sa.func.now()
    )
)


async def _lock_rows(
    connection: AsyncConnection, projection: str, streams: list[str]
) -> dict[str, StreamPosition]:
    rows = await connection.execute(
        _LOCK_CHECKPOINTS, {"projection": projection, "streams": streams}
    )
    return {row.stream: StreamPosition(row.entry_ms, row.entry_seq) for row in rows}


async def _advance(connection: AsyncConnection, projection: str, fresh: list[Recorded]) -> None:
    last: dict[str, StreamPosition] = {}
    for record in fresh:  # sorted by stream, then position: the last one per stream wins
        last[record.stream] = record.position
    # One executemany: the driver sends every stream's update in one round trip.
    await connection.execute(
        _ADVANCE_CHECKPOINT,
        [
            {"at_projection": projection, "at_stream": stream, "to_ms": p.ms, "to_seq": p.seq}
            for stream, p in last.items()
        ],
    )


async def checkpoint_of(engine: AsyncEngine, projection: str, stream: str) -> StreamPosition:
    async with engine.connect() as connection:
        return await checkpoint_at(connection, projection, stream)


async def checkpoint_at(
    connection: AsyncConnection, projection: str, stream: str
) -> StreamPosition:
    """The projection's position in the stream, as this connection's transaction sees it."""
    row = (
        await connection.execute(
            sa.select(projection_checkpoints.c.entry_ms, projection_checkpoints.c.entry_seq).where(
                projection_checkpoints.c.projection == projection,
                projection_checkpoints.c.stream == stream,
            )
        )
    ).first()
    return BEGINNING if row is None else StreamPosition(row.entry_ms, row.entry_seq)
