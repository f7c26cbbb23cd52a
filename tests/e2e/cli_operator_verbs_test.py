"""The operator verbs `streams`, `pending` and `dlq` as a user runs them, against a real Redis.

State is set up with the event bus library in this process; the CLI runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import redis.asyncio as aioredis

from contracts import StockReceived
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, Topology, partition_of
from orderly_platform.embedded import RedisServer
from orderly_platform.stack_file import write_stack_file

PARTITIONS = 8
TOPOLOGY = Topology(partitions=PARTITIONS)
# Partition 5 is only seen by a CLI that honours ORDERLY_STREAM_PARTITIONS=8 (the default is 4).
PARTITION = TOPOLOGY.partitions_of(CATALOG)[5]
STREAM = PARTITION.stream
DEAD_LETTERS = PARTITION.dead_letters


def skus(count: int) -> list[str]:
    """SKUs whose events land in PARTITION."""
    found = (f"SKU-{n}" for n in range(10_000))
    chosen = [sku for sku in found if partition_of(sku, PARTITIONS) == PARTITION.index]
    return chosen[:count]


class Result(NamedTuple):
    status: int
    out: str
    err: str


class Cli:
    def __init__(self, data_dir: Path, redis_url: str | None, **env: str) -> None:
        self.data_dir = data_dir
        # Only what the test chooses: an ORDERLY_* variable of the outer shell must not leak in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
        self.env |= {
            # The subprocess must import the same sources and requirements as this test.
            "PYTHONPATH": os.pathsep.join(sys.path),
            "ORDERLY_LOG_FORMAT": "json",
            "ORDERLY_STREAM_PARTITIONS": str(PARTITIONS),
            **env,
        }
        if redis_url is not None:
            self.env["ORDERLY_REDIS_URL"] = redis_url

    async def __call__(self, *args: str) -> Result:
        process = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "cli", *args, "--data-dir", str(self.data_dir)],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def json(self, *args: str) -> Any:
        result = await self(*args, "--json")
        assert result.status == 0, result.err
        return json.loads(result.out)


@pytest.fixture
def cli(tmp_path: Path, redis_server: RedisServer) -> Cli:
    return Cli(tmp_path / "stack", redis_server.url)


class FailOn:
    """A handler that fails on chosen SKUs and accepts the others."""

    def __init__(self, poison: Sequence[str]) -> None:
        self.poison = set(poison)

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        for entry in entries:
            data = entry.envelope().data
            assert isinstance(data, StockReceived)
            if data.sku in self.poison:
                raise ValueError(f"cannot apply {data.sku}")


async def append(redis: aioredis.Redis, skus: list[str]) -> list[str]:
    appended = await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(stock_received(sku)) for sku in skus]
    )
    assert {a.stream for a in appended} == {STREAM}
    return [a.entry_id for a in appended]


def consumer(
    redis: aioredis.Redis, poison: Sequence[str], group: str = "g", name: str = "c1", **config: Any
) -> StreamConsumer:
    settings = ConsumerConfig(
        group=group, consumer=name, block_ms=10, retry_backoff_s=0.0, **config
    )
    return StreamConsumer(redis, [PARTITION], FailOn(poison), settings)


async def leave_pending(
    redis: aioredis.Redis, poison: Sequence[str], group: str = "g", name: str = "c1"
) -> None:
    """One read by `group`: the poison entries fail and stay pending for consumer `name`."""
    runner = consumer(redis, poison, group, name)
    await runner.ensure_groups()
    assert await runner.run_once() > 0


async def dead_letter(redis: aioredis.Redis, poison: Sequence[str]) -> None:
    """Fail the entries once, then let a claim pass move them to the dead letters."""
    runner = consumer(redis, poison, max_deliveries=1)
    await runner.ensure_groups()
    while await runner.run_once():  # a failure, then its retry: dead-lettered
        pass
    assert runner.stats.dead_lettered == len(poison)


async def test_streams_shows_length_lag_and_pending_per_group(
    redis: aioredis.Redis, cli: Cli
) -> None:
    a, b, c = skus(3)
    ids = await append(redis, [a, b, c])
    await leave_pending(redis, [b])
    await redis.xgroup_create(STREAM, "late", id="0")

    [state] = await cli.json("streams")
    groups = sorted(state.pop("groups"), key=lambda group: group["name"])
    assert state == {"stream": STREAM, "length": 3, "dead_letters": 0}
    idle = groups[0].pop("oldest_pending_idle_ms")
    assert isinstance(idle, int) and idle >= 0
    assert groups == [
        {
            "name": "g",
            "consumers": 1,
            "pending": 2,  # b failed, and c waits behind it
            "lag": 0,
            "last_delivered_id": ids[2],
            "oldest_pending_id": ids[1],
        },
        {
            "name": "late",
            "consumers": 0,
            "pending": 0,
            "lag": 3,
            "last_delivered_id": "0-0",
            "oldest_pending_id": None,
            "oldest_pending_idle_ms": None,
        },
    ]

    result = await cli("streams")
    assert result.status == 0
    header, *rows = result.out.splitlines()
    assert header.split()[:4] == ["STREAM", "LENGTH", "DEAD", "GROUP"]
    assert sorted(row.split()[:8] for row in rows) == [
        [STREAM, "3", "0", "g", "1", "2", "0", ids[1]],
        [STREAM, "3", "0", "late", "0", "0", "3", "-"],
    ]


async def test_pending_lists_unacked_entries_and_filters_by_group_and_idle_time(
    redis: aioredis.Redis, cli: Cli
) -> None:
    a, b = skus(2)
    id_a, id_b = await append(redis, [a, b])
    await leave_pending(redis, [b], group="g", name="c1")
    await leave_pending(redis, [a], group="other", name="c2")  # b waits behind a there
    # Make one entry look two hours idle instead of waiting (JUSTID keeps its delivery count).
    await redis.xclaim(STREAM, "g", "c1", 0, [id_b], idle=7_200_000, justid=True)

    entries = await cli.json("pending")
    idle = {(entry["group"], entry.pop("entry_id")): entry.pop("idle_ms") for entry in entries}
    assert idle["g", id_b] >= 7_200_000 and 0 <= idle["other", id_a] < 7_200_000
    assert sorted(entries, key=lambda entry: entry["group"]) == [
        {"stream": STREAM, "group": "g", "consumer": "c1", "deliveries": 1},
        {"stream": STREAM, "group": "other", "consumer": "c2", "deliveries": 1},
        {"stream": STREAM, "group": "other", "consumer": "c2", "deliveries": 1},
    ]

    only_other = await cli.json("pending", "--group", "other")
    assert [(e["group"], e["entry_id"]) for e in only_other] == [("other", id_a), ("other", id_b)]
    assert await cli.json("pending", "--group", "nobody") == []
    old = await cli.json("pending", "--older-than", "1h")
    assert [(e["group"], e["entry_id"]) for e in old] == [("g", id_b)]
    assert await cli.json("pending", "--older-than", "3h") == []

    result = await cli("pending", "--older-than", "90m")
    assert result.status == 0
    header, *rows = result.out.splitlines()
    assert header.split() == ["STREAM", "GROUP", "ENTRY", "CONSUMER", "IDLE", "DELIVERIES"]
    assert [row.split()[:4] for row in rows] == [[STREAM, "g", id_b, "c1"]]


async def test_dead_letters_are_listed_shown_requeued_and_dropped(
    redis: aioredis.Redis, cli: Cli
) -> None:
    x, y = skus(2)
    id_x, id_y = await append(redis, [x, y])
    await dead_letter(redis, [x, y])

    [state] = await cli.json("streams")
    assert (state["dead_letters"], state["groups"][0]["pending"]) == (2, 0)

    letters = {letter["entry_id"]: letter for letter in await cli.json("dlq", "ls")}
    assert set(letters) == {id_x, id_y}
    letter_x, letter_y = letters[id_x], letters[id_y]
    assert letter_x["id"].startswith(f"{DEAD_LETTERS}/")
    assert {k: letter_x[k] for k in ("stream", "group", "consumer", "deliveries", "error")} == {
        "stream": STREAM,
        "group": "g",
        "consumer": "c1",
        "deliveries": 2,
        "error": f"ValueError: cannot apply {x}",
    }
    assert len(await cli.json("dlq", "ls", "--limit", "1")) == 1
    listed = await cli("dlq", "ls")
    assert listed.status == 0
    assert {row.split()[0] for row in listed.out.splitlines()[1:]} == {
        letter_x["id"],
        letter_y["id"],
    }

    details = await cli.json("dlq", "show", letter_x["id"])
    assert details["id"] == letter_x["id"]
    assert "Traceback" in details["error"]
    assert f"ValueError: cannot apply {x}" in details["error"]
    assert json.loads(details["event"])["data"]["sku"] == x
    shown = await cli("dlq", "show", letter_x["id"])
    assert shown.status == 0
    assert f"ValueError: cannot apply {x}" in shown.out
    assert f"id: {letter_x['id']}" in shown.out.splitlines()

    length = await redis.xlen(STREAM)
    requeued = await cli.json("dlq", "requeue", letter_x["id"])
    assert requeued.keys() == {"id", "stream", "entry_id"}
    assert (requeued["id"], requeued["stream"]) == (letter_x["id"], STREAM)
    assert await redis.xlen(STREAM) == length + 1
    [(new_id, fields)] = await redis.xrange(STREAM, requeued["entry_id"], requeued["entry_id"])
    assert new_id.decode() not in {id_x, id_y}
    assert fields[b"event"].decode() == details["event"]
    assert [letter["id"] for letter in await cli.json("dlq", "ls")] == [letter_y["id"]]

    dropped = await cli("dlq", "drop", letter_y["id"])
    assert dropped.status == 0
    assert dropped.out.startswith(f"dropped {letter_y['id']}: ")
    assert f"ValueError: cannot apply {y}" in dropped.out
    assert await cli.json("dlq", "ls") == []
    assert await redis.xlen(DEAD_LETTERS) == 0
    assert await redis.xlen(STREAM) == length + 1


@pytest.mark.parametrize("verb", ["show", "requeue", "drop"])
async def test_an_unknown_dead_letter_is_one_error_line_and_changes_nothing(
    redis: aioredis.Redis, cli: Cli, verb: str
) -> None:
    [x] = skus(1)
    await append(redis, [x])
    await dead_letter(redis, [x])
    [letter] = await cli.json("dlq", "ls")
    length = await redis.xlen(STREAM)

    for unknown in ("9-9", f"{DEAD_LETTERS}/9-9"):
        result = await cli("dlq", verb, unknown)
        assert (result.status, result.out) == (1, "")
        assert result.err.splitlines() == [f"Error: no dead letter {unknown}"]
    assert await cli.json("dlq", "ls") == [letter]
    assert await redis.xlen(STREAM) == length


VERBS = [
    ["streams"],
    ["pending"],
    ["dlq", "ls"],
    ["dlq", "show", "1-1"],
    ["dlq", "requeue", "1-1"],
    ["dlq", "drop", "1-1"],
]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
async def test_verbs_without_a_stack_fail_with_one_clear_line(
    tmp_path: Path, verb: list[str]
) -> None:
    cli = Cli(tmp_path / "nothing-here", redis_url=None)
    result = await cli(*verb)
    assert (result.status, result.out) == (1, "")
    assert result.err.splitlines() == [
        f"Error: no redis endpoint: is the stack running? Start it with "
        f"'./orderly up --data-dir {tmp_path / 'nothing-here'}' or set ORDERLY_REDIS_URL."
    ]


async def test_verbs_find_redis_through_the_stack_file(
    redis: aioredis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    await append(redis, skus(2))
    data_dir = tmp_path / "stack"
    data_dir.mkdir()
    write_stack_file(data_dir, {"redis": redis_server.url})
    [state] = await Cli(data_dir, redis_url=None).json("streams")
    assert (state["stream"], state["length"]) == (STREAM, 2)


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
async def test_unreachable_redis_is_one_error_line(
    tmp_path: Path, refusing_port: int, verb: list[str]
) -> None:
    url = f"redis://127.0.0.1:{refusing_port}"
    result = await Cli(tmp_path, redis_url=url)(*verb, "--json")
    assert (result.status, result.out) == (1, "")
    [line] = result.err.splitlines()
    assert line.startswith(f"Error: cannot reach redis at {url}: ")


@pytest.mark.parametrize("older_than", ["soon", "30", "-5s", "1d"])
async def test_a_bad_idle_time_is_a_usage_error(cli: Cli, older_than: str) -> None:
    result = await cli("pending", "--older-than", older_than)
    assert (result.status, result.out) == (2, "")
    assert "Invalid value for '--older-than'" in result.err


async def test_a_bad_partition_count_is_one_error_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path, redis_url="redis://127.0.0.1:1", ORDERLY_STREAM_PARTITIONS="0")
    result = await cli("streams")
    assert (result.status, result.out) == (1, "")
    [line] = result.err.splitlines()
    assert line.startswith("Error: ORDERLY_STREAM_PARTITIONS: ")
