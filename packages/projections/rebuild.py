"""Blue/green rebuild of a projection: build fresh tables by replay, then swap them in.

1. Fresh copies of the projection's tables are created in a schema of their own
   (``rebuild_<name>``), with the same names, columns and indexes as the live ones.
2. Every partition is replayed (archive, then live tail) into the copies, with checkpoints of
   their own, while the live tables keep serving and the projector keeps applying to them.
   The copies are unlogged while they fill and logged (written to the WAL in one go)
   before the swap; their commits do not wait for the disk, since a crash before the swap
   discards them anyway.
3. One transaction swaps: it locks the live checkpoints, which holds the projector back; it
   brings the copies up to at least the live checkpoints; it moves the live tables out and the
   copies in (``ALTER TABLE ... SET SCHEMA``), and moves the live checkpoints to where the copies
   are. Readers see the old tables or the new ones, never a mix, and the projector resumes on
   the new tables exactly after what they hold.

A crash before the swap leaves the live tables untouched; the next rebuild starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa
from redis.exceptions import ResponseError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventbus.topology import Partition
from orderly_platform.database import create_engine, is_unavailable
from orderly_platform.logs import get_logger
from orderly_platform.runtime import tune_gc_for_throughput
from projections.checkpointed import (
    apply_exactly_once,
    apply_in_transaction,
    checkpoint_at,
    lock_checkpoints,
)
from projections.positions import BEGINNING, StreamPosition
from projections.projection import Apply, Projection
from projections.recorded import Recorded
from projections.registry import PROJECTIONS
from projections.replay import replay
from projections.tables import event_archive, projection_checkpoints

# Events per page of a rebuild's replay: large, so that fewer sagas straddle two pages (an
# order placed and settled within one page is written once; the others are updated).
REPLAY_PAGE = 20_000


log = get_logger(__name__)

# A position per stream partition.
Positions = dict[str, StreamPosition]


class RebuildRefused(Exception):
    """The rebuild cannot start: the projection is not rebuildable or is being rebuilt."""


@dataclass(frozen=True)
class RebuildResult:
    projections: list[str]
    # Events read from the archive and the streams (every projection sees every event).
    events: int
    seconds: float
    # Where the time went: "replay" (filling the copies), "indexes" (building their secondary
    # indexes and making them logged), "swap" (the transaction that holds the projector back).
    phases: dict[str, float]


@dataclass(frozen=True)
class Workers:
    """Processes for a rebuild's replay, and where they find Redis and Postgres."""

    processes: int
    redis_url: str
    postgres_url: str


@dataclass(frozen=True)
class _Shadow:
    projection: Projection
    schema: str
    # Checkpoint key of the copies, distinct from the live projection's.
    checkpoint: str
    tables: tuple[sa.Table, ...]
    apply: Apply


async def rebuild(
    redis: aioredis.Redis,
    engine: AsyncEngine,
    projections: Sequence[Projection],
    partitions: Sequence[Partition],
    *,
    on_progress: Callable[[int], None] = lambda events: None,
    workers: Workers | None = None,
) -> RebuildResult:
    """Rebuild these projections from one replay, and swap them all in one transaction.

    With ``workers``, the partitions are replayed by that many processes at once (each
    partition by one of them, so each stays in order): a replay is bound by one core's worth
    of decoding and folding otherwise.
    """
    for projection in projections:
        if not projection.rebuildable:
            raise RebuildRefused(
                f"{projection.name} is the source of replays and cannot be rebuilt"
            )
    started = time.perf_counter()
    async with engine.connect() as guard, _rebuild_locks(guard, projections):
        shadows = [await _create_shadow(engine, projection) for projection in projections]
        events = 0
        phases: dict[str, float] = {}
        clock = time.perf_counter()
        # Twice: the second pass picks up what arrived during the first, so that the swap
        # below, which holds the projector back, has little left to do.
        for _ in range(2):
            if workers is None or workers.processes < 2:
                for partition in partitions:
                    events += await _catch_up(redis, engine, partition, shadows, on_progress)
            else:
                events += await _catch_up_in_processes(
                    workers, projections, partitions, on_progress
                )
        phases["replay"], clock = time.perf_counter() - clock, time.perf_counter()
        async with engine.begin() as connection:
            for shadow in shadows:
                await _finish_tables(connection, shadow)
        phases["indexes"], clock = time.perf_counter() - clock, time.perf_counter()
        async with engine.begin() as swap:
            for shadow in shadows:
                events += await _swap(redis, swap, partitions, shadow)
        phases["swap"] = time.perf_counter() - clock
    names = [p.name for p in projections]
    return RebuildResult(names, events, time.perf_counter() - started, phases)


