import asyncio
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orderly_platform.embedded.process import ManagedProcess, ServerFailedToStart, free_port


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


async def never_ready() -> bool:
    return False


def is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}  # a zombie has already died; only its parent's reaping is left


async def await_condition(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_server_that_exits_while_starting_fails_with_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "crasher",
        python("import sys; print('bad config line 3', flush=True); sys.exit(3)"),
        log_path=tmp_path / "crasher.log",
    )
    await process.start()
    with pytest.raises(ServerFailedToStart, match=r"(?s)exited with status 3.*bad config line 3"):
        await process.wait_ready(never_ready, timeout=30)


async def test_a_server_that_never_gets_ready_times_out(tmp_path: Path) -> None:
    process = ManagedProcess(
        "sleeper", python("import time; time.sleep(60)"), log_path=tmp_path / "s.log"
    )
    await process.start()
    try:
        with pytest.raises(ServerFailedToStart, match="was not ready after"):
            await process.wait_ready(never_ready, timeout=0.3)
    finally:
        await process.stop()
    assert process.returncode == -signal.SIGTERM


async def test_stop_kills_a_server_that_ignores_its_stop_signal(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready"
    process = ManagedProcess(
        "stubborn",
        python(f"""
            import signal, time, pathlib
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pathlib.Path({str(ready_file)!r}).touch()
            time.sleep(60)
            """),
        log_path=tmp_path / "stubborn.log",
        stop_timeout=0.5,
    )
    await process.start()

    async def handler_installed() -> bool:
        return ready_file.exists()

    await process.wait_ready(handler_installed, timeout=30)
    await process.stop()
    assert process.returncode == -signal.SIGKILL


async def test_children_die_when_their_parent_is_killed(tmp_path: Path) -> None:
    # A parent process starts a server, reports its pid, and is then killed with SIGKILL:
    # the kernel's parent-death signal must take the server down with it.
    pid_file = tmp_path / "child.pid"
    parent_code = f"""
        import asyncio, pathlib, sys
        from orderly_platform.embedded.process import ManagedProcess

        async def main():
            child = ManagedProcess(
                "orphan-candidate",
                [sys.executable, "-c", "import time; time.sleep(120)"],
                log_path=pathlib.Path({str(tmp_path / "child.log")!r}),
            )
            await child.start()
            pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
            await asyncio.sleep(120)

        asyncio.run(main())
    """
    parent = await asyncio.create_subprocess_exec(
        *python(parent_code), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )
    try:
        assert await await_condition(lambda: pid_file.exists() and pid_file.read_text())
        child_pid = int(pid_file.read_text())
        assert not is_gone(child_pid)
    finally:
        parent.kill()
        await parent.wait()
    assert await await_condition(lambda: is_gone(child_pid)), "child outlived its parent"


def test_free_ports_lie_outside_the_ephemeral_range_and_can_be_bound() -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {free_port() for _ in range(20)}
    assert all(not low <= port <= high for port in ports), ports
    assert len(ports) > 1  # chosen at random, so parallel tests rarely pick the same one
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
