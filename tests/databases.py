"""Throwaway databases on the test Postgres server, migrated to head."""

from __future__ import annotations

import asyncpg

import migrations
from orderly_platform.embedded import PostgresServer


async def fresh_database(server: PostgresServer, name: str) -> str:
    """Create (or re-create) database ``name``, migrate it, and return its URL."""
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    await migrations.upgrade_async(url)
    return url
