from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from order_service.app import create_app
from order_service.testing import TOKEN
from orderly_platform.embedded import RedisServer
from orderly_platform.settings import Settings
from orderly_platform.testing import flushed_redis_client, postgres_server, redis_server

__all__ = ["client", "flushed_redis_client", "postgres_server", "redis_server"]


@pytest_asyncio.fixture
async def client(
    redis_server: RedisServer, redis: aioredis.Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    """The service on the test's Redis (emptied first: ``redis``), two partitions a category."""
    settings = Settings(redis_url=redis_server.url, api_token=TOKEN, stream_partitions=2)
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client
