"""Pytest fixtures that start real servers through the embedded stack.

Import the fixtures you need into a conftest.py. Each test process (Pants runs one per test
file) starts a server at most once; servers live in a temporary dir and die with the process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from orderly_platform.embedded import PostgresServer, RedisServer, TemporalServer


@pytest_asyncio.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="session")
async def postgres_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PostgresServer]:
    # Throwaway data: skip fsync, which is most of Postgres' cost on a small machine.
    server = PostgresServer(tmp_path_factory.mktemp("postgres"), durable=False)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="session")
async def temporal_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TemporalServer]:
    server = TemporalServer(tmp_path_factory.mktemp("temporal"), ui=False, persistent=False)
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(name="redis")
async def flushed_redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's Redis, emptied first so each test starts from nothing."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()
