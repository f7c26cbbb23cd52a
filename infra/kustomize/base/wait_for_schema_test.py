"""The schema gate against a real Postgres: it waits while the schema is behind, and lets the
app start once the migrations are in."""

from __future__ import annotations

import asyncio

import migrations
from infra.kustomize.base.wait_for_schema import wait_for_schema
from orderly_platform.embedded import PostgresServer
from orderly_platform.testing import postgres_server

__all__ = ["postgres_server"]


async def test_it_waits_for_the_newest_schema(postgres_server: PostgresServer) -> None:
    url = postgres_server.url
    assert not await wait_for_schema(url, interval_s=0.05, timeout_s=0.2)
    gate = asyncio.create_task(wait_for_schema(url, interval_s=0.05, timeout_s=60))
    await asyncio.sleep(0.2)
    assert not gate.done()
    await migrations.upgrade_async(url)
    assert await gate


async def test_an_unreachable_database_is_waited_for() -> None:
    url = "postgresql://orderly:secret@127.0.0.1:9/orderly"
    assert not await wait_for_schema(url, interval_s=0.05, timeout_s=0.2)
