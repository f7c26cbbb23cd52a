"""The order saga end to end, as users run it: one `orderly up` for the module (every service
its own process; real Redis, Postgres, Temporal and the payment provider simulator), driven
through the HTTP API, audited at the provider and in Redis, and judged by `orderly check`.

The tests run in file order and share the stack, so each uses its own SKUs and customers
and leaves the simulator's faults as it found them. The last ones look at everything the
module did: the CLI's verbs, then `check` (which must pass, and must fail once a charge is
made behind the saga's back).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode

from tests.orderly_client import (
    NO_FAULTS,
    until,
)
from tests.orderly_stack import Stack, orderly_up

PARTITIONS = 4
# One call to the provider may take this long (a retried attempt after that). Long enough
# for the simulator's injected latency below, short enough for the outage test to outlast it.
PAYMENT_ATTEMPT_S = 5
CAPTURE_LATENCY_MS = 2500  # below PAYMENT_ATTEMPT_S: a slow capture, not a failed one
OUTAGE_S = 2.5 * PAYMENT_ATTEMPT_S
ORDER_TIMEOUT = 180.0
PRICE = 1250


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def steps(order: dict[str, Any]) -> list[str]:
    return [step["type"] for step in order["timeline"]]


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data_dir = tmp_path_factory.mktemp("saga") / "stack"
    settings = {"ORDERLY_SAGA_PAYMENT_ATTEMPT_S": str(PAYMENT_ATTEMPT_S)}
    async with orderly_up(data_dir, name="saga_test", partitions=PARTITIONS, **settings) as up:
        yield up


@pytest_asyncio.fixture
async def platform(stack: Stack) -> AsyncIterator[Stack]:
    """The module's stack, its simulator without faults before and after the test."""
    await stack.api.faults(**NO_FAULTS)
    yield stack
    await stack.api.faults(**NO_FAULTS)


# --- each path of the saga ---------------------------------------------------------------


async def test_an_order_in_stock_with_a_good_card_is_confirmed_charged_once_and_committed(
    platform: Stack,
) -> None:
    api, sku = platform.api, unique("mug")
    await api.put_catalog(sku, on_hand=10)

    order_id = await api.place(unique("alice"), [(sku, 2)])
    order = await api.until_terminal(order_id)

    assert (order["status"], order["reason"]) == ("CONFIRMED", None)
    assert (order["total"], order["currency"]) == (2 * PRICE, "EUR")
    assert steps(order) == [
        "OrderPlaced",
        "InventoryReservationRequested",
        "InventoryReserved",
        "PaymentCaptured",
        "InventoryCommitRequested",
        "InventoryCommitted",
        "OrderConfirmed",
    ]
    [capture] = await api.charges(order_id)
    assert (capture["kind"], capture["amount"]) == ("capture", 2 * PRICE)
    assert capture["idempotency_key"] == f"{order_id}:capture"
    assert await platform.stock(sku) == (8, 0)
    assert await platform.until_inventory(sku, on_hand=8) == {
        "sku": sku,
        "on_hand": 8,
        "reserved": 0,
        "available": 8,
        "price": PRICE,
        "currency": "EUR",
    }
    platform.placed[order_id] = "CONFIRMED"


async def test_an_order_short_of_one_sku_is_rejected_holds_nothing_and_charges_nothing(
    platform: Stack,
) -> None:
    api, plenty, scarce = platform.api, unique("plate"), unique("rare")
    await api.put_catalog(plenty, on_hand=5)
    await api.put_catalog(scarce, on_hand=1)

    order_id = await api.place(unique("bob"), [(plenty, 1), (scarce, 2)])
    order = await api.until_terminal(order_id)

    assert order["status"] == "REJECTED"
    assert order["reason"].startswith("out of stock:") and scarce in order["reason"]
    assert "InventoryReservationRejected" in steps(order)
    assert "PaymentCaptured" not in steps(order)
    assert await api.charges(order_id) == []
    # All or nothing: the SKU that had enough is not held either.
    assert await platform.stock(plenty) == (5, 0)
    assert await platform.stock(scarce) == (1, 0)
    platform.placed[order_id] = "REJECTED"


