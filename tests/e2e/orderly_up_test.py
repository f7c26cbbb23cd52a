"""`orderly up` as a user runs it: endpoints printed, data kept between runs, nothing left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

import migrations
from projections.registry import PROJECTIONS

EXPECTED_LINES = [
    "order-service",
    "payment-provider",
    "redis",
    "postgres",
    "temporal",
    "temporal-ui",
    "projector",
    "saga-worker",
    "inventory-service",
    "payment-service",
    "notification-service",
    "api-token",
]
START_TIMEOUT = 180.0


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def cli_env() -> dict[str, str]:
    # The subprocess must import the same sources and requirements as this test.
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "ORDERLY_LOG_FORMAT": "json"}


def processes_using(data_dir: Path) -> list[int]:
    """Pids of live processes whose command line or environment mentions the data dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cmdline += (
                (entry / "environ").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(data_dir) in cmdline and state not in {"Z", "X"}:
            pids.append(int(entry.name))
    return pids


class RunningUp:
    def __init__(self, process: asyncio.subprocess.Process, endpoints: dict[str, str]) -> None:
        self.process = process
        self.endpoints = endpoints

    async def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), 120)


async def start_up(data_dir: Path) -> RunningUp:
    data_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = data_dir.parent / f"{data_dir.name}-up.stderr"
    with stderr_path.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            *cli_command("up", "--data-dir", str(data_dir)),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=cli_env(),
        )
    assert process.stdout is not None
    endpoints: dict[str, str] = {}

    async def read_endpoints() -> None:
        while "api-token" not in endpoints:
            line = (await process.stdout.readline()).decode()  # type: ignore[union-attr]
            if not line:
                status = await process.wait()
                raise AssertionError(
                    f"up exited early with status {status}:\n{stderr_path.read_text()[-3000:]}"
                )
            name, _, url = line.strip().partition(": ")
            endpoints[name] = url

    await asyncio.wait_for(read_endpoints(), START_TIMEOUT)
    return RunningUp(process, endpoints)


async def write_markers(endpoints: dict[str, str]) -> None:
    client = aioredis.Redis.from_url(endpoints["redis"])
    await client.xadd("{orders:0}:marker", {"run": "first"})
    await client.aclose()
    connection = await asyncpg.connect(endpoints["postgres"])
    await connection.execute("CREATE TABLE marker (note text)")
    await connection.execute("INSERT INTO marker VALUES ('first')")
    await connection.close()


async def read_markers(endpoints: dict[str, str]) -> tuple[list[bytes], list[str]]:
    client = aioredis.Redis.from_url(endpoints["redis"])
    entries: Any = await client.xrange("{orders:0}:marker")
    stream = [fields[b"run"] for _, fields in entries]
    await client.aclose()
    connection = await asyncpg.connect(endpoints["postgres"])
    notes = [row["note"] for row in await connection.fetch("SELECT note FROM marker")]
    revision = await connection.fetchval("SELECT version_num FROM alembic_version")
    await connection.close()
    assert revision is not None, "up did not run the migrations"
    return stream, notes


async def temporal_serves(address: str) -> bool:
    client = await Client.connect(address)
    await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
    return True


