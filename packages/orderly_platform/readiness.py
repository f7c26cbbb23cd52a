"""Readiness checks the services share: each says whether one dependency answers now."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from orderly_platform.http import ReadinessCheck


def redis_answers(redis: aioredis.Redis) -> ReadinessCheck:
    async def check() -> None:
        await redis.ping()

    return check


def postgres_answers(engine: AsyncEngine) -> ReadinessCheck:
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))

    return check


def temporal_answers(client: Callable[[], Client | None]) -> ReadinessCheck:
    """``client`` gives the service's Temporal client once it has connected (None before)."""

    async def check() -> None:
        connected = client()
        if connected is None or not await connected.service_client.check_health():
            raise RuntimeError("temporal is not reachable")

    return check
