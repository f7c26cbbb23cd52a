"""What the order service's tests share: the service on a real Redis, and its API token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from order_service.app import create_app
from orderly_platform.settings import Settings

TOKEN = "order-service-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def service_client(redis_url: str, **settings: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """The order service on two partitions per stream category, with ``settings`` on top."""
    app = create_app(
        Settings(redis_url=redis_url, api_token=TOKEN, stream_partitions=2, **settings)
    )
    async with TestClient(TestServer(app)) as client:
        yield client
