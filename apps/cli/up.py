"""`orderly up`: the whole platform on one machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import click
import msgspec

import migrations
from cli.migrate import MIGRATION_ERRORS
from cli.options import emit, stack_options
from orderly_platform.embedded import (
    EmbeddedServer,
    EmbeddedStack,
    PythonService,
    ServerFailedToStart,
    first_to_exit,
)
from orderly_platform.logs import configure_logging, get_logger
from orderly_platform.settings import Settings
from orderly_platform.stack_file import remove_stack_file, write_stack_file

log = get_logger(__name__)

# The order in which `up` prints endpoints; services that do not run yet are left out.
ENDPOINT_ORDER = (
    "order-service",
    "payment-provider",
    "redis",
    "postgres",
    "temporal",
    "temporal-ui",
    # The other services serve only /healthz, /readyz and /metrics: listed for scraping.
    "projector",
    "saga-worker",
    "inventory-service",
    "payment-service",
    "notification-service",
)


class StackAlreadyRunning(click.ClickException):
    pass


@click.command("up")
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the order service's HTTP API (default: $ORDERLY_HTTP_PORT or a free port).",
)
@stack_options
def up_command(settings: Settings, as_json: bool, http_port: int | None) -> None:
    """Start Redis, Postgres and Temporal (and every service) and print their endpoints."""
    configure_logging(settings.log_level, settings.log_format)
    if http_port is not None:
        settings = msgspec.structs.replace(settings, http_port=http_port)
    data_dir = settings.data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot use {data_dir} as the data dir: {exc}") from None
    with _exclusive(data_dir):
        try:
            exit_code = asyncio.run(_run(settings, data_dir, as_json))
        except ServerFailedToStart as exc:
            raise click.ClickException(str(exc)) from None
        except MIGRATION_ERRORS as exc:
            raise click.ClickException(f"migrating the read models failed: {exc}") from None
    raise SystemExit(exit_code)


async def _run(settings: Settings, data_dir: Path, as_json: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    stack = EmbeddedStack(data_dir)
    generated_token = None if settings.api_token else secrets.token_urlsafe(24)
    token = settings.api_token or generated_token
    assert token is not None
    services: list[PythonService] = []

    async def start() -> None:
        await stack.start()
        await migrations.upgrade_async(stack.postgres.url)
        services.extend(_services(settings, stack, token))
        await asyncio.gather(*(service.start() for service in services))

    try:
        if not await _first(start(), stop.wait()):
            return 0  # asked to stop while starting
        running: list[EmbeddedServer] = [*services, *stack.servers]
        available = {name: url for server in running for name, url in server.endpoints().items()}
        endpoints = {name: available[name] for name in ENDPOINT_ORDER if name in available}
        write_stack_file(data_dir, {**endpoints, "api-token": token})
        lines = [f"{name}: {url}" for name, url in endpoints.items()]
        if generated_token:
            lines.append(f"api-token: {generated_token}")
        emit(as_json, {**endpoints, "api-token": token}, lines)

        crashed = asyncio.ensure_future(first_to_exit(running))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({crashed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if crashed.done():
            server = crashed.result()
            log.error(
                "a process exited unexpectedly; stopping the stack",
                server=server.name,
                returncode=server.process.returncode,
                log_tail=server.process.log_tail(),
            )
            return 1
        crashed.cancel()
        return 0
    finally:
        remove_stack_file(data_dir)
        # Services first: they drain their in-flight work into the servers.
        await asyncio.gather(*(service.stop() for service in services))
        await stack.stop()


def _services(settings: Settings, stack: EmbeddedStack, token: str) -> list[PythonService]:
    env = {
        "ORDERLY_DATA_DIR": str(stack.data_dir),
        "ORDERLY_REDIS_URL": stack.redis.url,
        "ORDERLY_POSTGRES_URL": stack.postgres.url,
        "ORDERLY_TEMPORAL_ADDRESS": stack.temporal.address,
        "ORDERLY_API_TOKEN": token,
        "ORDERLY_STREAM_PARTITIONS": str(settings.stream_partitions),
        "ORDERLY_LOG_LEVEL": settings.log_level,
    }
    # The simulator stands in for the payment provider; the payment service charges there.
    provider = PythonService("payment-provider", "payment_provider_sim", stack.data_dir, env=env)
    payments_env = {**env, "ORDERLY_PAYMENT_PROVIDER_URL": provider.url}
    return [
        PythonService(
            "order-service",
            "order_service",
            stack.data_dir,
            env=env,
            port=settings.http_port or None,
        ),
        provider,
        # Their HTTP ports serve only health checks and metrics, not endpoints users call.
        PythonService("projector", "projector", stack.data_dir, env=env),
        PythonService("saga-worker", "saga_worker", stack.data_dir, env=env),
        PythonService("inventory-service", "inventory_service", stack.data_dir, env=env),
        PythonService("payment-service", "payment_service", stack.data_dir, env=payments_env),
        PythonService("notification-service", "notification_service", stack.data_dir, env=env),
    ]


async def _first(work: Coroutine[Any, Any, None], stop_requested: Coroutine[Any, Any, Any]) -> bool:
    """Run `work` unless a stop is requested first; True when the work completed."""
    work_task = asyncio.ensure_future(work)
    stop_task = asyncio.ensure_future(stop_requested)
    done, _ = await asyncio.wait({work_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if work_task in done:
        stop_task.cancel()
        work_task.result()  # re-raise a start failure
        return True
    work_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work_task
    return False


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """One `up` per data dir: two would fight over the same Redis and Postgres files."""
    fd = os.open(data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackAlreadyRunning(
                f"another 'orderly up' is already running on {data_dir}."
            ) from None
        yield
    finally:
        os.close(fd)
