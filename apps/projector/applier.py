"""The projector's batch handler: a projection applied exactly once, outages waited out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.consumer import StreamEntry
from orderly_platform.database import is_unavailable
from orderly_platform.logs import get_logger
from orderly_platform.metrics import LONG_WAIT_BUCKETS, labelled
from projections.checkpointed import apply_exactly_once
from projections.projection import Projection
from projections.recorded import Recorded

log = get_logger(__name__)

PROJECTION_LAG = Histogram(
    "orderly_projection_lag_seconds",
    "Time from an event's append to the commit of the batch that applied it (or found it "
    "applied already), per projection.",
    ["projection"],
    buckets=LONG_WAIT_BUCKETS,
)

MAX_BACKOFF_S = 30.0


class ProjectionApplier:
    """Applies batches of one projection; while Postgres is down, keeps retrying the batch."""

    def __init__(self, engine: AsyncEngine, projection: Projection, stopped: asyncio.Event):
        self.engine = engine
        self.projection = projection
        self.stopped = stopped
        # True while the last batch found Postgres unavailable and waits to try again.
        self.waiting_for_postgres = False
        self._lag = labelled(PROJECTION_LAG, projection.name)

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        # An entry that does not decode fails the batch here, before any write, and the
        # consumer's retries then isolate it and dead-letter it alone.
        records = [Recorded.of(entry) for entry in entries]
        backoff = 0.5
        while True:
            try:
                await apply_exactly_once(
                    self.engine, self.projection.name, records, self.projection.apply
                )
            except Exception as exc:
                # An outage is waited out on the same batch: failing it would let later
                # entries apply first (their checkpoint would then skip this batch) and count
                # deliveries towards dead-lettering events that are fine.
                if not is_unavailable(exc) or self.stopped.is_set():
                    raise
                self.waiting_for_postgres = True
                log.warning(
                    "postgres unavailable; retrying the batch",
                    projection=self.projection.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=backoff,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopped.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                self.waiting_for_postgres = False
                self._record_lag(records)
                return

    def _record_lag(self, records: Sequence[Recorded]) -> None:
        # A stream entry id is its append time in ms (Redis' clock; hosts keep theirs in
        # sync), so this is append-to-commit: the time an event took to show in the model.
        now_ms = time.time() * 1000
        for record in records:
            self._lag.observe(max(0.0, now_ms - record.position.ms) / 1000)
