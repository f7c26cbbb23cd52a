"""A real redis-server with AOF persistence under a data dir."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orderly_platform.embedded.process import ManagedProcess, ServerFailedToStart, free_port

AppendFsync = Literal["always", "everysec", "no"]


def find_redis_server() -> str:
    path = os.environ.get("ORDERLY_REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not path:
        raise ServerFailedToStart(
            "redis-server was not found on PATH: install it (Debian: 'apt-get install -y "
            "redis-server') or set ORDERLY_REDIS_SERVER_BIN to its path."
        )
    return path


class RedisServer:
    name = "redis"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: AppendFsync = "everysec",
        start_timeout: float = 30.0,
    ) -> None:
        self.dir = data_dir / "redis"
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = ManagedProcess(
            self.name,
            [
                find_redis_server(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                # Every acknowledged write goes to the append-only file; RDB snapshots are
                # redundant with it and would only add fork pauses.
                "--appendonly",
                "yes",
                "--appendfsync",
                appendfsync,
                "--save",
                "",
                "--logfile",
                "",
            ],
            log_path=data_dir / "logs" / "redis.log",
            # SIGTERM makes Redis flush the AOF and exit cleanly.
            stop_signal=signal.SIGTERM,
        )

    def endpoints(self) -> dict[str, str]:
        return {self.name: self.url}

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        await self.process.start()
        await self.process.wait_ready(self._ping, self.start_timeout)

    async def stop(self) -> None:
        await self.process.stop()

    async def _ping(self) -> bool:
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            # PING fails with LOADING while a large AOF is replayed: not ready yet.
            if not await client.ping():
                return False
            info = await client.info("server")
        except RedisError:
            return False
        finally:
            await client.aclose()
        # Ports are picked free, then bound by the server: another process may have won the
        # same port meanwhile. Only our own server counts as ready.
        if info.get("process_id") != self.process.pid:
            raise ServerFailedToStart(
                f"port {self.port} is served by another Redis (pid {info.get('process_id')})"
            )
        return True