async def test_a_declined_card_rejects_the_order_and_releases_its_stock(platform: Stack) -> None:
    api, sku = platform.api, unique("lamp")
    await api.put_catalog(sku, on_hand=3)

    order_id = await api.place(unique("carol"), [(sku, 2)], "tok_decline_insufficient_funds")
    order = await api.until_terminal(order_id)

    assert order["status"] == "REJECTED"
    assert order["reason"].startswith("payment declined:")
    assert steps(order) == [
        "OrderPlaced",
        "InventoryReservationRequested",
        "InventoryReserved",
        "PaymentDeclined",
        "InventoryReleaseRequested",
        "InventoryReleased",
        "OrderRejected",
    ]
    assert await api.charges(order_id) == []
    assert await platform.stock(sku) == (3, 0)
    await platform.until_inventory(sku, on_hand=3)
    platform.placed[order_id] = "REJECTED"


async def test_an_order_cancelled_right_after_it_is_placed_is_cancelled_uncharged(
    platform: Stack,
) -> None:
    api, sku = platform.api, unique("vase")
    await api.put_catalog(sku, on_hand=4)

    order_id = await api.place(unique("dave"), [(sku, 1)])
    await api.cancel(order_id, "changed my mind")
    order = await api.until_terminal(order_id)

    assert (order["status"], order["reason"]) == ("CANCELLED", "changed my mind")
    assert "OrderCancellationRequested" in steps(order)
    assert "PaymentCaptured" not in steps(order)
    assert await api.charges(order_id) == []
    assert await platform.stock(sku) == (4, 0)
    platform.placed[order_id] = "CANCELLED"


async def test_an_order_cancelled_while_its_capture_is_in_flight_is_refunded_and_released(
    platform: Stack,
) -> None:
    api, sku = platform.api, unique("chair")
    await api.put_catalog(sku, on_hand=6)
    await api.faults(latency_ms=CAPTURE_LATENCY_MS)

    order_id = await api.place(unique("erin"), [(sku, 3)])
    # Reserved, so the saga is calling the provider, which takes its time to answer.
    await api.until_order(order_id, lambda o: o["waiting_for"] == "payment", "waits for payment")
    await api.cancel(order_id, "found it cheaper")
    order = await api.until_terminal(order_id)

    assert (order["status"], order["reason"]) == ("CANCELLED", "found it cheaper")
    assert await api.charge_kinds(order_id) == [("capture", 3 * PRICE), ("refund", 3 * PRICE)]
    assert [c["idempotency_key"] for c in await api.charges(order_id)] == [
        f"{order_id}:capture",
        f"{order_id}:refund",
    ]
    assert steps(order)[-4:] == [
        "PaymentRefunded",
        "InventoryReleaseRequested",
        "InventoryReleased",
        "OrderCancelled",
    ]
    assert await platform.stock(sku) == (6, 0)
    await platform.until_inventory(sku, on_hand=6)
    platform.placed[order_id] = "CANCELLED"


# --- concurrency and idempotency ---------------------------------------------------------


async def test_100_concurrent_orders_for_30_units_confirm_30_and_never_oversell(
    platform: Stack,
) -> None:
    api, sku, customer = platform.api, unique("lastcall"), unique("crowd")
    await api.put_catalog(sku, on_hand=30)
    watching = True
    seen: list[tuple[int, int]] = []  # (on_hand, reserved) in Redis, while the orders run
    read_model: list[dict[str, Any]] = []

    async def watch() -> None:
        while watching:
            seen.append(await platform.stock(sku))
            if len(seen) % 10 == 0 and (item := await api.inventory(sku)) is not None:
                read_model.append(item)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        order_ids = await asyncio.gather(*(api.place(customer, [(sku, 1)]) for _ in range(100)))
        orders = [await api.until_terminal(order_id, ORDER_TIMEOUT) for order_id in order_ids]
    finally:
        watching = False
        await watcher

    statuses = [order["status"] for order in orders]
    assert (statuses.count("CONFIRMED"), statuses.count("REJECTED")) == (30, 70)
    assert all(
        order["reason"].startswith("out of stock:")
        for order in orders
        if order["status"] == "REJECTED"
    )
    assert await platform.stock(sku) == (0, 0)
    await platform.until_inventory(sku, on_hand=0)
    # The watcher saw the stock move (reservations held), and never below zero anywhere.
    assert any(reserved > 0 for _, reserved in seen), seen[:20]
    assert all(
        on_hand >= 0 and reserved >= 0 and on_hand - reserved >= 0 for on_hand, reserved in seen
    )
    assert read_model and all(item["available"] >= 0 for item in read_model)
    for order in orders:
        kinds = await api.charge_kinds(order["order_id"])
        assert kinds == ([("capture", PRICE)] if order["status"] == "CONFIRMED" else [])
        platform.placed[order["order_id"]] = order["status"]


