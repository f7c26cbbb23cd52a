from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from order_service.testing import service_client
from orderly_platform.embedded import RedisServer
from orderly_platform.testing import flushed_redis_client, postgres_server, redis_server

__all__ = ["client", "flushed_redis_client", "postgres_server", "redis_server"]


@pytest_asyncio.fixture
async def client(
    redis_server: RedisServer, redis: aioredis.Redis
) -> AsyncIterator[TestClient[Any, Any]]:
    """The service on the test's Redis, emptied first (``redis``)."""
    async with service_client(redis_server.url) as test_client:
        yield test_client
