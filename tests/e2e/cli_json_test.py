"""Every verb of the `orderly` CLI as scripts use it: `--json` on one running stack, the load
generator's report, `sagas stuck` finding an order the payment provider holds up; and, with
no stack at all, one clear error line per verb.

The stack tests run in file order and share one `orderly up`: the load runs first, then
the verbs look at what it left, then an order is held up on purpose (last, since it leaves
an order in flight for a while).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from tests.orderly_client import NO_FAULTS, TERMINAL, run_cli
from tests.orderly_stack import Stack, orderly_up_json

PARTITIONS = 2
# Short payment attempts, so the held-up order retries (and ends) soon after the provider
# answers again.
PAYMENT_ATTEMPT_S = 5


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data_dir = tmp_path_factory.mktemp("cli-json") / "stack"
    settings = {"ORDERLY_SAGA_PAYMENT_ATTEMPT_S": str(PAYMENT_ATTEMPT_S)}
    # `up --json`: the endpoints come as one JSON object (the stack's first verb in JSON).
    async with orderly_up_json(
        data_dir, name="cli_json_test", partitions=PARTITIONS, **settings
    ) as up:
        assert {"order-service", "redis", "postgres", "temporal", "api-token"} <= set(up.endpoints)
        yield up


async def statuses_of_run(stack: Stack, run: str) -> dict[str, str]:
    """The orders a load run placed, as the read model holds them (its customers are named
    after the run)."""
    connection = await asyncpg.connect(stack.endpoints["postgres"])
    try:
        rows = await connection.fetch(
            "SELECT order_id, status FROM orders WHERE customer_id LIKE $1", f"load-{run}-%"
        )
    finally:
        await connection.close()
    return {row["order_id"]: row["status"] for row in rows}


# --- load --------------------------------------------------------------------------------


async def test_load_places_orders_that_all_end_and_reports_them(stack: Stack) -> None:
    result = await stack.cli("load", "--orders", "20", "--concurrency", "5", "--json")

    report = result.json()
    assert (report["mode"], report["orders"], report["concurrency"]) == ("closed", 20, 5)
    assert sum(report["outcomes"].values()) == 20
    assert set(report["outcomes"]) <= TERMINAL, report
    assert report["outcomes"].get("CONFIRMED", 0) > 0 and report["errors"] == []
    for key in ("accept_latency_ms", "end_to_end_latency_ms"):
        p50, p95, p99, top = (report[key][q] for q in ("p50", "p95", "p99", "max"))
        assert 0 < p50 <= p95 <= p99 <= top, report
    # An order ends after it is accepted, so its end-to-end time includes its accept time.
    assert report["end_to_end_latency_ms"]["max"] >= report["accept_latency_ms"]["max"]
    assert report["orders_per_s"] > 0 and report["elapsed_s"] > 0
    # The progress bar goes to stderr; stdout is the report alone.
    assert f"load {report['run']}" in result.err

    statuses = await statuses_of_run(stack, report["run"])
    assert len(statuses) == 20 and set(statuses.values()) <= TERMINAL
    counted: dict[str, int] = {}
    for status in statuses.values():
        counted[status] = counted.get(status, 0) + 1
    assert counted == report["outcomes"]


async def test_load_at_a_rate_for_a_duration(stack: Stack) -> None:
    report = (await stack.cli("load", "--rate", "5", "--duration", "1s", "--json")).json()

    assert (report["mode"], report["rate"], report["duration_s"]) == ("open", 5.0, 1.0)
    assert report["orders"] == 5 and sum(report["outcomes"].values()) == 5
    assert set(report["outcomes"]) <= TERMINAL
    assert set((await statuses_of_run(stack, report["run"])).values()) <= TERMINAL


async def test_load_prints_a_readable_report(stack: Stack) -> None:
    result = await stack.cli("load", "--orders", "3", "--concurrency", "3")

    assert result.status == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("run ") and ": 3 orders, closed loop, 3 in flight" in lines[0]
    assert lines[1].startswith("throughput: ")
    assert ["LATENCY", "P50", "P95", "P99", "MAX"] in [line.split() for line in lines]
    assert ["OUTCOME", "ORDERS", "SHARE"] in [line.split() for line in lines]


# --- every verb's --json -----------------------------------------------------------------


async def test_the_operator_verbs_answer_json(stack: Stack) -> None:
    async def json_of(*args: str) -> Any:
        return (await stack.cli(*args, "--json")).json()

    streams = await json_of("streams")
    assert streams and {"stream", "length", "dead_letters", "groups"} <= streams[0].keys()
    assert isinstance(await json_of("pending"), list)
    assert await json_of("dlq", "ls") == []

    lags = await json_of("projections", "status")
    assert {"orders", "inventory"} <= {lag["projection"] for lag in lags}
    assert all(lag["unapplied"] >= 0 for lag in lags)
    rebuilt = await json_of("projections", "rebuild", "orders")
    assert rebuilt["events"] > 0
    assert await json_of("projections", "verify") == {"equal": True, "differences": []}

    migrated = await json_of("migrate")
    assert migrated["revision"] and migrated["postgres"] == stack.endpoints["postgres"]

    sagas = await json_of("sagas", "ls", "--limit", "1000")
    assert len(sagas) >= 28 and all(s["status"] in ("running", "completed") for s in sagas)
    described = await json_of("sagas", "describe", sagas[0]["order_id"])
    assert described["order_id"] == sagas[0]["order_id"]
    assert await json_of("sagas", "stuck", "--older-than", "1h") == []

    demo = await json_of("demo")
    assert [d["status"] for d in demo] == ["CONFIRMED", "REJECTED", "REJECTED", "CANCELLED"]

    findings = await json_of("check")
    assert [(f["ok"], f["broken"]) for f in findings] == [(True, [])] * 4, findings


# --- sagas stuck -------------------------------------------------------------------------


async def test_sagas_stuck_lists_an_order_the_provider_holds_up(stack: Stack) -> None:
    api, sku = stack.api, f"stuck-{uuid.uuid4().hex[:8]}"
    await api.put_catalog(sku, on_hand=5)
    await api.faults(**{**NO_FAULTS, "outage": True})
    try:
        order_id = await api.place(f"patient-{uuid.uuid4().hex[:8]}", [(sku, 1)])
        await api.until_order(
            order_id, lambda order: order["waiting_for"] == "payment", "waits for payment"
        )

        stuck = (await stack.cli("sagas", "stuck", "--older-than", "0s", "--json")).json()
        [mine] = [saga for saga in stuck if saga["order_id"] == order_id]
        assert mine["waiting_for"] == "payment" and mine["waiting_ms"] >= 0
        since, placed = (datetime.fromisoformat(mine[k]) for k in ("waiting_since", "placed_at"))
        assert since >= placed
        assert mine["total"] == 1250 and mine["customer_id"].startswith("patient-")

        not_yet = (await stack.cli("sagas", "stuck", "--older-than", "1h", "--json")).json()
        assert order_id not in {saga["order_id"] for saga in not_yet}

        table = await stack.cli("sagas", "stuck", "--older-than", "0s")
        assert table.status == 0
        header, *rows, footer = table.out.splitlines()
        assert header.split()[:3] == ["ORDER", "WAITING", "FOR"]
        assert [order_id, "payment"] in [row.split()[:2] for row in rows]
        assert footer.endswith("orders in flight waited 0ms or longer")
    finally:
        await api.faults(**NO_FAULTS)

    # Once the provider answers, the order ends and is no longer stuck.
    order = await api.until_terminal(order_id, 180)
    assert order["status"] == "CONFIRMED"
    after = (await stack.cli("sagas", "stuck", "--older-than", "0s", "--json")).json()
    assert order_id not in {saga["order_id"] for saga in after}


# --- without a stack ---------------------------------------------------------------------

VERBS = [
    ["demo"],
    ["load", "--orders", "2"],
    ["check"],
    ["migrate"],
    ["streams"],
    ["pending"],
    ["dlq", "ls"],
    ["dlq", "show", "1-1"],
    ["dlq", "requeue", "1-1"],
    ["dlq", "drop", "1-1"],
    ["projections", "status"],
    ["projections", "rebuild", "orders"],
    ["projections", "verify"],
    ["sagas", "ls"],
    ["sagas", "stuck"],
    ["sagas", "describe", "some-order"],
]


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
async def test_a_verb_without_a_stack_is_one_error_line(tmp_path: Path, verb: list[str]) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()

    result = await run_cli(*verb, "--json", data_dir=empty, partitions=PARTITIONS, timeout=60)

    assert (result.status, result.out) == (1, "")
    [line] = result.err.splitlines()
    assert line.startswith("Error: no ") and "is the stack running?" in line, line
    assert f"./orderly up --data-dir {empty}" in line


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
async def test_a_verb_whose_stack_is_gone_is_one_error_line(
    tmp_path: Path, refusing_port: int, verb: list[str]
) -> None:
    """A stack.json left behind by a stack that died: every endpoint refuses."""
    stale = tmp_path / "stale"
    stale.mkdir()
    where = f"127.0.0.1:{refusing_port}"
    endpoints = {
        "order-service": f"http://{where}",
        "payment-provider": f"http://{where}",
        "redis": f"redis://{where}/0",
        "postgres": f"postgresql://postgres@{where}/orderly",
        "temporal": where,
        "api-token": "not-a-secret",
    }
    (stale / "stack.json").write_bytes(msgspec.json.encode(endpoints))

    result = await run_cli(*verb, "--json", data_dir=stale, partitions=PARTITIONS, timeout=60)

    assert (result.status, result.out) == (1, "")
    [line] = result.err.splitlines()
    assert line.startswith("Error: ") and where in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["load", "--orders", "0"],
        ["load", "--rate", "5"],
        ["load", "--duration", "5s"],
        ["load", "--orders", "5", "--rate", "5", "--duration", "1s"],
        ["load", "--rate", "0", "--duration", "1s"],
        ["load", "--rate", "5", "--duration", "0s"],
        ["sagas", "stuck", "--older-than", "soon"],
        ["sagas", "stuck", "--older-than", "30"],
    ],
    ids=" ".join,
)
async def test_bad_arguments_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = await run_cli(*args, data_dir=tmp_path, partitions=PARTITIONS, timeout=60)

    assert (result.status, result.out) == (2, "")
    assert "Usage: orderly " in result.err and "Error: " in result.err