async def test_five_concurrent_requests_with_one_idempotency_key_place_one_order_charged_once(
    platform: Stack,
) -> None:
    api, sku, customer, key = platform.api, unique("lamp"), unique("frank"), unique("key")
    await api.put_catalog(sku, on_hand=10)

    answers = await asyncio.gather(
        *(api.try_place(customer, [(sku, 1)], idempotency_key=key) for _ in range(5))
    )

    assert [a.status for a in answers] == [202] * 5, [a.body for a in answers]
    [order_id] = {a.order_id for a in answers}
    assert order_id is not None
    assert sum(not a.replayed for a in answers) == 1
    order = await api.until_terminal(order_id)
    assert order["status"] == "CONFIRMED"
    assert [o["order_id"] for o in await api.orders_of(customer)] == [order_id]
    assert await api.charge_kinds(order_id) == [("capture", PRICE)]
    assert await platform.stock(sku) == (9, 0)
    platform.placed[order_id] = "CONFIRMED"


# --- the payment provider misbehaving ----------------------------------------------------


async def test_orders_ride_out_a_provider_outage_longer_than_a_payment_attempt(
    platform: Stack,
) -> None:
    api, sku, customer = platform.api, unique("kettle"), unique("grace")
    await api.put_catalog(sku, on_hand=10)
    faults = await api.faults(outage_for_s=OUTAGE_S)
    [[_, outage_end_s]] = faults["outages"]
    outage_ends = datetime.now(UTC) + timedelta(seconds=outage_end_s - faults["uptime_s"])
    assert faults["in_outage"]

    order_ids = [await api.place(customer, [(sku, 1)]) for _ in range(3)]

    async def retried(order_id: str) -> bool:
        """The saga's capture failed at least once and is being retried."""
        try:
            description = await platform.temporal.get_workflow_handle(order_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False  # the bridge has not started the saga yet
            raise
        pending = description.raw_description.pending_activities
        return bool(
            pending
            and pending[0].activity_type.name == "capture_payment"
            and pending[0].attempt >= 2
        )

    for order_id in order_ids:
        await until(partial(retried, order_id), 60, f"the capture of {order_id} retried")
    # The operator sees why it waits (the outage outlasts this: the next attempt is later).
    described = await platform.cli("sagas", "describe", order_ids[0], "--json")
    saga = described.json()
    assert (saga["workflow_status"], saga["order_status"]) == ("running", "PENDING")
    assert (saga["waiting_for"], saga["captured"]) == ("payment", 0)
    [activity] = saga["pending_activities"]
    assert activity["activity"] == "capture_payment" and activity["attempt"] >= 2
    assert "503" in activity["last_failure"], activity

    orders = [await api.until_terminal(order_id, ORDER_TIMEOUT) for order_id in order_ids]

    assert [o["status"] for o in orders] == ["CONFIRMED"] * 3
    for order_id in order_ids:
        [capture] = await api.charges(order_id)
        assert (capture["kind"], capture["amount"]) == ("capture", PRICE)
        # Captured once the provider was back (the clocks are this machine's; 1 s of slack).
        assert datetime.fromisoformat(capture["at"]) > outage_ends - timedelta(seconds=1)
        assert await platform.capture_attempts(order_id) >= 3
        platform.placed[order_id] = "CONFIRMED"
    assert await platform.stock(sku) == (7, 0)


@pytest.mark.parametrize("mode", ["disconnect", "504"])
async def test_a_capture_whose_reply_is_lost_charges_once_and_confirms(
    platform: Stack, mode: str
) -> None:
    api, sku = platform.api, unique("teapot")
    await api.put_catalog(sku, on_hand=2)
    await api.faults(ambiguous_next=1, ambiguous_mode=mode)

    order_id = await api.place(unique("heidi"), [(sku, 1)])
    order = await api.until_terminal(order_id)

    assert order["status"] == "CONFIRMED"
    # The capture was made, its reply lost, and the retry under the same key got it back.
    assert (await api.current_faults())["ambiguous_next"] == 0
    assert await platform.capture_attempts(order_id) >= 2
    assert await api.charge_kinds(order_id) == [("capture", PRICE)]
    assert steps(order).count("PaymentCaptured") == 1
    assert await platform.stock(sku) == (1, 0)
    connection = await asyncpg.connect(platform.endpoints["postgres"])
    try:
        ledger = await connection.fetch(
            "SELECT kind, status, amount FROM payment_ledger WHERE order_id = $1", order_id
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in ledger] == [("capture", "captured", PRICE)]
    platform.placed[order_id] = "CONFIRMED"


# --- the operator's view of all of it ----------------------------------------------------


async def test_demo_and_the_saga_verbs_answer(platform: Stack) -> None:
    cli = platform.cli
    demo = (await cli("demo", "--json")).json()
    assert [(d["scenario"], d["status"]) for d in demo] == [
        ("confirmed", "CONFIRMED"),
        ("out of stock", "REJECTED"),
        ("declined", "REJECTED"),
        ("cancelled", "CANCELLED"),
    ]
    platform.placed.update({d["order_id"]: d["status"] for d in demo})

    async def all_closed() -> dict[str, Any] | None:
        # An order's last event is in the read model a moment before its saga closes.
        listed = (await cli("sagas", "ls", "--limit", "1000", "--json")).json()
        sagas = {saga["order_id"]: saga for saga in listed}
        closed = all(sagas.get(o, {}).get("status") == "completed" for o in platform.placed)
        return sagas if closed else None

    sagas = await until(all_closed, 60, "every saga of the module completed", poll=1)
    assert all(sagas[order_id]["closed"] for order_id in platform.placed)
    assert (await cli("sagas", "ls", "--status", "running", "--json")).json() == []

    for order_id, status in platform.placed.items():
        if status != "CANCELLED":
            continue
        saga = (await cli("sagas", "describe", order_id, "--json")).json()
        assert saga["order_id"] == order_id
        assert (saga["workflow_status"], saga["order_status"], saga["step"]) == (
            "completed",
            "CANCELLED",
            "done",
        )
        assert saga["reserved"] is False and saga["pending_activities"] == []
        assert saga["refunded"] == saga["captured"]

    unknown = await cli("sagas", "describe", "no-such-order", "--json")
    assert unknown.status == 1 and "no saga for order 'no-such-order'" in unknown.err


async def test_check_finds_every_invariant_holding_after_all_of_it(platform: Stack) -> None:
    result = await platform.cli("check", "--json")

    findings = result.json()
    assert result.status == 0
    assert [(f["ok"], f["broken"]) for f in findings] == [(True, [])] * 4, findings
    terminal, payments, stock, read_models = (f["note"] for f in findings)
    assert "PENDING" not in terminal and "still in flight" not in terminal
    captured, audited = (int(n) for n in re.findall(r"\d+", payments))
    confirmed = sum(status == "CONFIRMED" for status in platform.placed.values())
    assert captured >= confirmed and audited >= len(platform.placed)
    assert stock.endswith(", 0 units reserved")
    assert "inventory, orders equal to a replay" in read_models


async def test_check_fails_on_a_rejected_order_charged_behind_the_sagas_back(
    platform: Stack,
) -> None:
    rejected = next(o for o, status in platform.placed.items() if status == "REJECTED")
    charge = {
        "order_id": rejected,
        "amount": PRICE,
        "currency": "EUR",
        "payment_token": "tok_visa",
        "idempotency_key": unique("rogue"),
    }
    url = f"{platform.endpoints['payment-provider']}/charges"
    async with platform.api.session.post(url, json=charge) as response:
        assert response.status == 201, await response.text()

    result = await platform.cli("check", "--json")

    assert result.status == 1, result.err
    broken = [f for f in json.loads(result.out) if not f["ok"]]
    assert [(f["invariant"], f["broken"]) for f in broken] == [
        (
            "one capture per order; a captured order not confirmed is refunded once",
            [f"{rejected} is REJECTED with 0 refunds"],
        )
    ]
