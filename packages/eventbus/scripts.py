"""The Lua scripts shipped beside this package, and decoding Redis replies."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def load_script(redis: aioredis.Redis, name: str) -> AsyncScript:
    """Register ``eventbus/<name>``; redis-py runs it by SHA and reloads it after a restart."""
    return redis.register_script(resources.files("eventbus").joinpath(name).read_text())


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
