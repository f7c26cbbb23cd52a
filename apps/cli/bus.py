"""Reaching the stack's event bus from a verb: its partition layout and a Redis client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cli.errors import one_line
from eventbus.topology import Topology
from orderly_platform.settings import Settings
from orderly_platform.stack_file import redacted, require_endpoint

# A verb is interactive: an unreachable host should fail in seconds, not hang.
CONNECT_TIMEOUT_S = 5.0

T = TypeVar("T")


def topology(settings: Settings) -> Topology:
    """The deployment's stream layout; it must match the services' or streams go unseen."""
    # ORDERLY_STREAM_PARTITIONS, validated by load_settings (a bad value is a one-line error).
    return Topology(partitions=settings.stream_partitions)


def run_on_redis(settings: Settings, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run `work` with a client of the stack's Redis, closed afterwards, errors as one line."""
    url = require_endpoint(settings, "redis")
    try:
        return asyncio.run(_with_client(url, work))
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise click.ClickException(
            f"cannot reach redis at {redacted(url)}: {one_line(exc)}"
        ) from None
    except RedisError as exc:
        raise click.ClickException(f"redis at {redacted(url)} failed: {one_line(exc)}") from None


async def _with_client(url: str, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
    except ValueError as exc:  # not a redis:// URL
        raise click.ClickException(f"bad redis URL {redacted(url)}: {exc}") from None
    try:
        return await work(client)
    finally:
        await client.aclose()
