"""What the dashboard shows besides the live flow, read in one go from Redis and Postgres.

Each figure comes from the same package function the CLI uses (``orderly streams``,
``projections status``, ``sagas stuck``), so the page and the terminal never disagree.
Nothing here names a customer: the page is read-only and shows order ids, counts and lags.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.inspection import StreamState, stream_states
from eventbus.topology import Partition
from projections.order_counts import orders_by_status
from projections.registry import PROJECTIONS
from projections.saga_health import stuck_sagas
from projections.status import projection_lag

# The page lists at most this many stuck sagas, the longest wait first.
STUCK_SHOWN = 20


class ProjectionView(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    unapplied: int
    behind_ms: int


class StuckView(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    waiting_for: str | None
    waiting_ms: int


class ReadModelView(msgspec.Struct, frozen=True, kw_only=True):
    orders_by_status: dict[str, int]
    projections: list[ProjectionView]
    stuck: list[StuckView]
    # True when more sagas are stuck than ``stuck`` lists.
    more_stuck: bool


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    at: str
    # How long reading it all took: what each interval costs the service, once for every page.
    took_ms: float
    stuck_after_s: float
    streams: list[StreamState]
    dead_letters: int
    # None when this order service runs without the read-model database.
    read_model: ReadModelView | None


async def take_snapshot(
    redis: aioredis.Redis,
    engine: AsyncEngine | None,
    partitions: Sequence[Partition],
    *,
    stuck_after: timedelta,
) -> Snapshot:
    started = time.perf_counter()
    if engine is None:
        streams, read_model = await stream_states(redis, partitions), None
    else:
        streams, read_model = await asyncio.gather(
            stream_states(redis, partitions),
            _read_model(redis, engine, partitions, stuck_after),
        )
    return Snapshot(
        at=datetime.now(UTC).isoformat(),
        took_ms=round((time.perf_counter() - started) * 1000, 1),
        stuck_after_s=stuck_after.total_seconds(),
        streams=streams,
        dead_letters=sum(state.dead_letters for state in streams),
        read_model=read_model,
    )


async def _read_model(
    redis: aioredis.Redis,
    engine: AsyncEngine,
    partitions: Sequence[Partition],
    stuck_after: timedelta,
) -> ReadModelView:
    counts = await orders_by_status(engine)
    lags = [await projection_lag(redis, engine, name, partitions) for name in PROJECTIONS]
    # One more than shown, to tell "exactly 20" from "20 and more".
    stuck = await stuck_sagas(engine, stuck_after, limit=STUCK_SHOWN + 1)
    return ReadModelView(
        orders_by_status=counts,
        projections=[
            ProjectionView(
                projection=lag.projection, unapplied=lag.unapplied, behind_ms=lag.behind_ms
            )
            for lag in lags
        ],
        stuck=[
            StuckView(
                order_id=saga.order_id, waiting_for=saga.waiting_for, waiting_ms=saga.waiting_ms
            )
            for saga in stuck[:STUCK_SHOWN]
        ],
        more_stuck=len(stuck) > STUCK_SHOWN,
    )
