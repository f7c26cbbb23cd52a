"""A server run as a child process: started, probed until ready, stopped, never orphaned."""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from orderly_platform.logs import get_logger

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 4000


class ServerFailedToStart(RuntimeError):
    """A server exited or did not become ready in time; the message carries its log tail."""


# Ports for servers come from below the kernel's ephemeral range: a port the kernel hands out
# as free (bind to 0) is one it will also hand to the next outgoing connection of any
# process, which then takes it before the server binds it (the Temporal dev server, binding
# four, lost that race under parallel tests). Below the range only another server can race.
_SERVER_PORTS = range(20_000, 32_768)


def _ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32_768, 61_000)  # Linux's default


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, outside the ephemeral range
    where it can be, so that no outgoing connection takes it before its server binds it."""
    ephemeral = _ephemeral_ports()
    candidates = [p for p in _SERVER_PORTS if p not in ephemeral]
    for port in random.sample(candidates, min(64, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # all taken: any free one
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


# Resolved once in the parent: between fork and exec the child must not dlopen (a loader
# lock held by another thread at fork time would never be released there).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(sig: int) -> Callable[[], None]:
    # Runs in the child between fork and exec (after any uid change, which would clear it):
    # if the parent is killed with SIGKILL, the kernel sends `sig` so no server is orphaned.
    def set_parent_death_signal() -> None:
        _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return set_parent_death_signal


class ManagedProcess:
    """One child process, in its own session so a terminal's Ctrl-C reaches only our parent,
    which then stops the children in order."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 30.0,
        user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self.user = user
        self.env = env
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(self.stop_signal),
                user=self.user,
                env=self.env,
            )
        log.info("server started", server=self.name, pid=self._process.pid)

    async def wait(self) -> int:
        assert self._process is not None, "not started"
        return await self._process.wait()

    async def wait_ready(self, probe: Callable[[], Awaitable[bool]], timeout: float) -> None:
        """Poll `probe` until it returns True; fail fast if the process exits meanwhile."""
        assert self._process is not None, "not started"
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            if self._process.returncode is not None:
                raise ServerFailedToStart(
                    f"{self.name} exited with status {self._process.returncode} while starting; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                if await probe():
                    return
            except (TimeoutError, OSError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise ServerFailedToStart(
                    f"{self.name} was not ready after {timeout:.0f} s; "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            # A readiness probe has no event to await: back off gently between attempts.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def stop(self) -> None:
        """Ask the process to stop; kill it if it has not within `stop_timeout`."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            process.send_signal(self.stop_signal)
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except ProcessLookupError:
            pass
        except TimeoutError:
            log.warning("server did not stop in time; killing it", server=self.name)
            process.kill()
            await process.wait()
        log.info("server stopped", server=self.name, returncode=process.returncode)

    def log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - _LOG_TAIL_BYTES))
                return log_file.read().decode(errors="replace")
        except OSError:
            return "(no log)"
