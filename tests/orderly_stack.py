"""One `orderly up` as the end-to-end tests run it: every service its own process on real
Redis, Postgres, Temporal and the payment provider simulator, reached through the endpoints
`up` prints."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from temporalio.client import Client

from eventbus.topology import CATALOG, Topology
from saga.converter import DATA_CONVERTER
from tests.orderly_client import (
    CliResult,
    OrderlyClient,
    activity_attempts,
    cli_env,
    keep_logs,
    run_cli,
    until,
)

START_TIMEOUT = 240.0


@dataclass
class Stack:
    data_dir: Path
    partitions: int
    endpoints: dict[str, str]
    api: OrderlyClient
    redis: aioredis.Redis
    temporal: Client
    # Orders a test module placed, by how each must end: the CLI's verbs are checked on them.
    placed: dict[str, str] = field(default_factory=dict)

    async def stock(self, sku: str) -> tuple[int, int]:
        """(on_hand, reserved) of the SKU's live catalog entry in Redis, where stock lives."""
        key = Topology(partitions=self.partitions).partition(CATALOG, sku).catalog_item_key(sku)
        on_hand, reserved = await self.redis.hmget(key, "on_hand", "reserved")
        return int(on_hand or 0), int(reserved or 0)

    async def until_inventory(self, sku: str, on_hand: int) -> dict[str, Any]:
        """GET /inventory/{sku} once the read model shows ``on_hand`` and nothing reserved."""

        async def settled() -> dict[str, Any] | None:
            item = await self.api.inventory(sku)
            done = item is not None and item["on_hand"] == on_hand and item["reserved"] == 0
            return item if done else None

        return await until(settled, 60, f"inventory of {sku} at {on_hand} on hand, 0 reserved")

    async def cli(self, *args: str) -> CliResult:
        return await run_cli(*args, data_dir=self.data_dir, partitions=self.partitions)

    async def capture_attempts(self, order_id: str) -> int:
        """The attempt of the saga's capture that got the provider's answer."""
        [attempt] = await activity_attempts(self.temporal, order_id, "capture_payment")
        return attempt


def orderly_up(
    data_dir: Path, *, name: str, partitions: int, **settings: str
) -> AbstractAsyncContextManager[Stack]:
    """Run `orderly up --data-dir DIR` with these ORDERLY_* settings until the block ends,
    then stop it with SIGTERM and require a clean exit. ``name`` labels the kept logs."""
    return _orderly_up(data_dir, name, partitions, settings, as_json=False)


def orderly_up_json(
    data_dir: Path, *, name: str, partitions: int, **settings: str
) -> AbstractAsyncContextManager[Stack]:
    """``orderly_up`` through `up --json`: its endpoints read as the one JSON object it prints."""
    return _orderly_up(data_dir, name, partitions, settings, as_json=True)


@asynccontextmanager
async def _orderly_up(
    data_dir: Path, name: str, partitions: int, settings: dict[str, str], *, as_json: bool
) -> AsyncIterator[Stack]:
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}.up.stderr"
    env = cli_env(ORDERLY_STREAM_PARTITIONS=str(partitions), ORDERLY_LOG_LEVEL="INFO", **settings)
    with stderr_path.open("wb") as stderr:
        up = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            "up",
            "--data-dir",
            str(data_dir),
            *(["--json"] if as_json else []),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        read = _json_endpoints if as_json else _endpoints
        endpoints = await asyncio.wait_for(read(up, stderr_path), START_TIMEOUT)
        redis = aioredis.Redis.from_url(endpoints["redis"])
        temporal = await Client.connect(endpoints["temporal"], data_converter=DATA_CONVERTER)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = OrderlyClient(
                session,
                endpoints["order-service"],
                endpoints["payment-provider"],
                endpoints["api-token"],
            )
            yield Stack(data_dir, partitions, endpoints, api, redis, temporal)
        await redis.aclose()
    finally:
        keep_logs(data_dir, name)
        if up.returncode is None:
            up.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(up.wait(), 120)
    assert status == 0, stderr_path.read_text()[-3000:]


async def _endpoints(up: asyncio.subprocess.Process, stderr_path: Path) -> dict[str, str]:
    """The `name: url` lines `up` prints once everything is ready (api-token comes last)."""
    assert up.stdout is not None
    endpoints: dict[str, str] = {}
    while "api-token" not in endpoints:
        line = (await up.stdout.readline()).decode()
        if not line:
            status = await up.wait()
            raise AssertionError(
                f"up exited with status {status}:\n{stderr_path.read_text()[-3000:]}"
            )
        name, _, url = line.strip().partition(": ")
        endpoints[name] = url
    return endpoints


async def _json_endpoints(up: asyncio.subprocess.Process, stderr_path: Path) -> dict[str, str]:
    """The one JSON object `up --json` prints once everything is ready."""
    assert up.stdout is not None
    line = await up.stdout.readline()
    if not line:
        status = await up.wait()
        raise AssertionError(f"up exited with status {status}:\n{stderr_path.read_text()[-3000:]}")
    endpoints = json.loads(line)
    assert isinstance(endpoints, dict) and all(isinstance(v, str) for v in endpoints.values())
    return endpoints
