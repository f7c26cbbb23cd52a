"""Reaching the stack's read-model database from a verb, failures as one line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.errors import one_line
from orderly_platform.database import create_engine
from orderly_platform.settings import Settings
from orderly_platform.stack_file import redacted, require_endpoint

# A verb is interactive: asyncpg would wait a minute for a host that does not answer.
CONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")


@asynccontextmanager
async def read_model_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the stack's Postgres, disposed afterwards; a database failure inside the
    block becomes a one-line ClickException naming the server."""
    url = require_endpoint(settings, "postgres")
    try:
        engine = create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_S})
    except ValueError as exc:  # not a postgresql:// URL
        raise click.ClickException(f"bad postgres URL {redacted(url)}: {exc}") from None
    try:
        yield engine
    except OSError as exc:  # refused, unresolvable, timed out
        raise click.ClickException(
            f"cannot reach postgres at {redacted(url)}: {one_line(exc)}"
        ) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(f"postgres at {redacted(url)} failed: {one_line(exc)}") from None
    finally:
        await engine.dispose()


def run_on_postgres(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def run() -> T:
        async with read_model_engine(settings) as engine:
            return await work(engine)

    return asyncio.run(run())
