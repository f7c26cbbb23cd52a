"""`orderly migrate`: bring the read-model database to the newest schema."""

from __future__ import annotations

import asyncio

import asyncpg
import click

import migrations
from cli.options import emit, stack_options
from orderly_platform.settings import Settings
from orderly_platform.stack_file import require_endpoint


@click.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@stack_options
def migrate_command(settings: Settings, as_json: bool, revision: str) -> None:
    """Run the Alembic migrations against the stack's Postgres (idempotent)."""
    url = require_endpoint(settings, "postgres")
    try:
        migrations.upgrade(url, revision)
        current = asyncio.run(migrations.current_revision(url))
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(f"cannot migrate the database at {url}: {exc}") from None
    emit(as_json, {"postgres": url, "revision": current}, [f"postgres at revision {current}"])