async def order_service_accepts_events(endpoints: dict[str, str]) -> bool:
    event = {
        "specversion": "1.0",
        "id": "e2e-1",
        "source": "/e2e",
        "type": "orderly.StockReceived.v1",
        "time": "2026-11-28T10:00:00Z",
        "subject": "SKU-E2E",
        "data": {"sku": "SKU-E2E", "quantity": 2, "warehouse": "w"},
    }
    headers = {
        "Authorization": f"Bearer {endpoints['api-token']}",
        "Content-Type": "application/cloudevents+json",
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{endpoints['order-service']}/readyz") as ready:
            assert ready.status == 200
        url = f"{endpoints['order-service']}/events"
        async with session.post(url, json=event, headers=headers) as response:
            assert response.status == 202, await response.text()
            [answer] = (await response.json())["events"]
    # The projector (its own process) archives it in Postgres with its stream position. (The
    # stream itself may already be trimmed by then: archived and acked entries can go.)
    connection = await asyncpg.connect(endpoints["postgres"])
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            row = await connection.fetchrow(
                "SELECT stream, entry_ms, entry_seq FROM event_archive WHERE source = $1 AND id = $2",
                event["source"],
                event["id"],
            )
            if row is not None:
                break
            assert asyncio.get_running_loop().time() < deadline, "event never archived"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    return bool(
        row["stream"] == answer["stream"]
        and f"{row['entry_ms']}-{row['entry_seq']}" == answer["entry_id"]
    )


async def inventory_follows_catalog_and_stock(endpoints: dict[str, str]) -> bool:
    """The 2 units received earlier are overwritten by the catalog's on_hand of 10 (a catalog
    update sets stock); the 3 received after it add up to 13."""
    base = endpoints["order-service"]
    headers = {"Authorization": f"Bearer {endpoints['api-token']}"}
    item = {"price": 1250, "currency": "EUR", "on_hand": 10}
    stock = {
        "specversion": "1.0",
        "id": "e2e-stock-2",
        "source": "/e2e",
        "type": "orderly.StockReceived.v1",
        "time": "2026-11-28T10:00:01Z",
        "subject": "SKU-E2E",
        "data": {"sku": "SKU-E2E", "quantity": 3, "warehouse": "w"},
    }
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{base}/catalog/SKU-E2E", json=item, headers=headers) as put:
            assert put.status == 202, await put.text()
        events_headers = {**headers, "Content-Type": "application/cloudevents+json"}
        async with session.post(f"{base}/events", json=stock, headers=events_headers) as post:
            assert post.status == 202, await post.text()
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # the read model trails the stream by the projection lag
            async with session.get(f"{base}/inventory/SKU-E2E") as response:
                body = await response.json() if response.status == 200 else None
            if body is not None and body["on_hand"] == 13:
                break
            assert asyncio.get_running_loop().time() < deadline, f"inventory stuck at {body}"
            await asyncio.sleep(0.05)
    return bool(
        body
        == {
            "sku": "SKU-E2E",
            "on_hand": 13,
            "reserved": 0,
            "available": 13,
            "price": 1250,
            "currency": "EUR",
        }
    )


async def inventory_of(endpoints: dict[str, str], sku: str) -> Any:
    url = f"{endpoints['order-service']}/inventory/{sku}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.json()


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *cli_command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_up_prints_endpoints_keeps_data_and_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"

    first = await start_up(data_dir)
    try:
        assert list(first.endpoints) == EXPECTED_LINES
        stack_json = json.loads((data_dir / "stack.json").read_text())
        assert stack_json == first.endpoints
        assert await temporal_serves(first.endpoints["temporal"])
        assert await order_service_accepts_events(first.endpoints)
        assert await inventory_follows_catalog_and_stock(first.endpoints)
        await write_markers(first.endpoints)

        # A second `up` on the same data dir is refused while the first runs.
        status, _, err = await run_cli("up", "--data-dir", str(data_dir))
        assert status != 0
        assert "already running" in err

        # Other verbs find the stack through stack.json.
        status, out, _ = await run_cli("migrate", "--data-dir", str(data_dir), "--json")
        assert status == 0
        assert json.loads(out) == {
            "postgres": first.endpoints["postgres"],
            "revision": migrations.head_revision(),
        }
        status, out, _ = await run_cli(
            "projections", "status", "--data-dir", str(data_dir), "--json"
        )
        assert status == 0
        lags = {lag["projection"]: lag for lag in json.loads(out)}
        assert set(lags) == set(PROJECTIONS)
        # The inventory applied the catalog stream (the test waited for it above).
        assert any(p["checkpoint"] != "0-0" for p in lags["inventory"]["partitions"])
        # Rebuilding a read model from the events gives the same answers, swapped in live.
        before = await inventory_of(first.endpoints, "SKU-E2E")
        status, out, err = await run_cli(
            "projections", "rebuild", "inventory", "--data-dir", str(data_dir), "--json"
        )
        assert status == 0, err
        assert json.loads(out)["events"] >= 3 and "rebuilding inventory" in err
        assert await inventory_of(first.endpoints, "SKU-E2E") == before
        status, _, err = await run_cli(
            "projections", "rebuild", "archive", "--data-dir", str(data_dir)
        )
        assert status == 2 and "'archive' is not one of" in err
        status, out, err = await run_cli(
            "migrate", "--data-dir", str(data_dir), "--revision", "nope"
        )
        assert status == 1
        assert len(err.strip().splitlines()) == 1
        assert "cannot migrate the database" in err and "nope" in err
    finally:
        status = await first.stop(signal.SIGINT)
    assert status == 0
    assert processes_using(data_dir) == []
    assert not (data_dir / "stack.json").exists()

    second = await start_up(data_dir)
    try:
        stream, notes = await read_markers(second.endpoints)
        assert stream == [b"first"]
        assert notes == ["first"]
    finally:
        status = await second.stop(signal.SIGTERM)
    assert status == 0
    assert processes_using(data_dir) == []


async def test_verbs_without_a_stack_fail_with_one_clear_line(tmp_path: Path) -> None:
    status, out, err = await run_cli("migrate", "--data-dir", str(tmp_path / "nothing-here"))
    assert status == 1
    assert out == ""
    assert err.strip().splitlines() == [
        f"Error: no postgres endpoint: is the stack running? Start it with "
        f"'./orderly up --data-dir {tmp_path / 'nothing-here'}' or set ORDERLY_POSTGRES_URL."
    ]


@pytest.mark.parametrize("bad_port", ["-1", "70000", "http"])
async def test_up_refuses_a_bad_port_and_starts_nothing(tmp_path: Path, bad_port: str) -> None:
    status, out, err = await run_cli("up", "--data-dir", str(tmp_path), "--http-port", bad_port)
    assert status == 2
    assert "Invalid value for '--http-port'" in err
    assert out == ""
    assert processes_using(tmp_path) == []
