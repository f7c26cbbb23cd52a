"""Pytest fixtures that start real servers through the embedded stack.

Import the fixtures you need into a conftest.py. Each test process (Pants runs one per test
file) starts a server at most once; servers live in a temporary dir and die with the process.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orderly_platform.embedded import PostgresServer, RedisServer, TemporalServer
from orderly_platform.logs import configure_logging
from orderly_platform.tracing import enable_tracing


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


@pytest.fixture
def log_output() -> io.StringIO:
    """What the process logs (JSON lines, as they would go to stderr), from here on."""
    structlog.contextvars.clear_contextvars()
    configure_logging("DEBUG", "json")
    stream = io.StringIO()
    [handler] = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


def json_log_lines(output: io.StringIO, event: str | None = None) -> list[dict[str, Any]]:
    """The lines logged so far, decoded; only those saying ``event`` when it is given."""
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    return [line for line in lines if event is None or line["event"] == event]


@pytest.fixture(name="spans", scope="module")
def in_memory_spans() -> InMemorySpanExporter:
    """Tracing on for this test process, every finished span kept in memory; before any app
    or client of the module is made, so that each is instrumented."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    return exporter
