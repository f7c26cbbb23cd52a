"""Redis, Postgres and Temporal started together under one data dir, and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from orderly_platform.embedded.postgres_server import PostgresServer
from orderly_platform.embedded.process import ManagedProcess
from orderly_platform.embedded.redis_server import RedisServer
from orderly_platform.embedded.temporal_server import TemporalServer
from orderly_platform.logs import get_logger

log = get_logger(__name__)


class EmbeddedServer(Protocol):
    """A server or service of the stack: the three backing servers and the orderly apps."""

    name: str
    process: ManagedProcess

    def endpoints(self) -> dict[str, str]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EmbeddedStack:
    """The three servers of orderly, started and stopped together."""

    def __init__(self, data_dir: Path, *, ui: bool = True, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.redis = RedisServer(self.data_dir)
        self.postgres = PostgresServer(self.data_dir, durable=durable)
        self.temporal = TemporalServer(self.data_dir, ui=ui)
        self.servers: Sequence[EmbeddedServer] = (self.redis, self.postgres, self.temporal)

    def endpoints(self) -> dict[str, str]:
        endpoints: dict[str, str] = {}
        for server in self.servers:
            endpoints.update(server.endpoints())
        return endpoints

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        results = await asyncio.gather(
            *(server.start() for server in self.servers), return_exceptions=True
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            await self.stop()
            raise failures[0]
        log.info("embedded stack ready", **self.endpoints())

    async def stop(self) -> None:
        # Independent servers: stop them concurrently; each waits for its own clean exit.
        await asyncio.gather(*(server.stop() for server in self.servers))


async def first_to_exit(servers: Sequence[EmbeddedServer]) -> EmbeddedServer:
    """Wait until one of the servers' processes exits on its own, and return that server."""
    waits = {asyncio.ensure_future(server.process.wait()): server for server in servers}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return waits[next(iter(done))]
    finally:
        for task in waits:
            task.cancel()
