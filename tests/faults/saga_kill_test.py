"""The saga's workers killed with SIGKILL under load, then restarted: every order still ends,
no one is charged twice, what was charged and not confirmed is refunded, and `orderly check`
finds every invariant holding.

The servers (Redis, Postgres, Temporal) and every service run as their own processes, as
`orderly up` runs them, but started here one by one: `up` stops the whole stack when one of
its children dies, and here children die on purpose. A stack.json lets the CLI find them.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
import redis.asyncio as aioredis
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

import migrations
from eventbus.topology import CATALOG, Topology
from orderly_platform.embedded import PostgresServer, PythonService, RedisServer, TemporalServer
from orderly_platform.stack_file import write_stack_file
from saga.converter import DATA_CONVERTER
from tests.orderly_client import (
    TERMINAL,
    OrderlyClient,
    activity_attempts,
    keep_logs,
    run_cli,
    until,
)

PARTITIONS = 4
ORDERS_PLACED = 90
CONCURRENCY = 8
# Each victim twice, once the load has placed this many orders and the victim has work in
# hand (see `work_in_hand`); the later kills land while earlier ones still echo (sagas
# retried, partitions just taken over).
KILLS = (
    ("saga-worker", 8),
    ("inventory-service", 20),
    ("payment-service", 32),
    ("saga-worker", 44),
    ("inventory-service", 56),
    ("payment-service", 68),
)
# The lamps run out early (orders rejected for stock); the others last to the end.
STOCK = {"kill-mug": 150, "kill-lamp": 12, "kill-rug": 150}
PRICES = {"kill-mug": 1250, "kill-lamp": 4900, "kill-rug": 19900}
DECLINED = "tok_decline_insufficient_funds"
CAPTURE_LATENCY_MS = 2000
ORDER_TIMEOUT = 300.0
CUSTOMER = "kill-load"

# Service name -> the module run as `python -m`.
SERVICES = {
    "order-service": "order_service",
    "payment-provider": "payment_provider_sim",
    "projector": "projector",
    "saga-worker": "saga_worker",
    "inventory-service": "inventory_service",
    "payment-service": "payment_service",
}


@dataclass
class Platform:
    """Servers and services of one stack, each service restartable on its own."""

    data_dir: Path
    redis: RedisServer
    postgres: PostgresServer
    temporal: TemporalServer
    env: dict[str, str]
    services: dict[str, PythonService] = field(default_factory=dict)

    def new_service(self, name: str) -> PythonService:
        env = dict(self.env)
        if name == "payment-service":
            env["ORDERLY_PAYMENT_PROVIDER_URL"] = self.services["payment-provider"].url
        return PythonService(name, SERVICES[name], self.data_dir, env=env, start_timeout=120)

    async def start(self, name: str) -> None:
        service = self.new_service(name)
        await service.start()
        self.services[name] = service

    async def kill_and_restart(self, name: str) -> int | None:
        """SIGKILL the service (no graceful anything), then start a fresh process of it."""
        victim = self.services[name]
        assert victim.process.pid is not None and victim.process.returncode is None
        os.kill(victim.process.pid, signal.SIGKILL)
        returncode = await asyncio.wait_for(victim.process.wait(), 30)
        await self.start(name)
        return returncode

    async def stop(self) -> None:
        await asyncio.gather(*(service.stop() for service in self.services.values()))
        await asyncio.gather(self.redis.stop(), self.postgres.stop(), self.temporal.stop())


@pytest_asyncio.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    data_dir = (tmp_path / "stack").resolve()
    redis = RedisServer(data_dir)
    postgres = PostgresServer(data_dir, durable=False)
    temporal = TemporalServer(data_dir, ui=False, persistent=False)
    token = secrets.token_urlsafe(16)
    env = {
        "ORDERLY_DATA_DIR": str(data_dir),
        "ORDERLY_REDIS_URL": redis.url,
        "ORDERLY_POSTGRES_URL": postgres.url,
        "ORDERLY_TEMPORAL_ADDRESS": temporal.address,
        "ORDERLY_API_TOKEN": token,
        "ORDERLY_STREAM_PARTITIONS": str(PARTITIONS),
        # A restarted consumer takes its dead predecessor's partitions over after a second.
        "ORDERLY_PARTITION_LEASE_MS": "1000",
        # A capture cut off by a killed payment service is retried after this long.
        "ORDERLY_SAGA_PAYMENT_ATTEMPT_S": "5",
        "ORDERLY_LOG_LEVEL": "INFO",
    }
    platform = Platform(data_dir, redis, postgres, temporal, env)
    try:
        await asyncio.gather(redis.start(), postgres.start(), temporal.start())
        await migrations.upgrade_async(postgres.url)
        await platform.start("payment-provider")
        await asyncio.gather(
            *(platform.start(name) for name in SERVICES if name != "payment-provider")
        )
        services = platform.services
        write_stack_file(
            data_dir,
            {
                "order-service": services["order-service"].url,
                "payment-provider": services["payment-provider"].url,
                "redis": redis.url,
                "postgres": postgres.url,
                "temporal": temporal.address,
                "api-token": token,
            },
        )
        yield platform
    finally:
        keep_logs(data_dir, "saga_kill_test")
        await platform.stop()


@dataclass
class Planned:
    customer: str
    items: list[tuple[str, int]]
    token: str
    cancel_after_s: float | None


def planned_orders() -> list[Planned]:
    """A reproducible mix: good cards and declines, SKUs that run out, some cancellations
    (early ones before payment, later ones after the capture or too late to count)."""
    rng = random.Random(5)
    orders = []
    for n in range(ORDERS_PLACED):
        skus = rng.sample(sorted(STOCK), k=rng.choice((1, 1, 2)))
        orders.append(
            Planned(
                customer=CUSTOMER,
                items=[(sku, rng.choice((1, 1, 2))) for sku in skus],
                token=DECLINED if n % 5 == 4 else "tok_visa",
                cancel_after_s=rng.uniform(0, 3) if n % 7 == 3 else None,
            )
        )
    return orders


class Load:
    """Places the planned orders, CONCURRENCY at a time, each waited for until it ends."""

    def __init__(self, api: OrderlyClient, plan: list[Planned]) -> None:
        self.api = api
        self.plan = plan
        self.placed: dict[str, Planned] = {}
        self.ended: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        queue: asyncio.Queue[Planned] = asyncio.Queue()
        for order in self.plan:
            queue.put_nowait(order)
        await asyncio.gather(*(self._client(queue) for _ in range(CONCURRENCY)))

    async def _client(self, queue: asyncio.Queue[Planned]) -> None:
        while not queue.empty():
            order = queue.get_nowait()
            order_id = await self.api.place(order.customer, order.items, order.token)
            self.placed[order_id] = order
            if order.cancel_after_s is not None:
                await asyncio.sleep(order.cancel_after_s)  # the plan's think time
                await self.api.cancel(order_id, "changed my mind")
            self.ended[order_id] = await self.api.until_terminal(order_id, ORDER_TIMEOUT)


async def waiting_on(api: OrderlyClient, steps: tuple[str, ...]) -> str | None:
    """An order that is PENDING with its saga waiting on one of ``steps`` (its read model)."""
    for order in await api.orders_of(CUSTOMER, status="PENDING"):
        if order["waiting_for"] in steps:
            return str(order["order_id"])
    return None


async def capture_in_flight(api: OrderlyClient, temporal: Client) -> str | None:
    """An order whose capture the payment service began less than a second ago: with the
    simulator's latency, the capture is still in the payment service's hands."""
    for order in await api.orders_of(CUSTOMER, status="PENDING"):
        if order["waiting_for"] != "payment":
            continue
        description = await temporal.get_workflow_handle(order["order_id"]).describe()
        for activity in description.raw_description.pending_activities:
            if (
                activity.activity_type.name == "capture_payment"
                and activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                and time.time() - activity.last_started_time.ToMicroseconds() / 1e6 < 1.0
            ):
                return str(order["order_id"])
    return None


@dataclass
class Kill:
    victim: str
    returncode: int | None
    placed_then: int  # orders placed when it died
    working_on: str  # an order it had in hand


async def kill_under_load(
    platform: Platform, api: OrderlyClient, temporal: Client, load: Load
) -> list[Kill]:
    """Run the load, and kill and restart each of KILLS in its turn while it runs."""
    running = asyncio.create_task(load.run())

    async def placed(count: int) -> bool:
        if running.done():
            running.result()  # the load failed: say why
            return True  # (or ended before the kill, which the caller's asserts refuse)
        return len(load.placed) >= count

    # What each victim has in hand when it dies: a saga that waits (its worker holds it), an
    # order whose next step needs the inventory service (a reservation answer is a matter of
    # milliseconds, so mostly an order whose commit or release is next), a capture under way.
    work_in_hand: dict[str, Callable[[], Awaitable[str | None]]] = {
        "saga-worker": lambda: waiting_on(api, ("inventory reservation", "payment")),
        "inventory-service": lambda: waiting_on(
            api, ("inventory reservation", "payment", "inventory commit", "inventory release")
        ),
        "payment-service": lambda: capture_in_flight(api, temporal),
    }
    kills = []
    try:
        for victim, after in KILLS:
            await until(partial(placed, after), 240, f"{after} orders placed")
            working_on = await until(work_in_hand[victim], 60, f"work in hand for {victim}")
            placed_then = len(load.placed)
            returncode = await platform.kill_and_restart(victim)
            kills.append(Kill(victim, returncode, placed_then, working_on))
        await running
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    return kills


async def audit_orders(api: OrderlyClient, load: Load) -> None:
    """Every order ended as its plan allows, and was charged at most once: a captured order
    is CONFIRMED, or else refunded exactly once."""
    assert len(load.ended) == ORDERS_PLACED
    assert set(load.ended) == set(load.placed)
    statuses = Counter(order["status"] for order in load.ended.values())
    assert set(statuses) <= TERMINAL
    assert statuses["CONFIRMED"] > 0 and statuses["REJECTED"] > 0, statuses
    refunded = 0
    for order_id, order in load.ended.items():
        plan = load.placed[order_id]
        charges = await api.charge_kinds(order_id)
        captures = [amount for kind, amount in charges if kind == "capture"]
        refunds = [amount for kind, amount in charges if kind == "refund"]
        if order["status"] == "CONFIRMED":
            assert (captures, refunds) == ([order["total"]], []), (order_id, charges)
        else:
            assert len(captures) <= 1 and refunds == captures, (order_id, order, charges)
            refunded += len(refunds)
        if plan.token == DECLINED:
            assert order["status"] != "CONFIRMED" and captures == [], (order, charges)
        if plan.cancel_after_s is None:
            assert order["status"] != "CANCELLED", order
    # Cancellations during the (slow) captures: the refunds were exercised too.
    assert refunded > 0, statuses


async def audit_stock(redis_url: str, load: Load) -> None:
    """What confirmed orders took is gone, nothing is held, and nothing ended in the dead
    letters (no request needed an operator)."""
    sold: Counter[str] = Counter()
    for order in load.ended.values():
        if order["status"] == "CONFIRMED":
            for item in order["items"]:
                sold[item["sku"]] += item["quantity"]
    redis = aioredis.Redis.from_url(redis_url)
    try:
        topology = Topology(partitions=PARTITIONS)
        for sku, on_hand in STOCK.items():
            key = topology.partition(CATALOG, sku).catalog_item_key(sku)
            stock = await redis.hmget(key, "on_hand", "reserved")
            assert [int(v or 0) for v in stock] == [on_hand - sold[sku], 0], sku
        for partition in topology.all_partitions():
            assert await redis.xlen(partition.dead_letters) == 0, partition.dead_letters
    finally:
        await redis.aclose()


async def test_killed_saga_inventory_and_payment_workers_lose_no_order_and_charge_no_one_twice(
    platform: Platform,
) -> None:
    services = platform.services
    temporal = await Client.connect(platform.temporal.address, data_converter=DATA_CONVERTER)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        api = OrderlyClient(
            session,
            services["order-service"].url,
            services["payment-provider"].url,
            platform.env["ORDERLY_API_TOKEN"],
        )
        for sku, on_hand in STOCK.items():
            await api.put_catalog(sku, on_hand=on_hand, price=PRICES[sku])
        # Slow captures and refunds: when the payment service dies, some are in flight.
        await api.faults(latency_ms=CAPTURE_LATENCY_MS)
        load = Load(api, planned_orders())

        kills = await kill_under_load(platform, api, temporal, load)

        # Each was killed (not stopped), mid-load.
        assert [(k.victim, k.returncode) for k in kills] == [
            (victim, -signal.SIGKILL) for victim, _ in KILLS
        ]
        assert all(k.placed_then < ORDERS_PLACED for k in kills), kills
        # A capture the payment service was making when it died was asked again (same key,
        # so the provider answered as the first time): one capture at the provider, none
        # for a declined card.
        for kill in kills:
            if kill.victim == "payment-service":
                order_id = kill.working_on
                assert max(await activity_attempts(temporal, order_id, "capture_payment")) >= 2
                captures = [k for k, _ in await api.charge_kinds(order_id)].count("capture")
                assert captures == (load.placed[order_id].token != DECLINED), order_id
        await audit_orders(api, load)
    await audit_stock(platform.redis.url, load)

    result = await run_cli("check", "--json", data_dir=platform.data_dir, partitions=PARTITIONS)
    findings = result.json()
    assert [(f["ok"], f["broken"]) for f in findings] == [(True, [])] * 4, findings
    assert findings[1]["note"].endswith(f"{ORDERS_PLACED} audited")
