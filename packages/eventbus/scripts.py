"""Lua scripts shipped beside a package (this one, or one above it), run by SHA, and decoding
Redis replies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

ScriptCall = tuple[Sequence[Any], Sequence[Any]]  # (keys, args)


@dataclass(frozen=True)
class LuaScript:
    """A script run with EVALSHA and loaded only when Redis answers NOSCRIPT.

    redis-py's own pipelines ask SCRIPT EXISTS before every execution: a second round trip
    on every append, which the benchmark showed to cost a fifth of a request's CPU.
    """

    source: str

    @classmethod
    def named(cls, name: str, package: str = "eventbus") -> LuaScript:
        """The script ``name`` shipped as a resource of ``package`` (this one by default)."""
        return cls(resources.files(package).joinpath(name).read_text())

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, redis: aioredis.Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        [reply] = await self.run_many(redis, [(keys, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def run_many(self, redis: aioredis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run every call in one round trip; errors come back as exception values.

        A NOSCRIPT reply means that call did not run, so loading and re-running just those
        calls can never apply anything twice.
        """
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            async with redis.pipeline(transaction=False) as pipe:
                for index in todo:
                    keys, args = calls[index]
                    pipe.evalsha(self.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            for index, answer in zip(todo, answers, strict=True):
                replies[index] = answer
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo or attempt == 1:
                break
            await redis.script_load(self.source)  # first use, or Redis restarted without it
        return replies


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
