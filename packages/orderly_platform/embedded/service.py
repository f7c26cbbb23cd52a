"""An orderly app run as its own process (``python -m <module>``), ready when /readyz says so.

Settings reach it as ORDERLY_* environment variables, exactly as in a container.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import aiohttp

from orderly_platform.embedded.process import ManagedProcess, free_port


class PythonService:
    def __init__(
        self,
        name: str,
        module: str,
        data_dir: Path,
        *,
        env: dict[str, str],
        port: int | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout = start_timeout
        self.process = ManagedProcess(
            name,
            [sys.executable, "-m", module],
            log_path=data_dir / "logs" / f"{name}.log",
            # aiohttp and the consumers stop gracefully on SIGTERM: finish in-flight work first.
            stop_signal=signal.SIGTERM,
            env={
                **os.environ,
                # The child imports the same code as this process, wherever that came from.
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                "ORDERLY_LOG_FORMAT": "json",
                **env,
                "ORDERLY_HTTP_PORT": str(self.port),
            },
        )

    def endpoints(self) -> dict[str, str]:
        return {self.name: self.url}

    async def start(self) -> None:
        await self.process.start()
        await self.process.wait_ready(self._ready, self.start_timeout)

    async def stop(self) -> None:
        await self.process.stop()

    async def _ready(self) -> bool:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(f"{self.url}/readyz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False
