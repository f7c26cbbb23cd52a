"""The database schema of orderly as Alembic revisions, and the calls that apply them.

Alembic loads env.py and versions/ by path, so this package finds its own directory at run
time; it works the same from a checkout, a Pants sandbox or a PEX.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from orderly_platform.database import sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would read "%" in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused/")).get_current_head()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`. Idempotent: at that revision already, it does nothing."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    # env.py drives its own event loop (asyncio.run), so run Alembic on a worker thread.
    await asyncio.to_thread(upgrade, database_url, revision)


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    connection = await asyncpg.connect(database_url)
    try:
        exists = await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not exists:
            return None
        revision: str | None = await connection.fetchval("SELECT version_num FROM alembic_version")
        return revision
    finally:
        await connection.close()
