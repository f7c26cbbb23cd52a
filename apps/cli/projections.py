"""`orderly projections status`: how far behind each read model is."""

from __future__ import annotations

import click
import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError

from cli.bus import run_on_redis, topology
from cli.durations import format_ms
from cli.options import emit, stack_options
from cli.table import table
from orderly_platform.database import create_engine
from orderly_platform.settings import Settings
from orderly_platform.stack_file import redacted, require_endpoint
from projections.registry import PROJECTIONS
from projections.status import ProjectionLag, projection_lag


@click.group("projections")
def projections_group() -> None:
    """Read models in Postgres: their lag (rebuild comes with replay)."""


@projections_group.command("status")
@stack_options
def status_command(settings: Settings, as_json: bool) -> None:
    """Per projection: events not applied yet and how long the oldest has waited."""
    postgres_url = require_endpoint(settings, "postgres")
    partitions = topology(settings).all_partitions()

    async def lags(redis: aioredis.Redis) -> list[ProjectionLag]:
        engine = create_engine(postgres_url)
        try:
            return [await projection_lag(redis, engine, name, partitions) for name in PROJECTIONS]
        except (OSError, SQLAlchemyError) as exc:
            # Raised here so that bus.run_on_redis does not report it as Redis' failure.
            raise click.ClickException(
                f"cannot read checkpoints from postgres at {redacted(postgres_url)}: "
                f"{' '.join(str(exc).split())}"
            ) from None
        finally:
            await engine.dispose()

    result = run_on_redis(settings, lags)
    rows = [[lag.projection, str(lag.unapplied), format_ms(lag.behind_ms)] for lag in result]
    emit(as_json, result, table(("PROJECTION", "UNAPPLIED", "OLDEST WAITING"), rows))