@asynccontextmanager
async def _rebuild_locks(
    guard: AsyncConnection, projections: Sequence[Projection]
) -> AsyncIterator[None]:
    """One rebuild per projection at a time: session locks, which a crash releases too."""
    keys = [sa.func.hashtext(f"orderly.rebuild.{p.name}") for p in projections]
    held = []
    try:
        for projection, key in zip(projections, keys, strict=True):
            if not await guard.scalar(sa.select(sa.func.pg_try_advisory_lock(key))):
                raise RebuildRefused(f"a rebuild of {projection.name} is already running")
            held.append(key)
        await guard.commit()
        yield
    finally:
        # The connection goes back to the pool, and a session lock would go with it.
        for key in held:
            await guard.execute(sa.select(sa.func.pg_advisory_unlock(key)))
        await guard.commit()


async def events_to_replay(
    redis: aioredis.Redis, engine: AsyncEngine, partitions: Sequence[Partition]
) -> int:
    """How many events a rebuild will read, for a progress bar: all ever added to the streams."""
    total = 0
    for partition in partitions:
        try:
            info = await redis.xinfo_stream(partition.stream)
        except ResponseError:  # no such stream: nothing there, but its archive may hold some
            info = {}
        added = info.get("entries-added")
        if added is None:
            async with engine.connect() as connection:
                archived = await connection.scalar(
                    sa.select(sa.func.count()).where(event_archive.c.stream == partition.stream)
                )
            added = int(archived or 0) + int(info.get("length", 0))
        total += int(added)
    return total


def _shadow_of(projection: Projection) -> _Shadow:
    """The copies' names and writer (the same in every process of a rebuild)."""
    schema = f"rebuild_{projection.name}"
    metadata = sa.MetaData()
    tables = tuple(table.to_metadata(metadata, schema=schema) for table in projection.tables)
    checkpoint = f"{projection.name}@rebuild"
    return _Shadow(projection, schema, checkpoint, tables, projection.apply_to(tables))


async def _create_shadow(engine: AsyncEngine, projection: Projection) -> _Shadow:
    shadow = _shadow_of(projection)
    schema, tables, checkpoint = shadow.schema, shadow.tables, shadow.checkpoint
    metadata = tables[0].metadata
    async with engine.begin() as connection:
        # Whatever an interrupted rebuild left behind is discarded: start from nothing.
        await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await connection.run_sync(metadata.create_all)
        for table in tables:
            # Bulk-load style: only the primary keys (the writers look rows up by them) while
            # the copies fill; the other indexes are built once, at the end (_finish_tables).
            for index in table.indexes:
                await connection.execute(sa.text(f'DROP INDEX "{schema}"."{index.name}"'))
            # Unlogged while they fill: no WAL for a million rows that a crash would discard
            # anyway. Made logged (one sequential write) before they become the live tables.
            await connection.execute(sa.text(f'ALTER TABLE "{schema}"."{table.name}" SET UNLOGGED'))
        await connection.execute(
            sa.delete(projection_checkpoints).where(
                projection_checkpoints.c.projection == checkpoint
            )
        )
    return shadow


async def _finish_tables(connection: AsyncConnection, shadow: _Shadow) -> None:
    """Make the copies crash-safe, then build their secondary indexes: ready to be live."""
    for table in shadow.tables:
        # In this order because SET LOGGED rewrites the table with every index it has: an
        # index built before it would be built twice.
        await connection.execute(
            sa.text(f'ALTER TABLE "{shadow.schema}"."{table.name}" SET LOGGED')
        )
        for index in table.indexes:
            await connection.run_sync(index.create)


async def _catch_up(
    redis: aioredis.Redis,
    engine: AsyncEngine,
    partition: Partition,
    shadows: Sequence[_Shadow],
    on_progress: Callable[[int], None],
    until: Positions | None = None,
) -> int:
    """Replay the partition into every copy from where the copies are (the same place), up
    to ``until``'s position for it when given (else as far as the stream goes)."""
    end = None if until is None else until.get(partition.stream, BEGINNING)
    pages: asyncio.Queue[list[Recorded] | None] = asyncio.Queue(maxsize=2)

    async def read() -> None:
        # Reading the next page overlaps with applying this one: Postgres works on one core
        # while this process decodes and folds on the other.
        try:
            async with engine.connect() as reader:
                after = min(
                    [await checkpoint_at(reader, s.checkpoint, partition.stream) for s in shadows]
                )
                pages_read = replay(
                    redis,
                    reader,
                    partition,
                    after=after,
                    until=end,
                    page=REPLAY_PAGE,
                    payloads_of=_decoded_by(shadows),
                )
                async for page in pages_read:
                    await pages.put(page)
        except BaseException:
            # Cancelled because applying failed, or failed itself: the applier may be gone,
            # so the end mark must not wait for room in the queue.
            with contextlib.suppress(asyncio.QueueFull):
                pages.put_nowait(None)
            raise
        await pages.put(None)

    reader = asyncio.create_task(read())
    events = 0
    try:
        while (page := await pages.get()) is not None:
            # A crash before the swap throws the copies away, so no commit here waits for
            # the disk (the swap does).
            await asyncio.gather(*(_apply_page(engine, s, page) for s in shadows))
            events += len(page)
            on_progress(len(page))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader  # re-raises what the reader failed with, after the pages it read
    return events


