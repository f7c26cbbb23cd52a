"""`orderly migrate`: bring the read-model database to the newest schema."""

from __future__ import annotations

import asyncio

import asyncpg
import click
from alembic.util.exc import CommandError
from sqlalchemy.exc import SQLAlchemyError

import migrations
from cli.errors import one_line
from cli.options import emit, stack_options
from orderly_platform.settings import Settings
from orderly_platform.stack_file import redacted, require_endpoint

# What a bad revision, an unreachable server or refused credentials raise.
MIGRATION_ERRORS = (OSError, asyncpg.PostgresError, CommandError, SQLAlchemyError)


@click.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@stack_options
def migrate_command(settings: Settings, as_json: bool, revision: str) -> None:
    """Run the Alembic migrations against the stack's Postgres (idempotent)."""
    url = require_endpoint(settings, "postgres")
    try:
        migrations.upgrade(url, revision)
        current = asyncio.run(migrations.current_revision(url))
    except MIGRATION_ERRORS as exc:
        raise click.ClickException(
            f"cannot migrate the database at {redacted(url)}: {one_line(exc)}"
        ) from None
    emit(as_json, {"postgres": url, "revision": current}, [f"postgres at revision {current}"])
