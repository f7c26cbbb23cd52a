"""Reaching the stack's Temporal from a verb, an unreachable server as one line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from temporalio.client import Client

from cli.errors import one_line
from orderly_platform.settings import Settings
from orderly_platform.stack_file import require_endpoint
from saga.converter import DATA_CONVERTER

T = TypeVar("T")
# The SDK retries a refused connection for a long while; a verb should say so in seconds.
CONNECT_TIMEOUT_S = 5.0


async def connect_temporal(settings: Settings) -> Client:
    address = require_endpoint(settings, "temporal")
    try:
        return await asyncio.wait_for(
            Client.connect(
                address, namespace=settings.temporal_namespace, data_converter=DATA_CONVERTER
            ),
            CONNECT_TIMEOUT_S,
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        raise click.ClickException(f"cannot reach temporal at {address}: {one_line(exc)}") from None


def run_on_temporal(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    async def run() -> T:
        return await work(await connect_temporal(settings))

    return asyncio.run(run())