def _decoded_by(shadows: Sequence[_Shadow]) -> frozenset[str]:
    """The events whose payloads these projections read; a replay fetches only those."""
    return frozenset().union(*(shadow.projection.decodes for shadow in shadows))


async def _apply_page(engine: AsyncEngine, shadow: _Shadow, page: list[Recorded]) -> None:
    # Processes replaying different partitions can meet on a shared row (a SKU reserved by
    # orders of two partitions) and deadlock; Postgres aborts one, which simply goes again.
    for attempt in range(5):
        try:
            await apply_exactly_once(
                engine, shadow.checkpoint, page, shadow.apply, wait_for_flush=False
            )
            return
        except Exception as exc:
            if attempt == 4 or not is_unavailable(exc):
                raise
            log.info("rebuild page retried", projection=shadow.projection.name, error=str(exc))


async def _catch_up_in_processes(
    workers: Workers,
    projections: Sequence[Projection],
    partitions: Sequence[Partition],
    on_progress: Callable[[int], None],
) -> int:
    context = multiprocessing.get_context("spawn")
    progress: multiprocessing.Queue[int] = context.Queue()
    groups = [list(partitions[n :: workers.processes]) for n in range(workers.processes)]
    names = [p.name for p in projections]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(
        workers.processes, mp_context=context, initializer=_receive_queue, initargs=(progress,)
    ) as pool:
        futures = [
            loop.run_in_executor(
                pool, _catch_up_worker, workers.redis_url, workers.postgres_url, names, group
            )
            for group in groups
            if group
        ]
        pending = set(futures)
        while pending:
            # Progress arrives on a queue; a tenth of a second is often enough for a bar.
            _, pending = await asyncio.wait(pending, timeout=0.1)
            while not progress.empty():
                on_progress(progress.get_nowait())
        while not progress.empty():
            on_progress(progress.get_nowait())
        return sum([future.result() for future in futures])


# In a worker process: where its progress goes (set when the process starts).
_worker: dict[str, multiprocessing.Queue[int]] = {}


def _receive_queue(queue: multiprocessing.Queue[int]) -> None:
    _worker["progress"] = queue


def _catch_up_worker(
    redis_url: str, postgres_url: str, names: list[str], partitions: list[Partition]
) -> int:
    """One worker process: catch the copies up on its partitions; returns events read."""
    tune_gc_for_throughput()

    async def run() -> int:
        redis = aioredis.Redis.from_url(redis_url)
        engine = create_engine(postgres_url, pool_size=len(names) + 2)
        shadows = [_shadow_of(PROJECTIONS[name]) for name in names]
        report = _worker["progress"].put
        try:
            return sum([await _catch_up(redis, engine, p, shadows, report) for p in partitions])
        finally:
            await redis.aclose()
            await engine.dispose()

    return asyncio.run(run())


async def _swap(
    redis: aioredis.Redis,
    swap: AsyncConnection,
    partitions: Sequence[Partition],
    shadow: _Shadow,
) -> int:
    projection = shadow.projection
    streams = [partition.stream for partition in partitions]
    live = await lock_checkpoints(swap, projection.name, streams)
    events = 0
    for partition in partitions:
        after = await checkpoint_at(swap, shadow.checkpoint, partition.stream)
        if after < live[partition.stream]:
            until = live[partition.stream]
            batches = replay(
                redis, swap, partition, after=after, until=until, payloads_of=projection.decodes
            )
            async for batch in batches:
                events += await apply_in_transaction(swap, shadow.checkpoint, batch, shadow.apply)
    # The copies may be ahead of the live tables (the projector lagged): the projection's
    # checkpoints move to where the copies are, so nothing they hold is applied again.
    copies = await lock_checkpoints(swap, shadow.checkpoint, streams)
    for stream in streams:
        position = max(live[stream], copies[stream])
        await swap.execute(
            sa.update(projection_checkpoints)
            .where(
                projection_checkpoints.c.projection == projection.name,
                projection_checkpoints.c.stream == stream,
            )
            .values(entry_ms=position.ms, entry_seq=position.seq, updated_at=sa.func.now())
        )
    await swap.execute(
        sa.delete(projection_checkpoints).where(
            projection_checkpoints.c.projection == shadow.checkpoint
        )
    )
    live_schema = await swap.scalar(sa.select(sa.func.current_schema()))
    retired = f"retired_{projection.name}"
    await swap.execute(sa.text(f'DROP SCHEMA IF EXISTS "{retired}" CASCADE'))
    await swap.execute(sa.text(f'CREATE SCHEMA "{retired}"'))
    for table in projection.tables:
        await swap.execute(
            sa.text(f'ALTER TABLE "{live_schema}"."{table.name}" SET SCHEMA "{retired}"')
        )
        await swap.execute(
            sa.text(f'ALTER TABLE "{shadow.schema}"."{table.name}" SET SCHEMA "{live_schema}"')
        )
    await swap.execute(sa.text(f'DROP SCHEMA "{retired}" CASCADE'))
    await swap.execute(sa.text(f'DROP SCHEMA "{shadow.schema}"'))
    return events


@dataclass(frozen=True)
class Difference:
    """Where a live table and a fresh replay of the same events disagree."""

    projection: str
    table: str
    # Rows only the live table has, and rows only the replay produced (a changed row counts
    # in both), with the primary keys of a few of them.
    only_live: int
    only_replayed: int
    examples: list[str]


async def verify(
    redis: aioredis.Redis,
    engine: AsyncEngine,
    projections: Sequence[Projection],
    partitions: Sequence[Partition],
) -> list[Difference]:
    """Replay every event into fresh copies of each projection's tables, up to exactly where
    the live tables are, and compare the two row for row; nothing is swapped, the copies are
    dropped. The invariant it checks: the read models equal a fresh replay of the events.

    The final step holds the live checkpoints locked (the projector waits a moment) so the
    live tables stand still while the copies catch up with them and are compared.
    """
    differences: list[Difference] = []
    streams = [partition.stream for partition in partitions]
    for projection in projections:
        if not projection.rebuildable:
            raise RebuildRefused(f"{projection.name} is the source of replays: nothing to compare")
        async with engine.connect() as guard, _rebuild_locks(guard, [projection]):
            shadow = await _create_shadow(engine, projection)
            try:
                async with engine.connect() as connection:
                    target = await lock_checkpoints(connection, projection.name, streams)
                    await connection.rollback()
                # Most of the replay, with the projector running: up to where it was.
                for partition in partitions:
                    await _catch_up(redis, engine, partition, [shadow], lambda _: None, target)
                async with engine.begin() as connection:
                    live = await lock_checkpoints(connection, projection.name, streams)
                    for partition in partitions:
                        after = await checkpoint_at(connection, shadow.checkpoint, partition.stream)
                        batches = replay(
                            redis,
                            connection,
                            partition,
                            after=after,
                            until=live[partition.stream],
                            payloads_of=projection.decodes,
                        )
                        async for batch in batches:
                            await apply_in_transaction(
                                connection, shadow.checkpoint, batch, shadow.apply
                            )
                    for live_table, copy in zip(projection.tables, shadow.tables, strict=True):
                        difference = await _compare(connection, projection, live_table, copy)
                        if difference is not None:
                            differences.append(difference)
            finally:
                async with engine.begin() as connection:
                    await connection.execute(
                        sa.text(f'DROP SCHEMA IF EXISTS "{shadow.schema}" CASCADE')
                    )
                    await connection.execute(
                        sa.delete(projection_checkpoints).where(
                            projection_checkpoints.c.projection == shadow.checkpoint
                        )
                    )
    return differences


async def _compare(
    connection: AsyncConnection, projection: Projection, live: sa.Table, copy: sa.Table
) -> Difference | None:
    columns = [column.name for column in live.columns]
    keys = [column.name for column in live.primary_key.columns]

    def rows_of(table: sa.Table) -> sa.Select[Any]:
        return sa.select(*(table.c[name] for name in columns))

    only_live = rows_of(live).except_all(rows_of(copy)).subquery()
    only_replayed = rows_of(copy).except_all(rows_of(live)).subquery()
    counts = []
    examples: list[str] = []
    for rows in (only_live, only_replayed):
        counts.append(
            int(await connection.scalar(sa.select(sa.func.count()).select_from(rows)) or 0)
        )
        sample = await connection.execute(sa.select(*(rows.c[k] for k in keys)).limit(3))
        examples += ["/".join(str(value) for value in row) for row in sample]
    if not any(counts):
        return None
    return Difference(projection.name, live.name, counts[0], counts[1], sorted(set(examples)))
