"""The platform as the saga tests drive it from outside: the order service's HTTP API, the
payment provider simulator's audit and fault knobs, and the `orderly` CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

T = TypeVar("T")
TERMINAL = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})


async def until(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, poll: float = 0.1
) -> T:
    """The first answer of ``check`` that is not None (or False), polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check()
        if answer is not None and answer is not False:
            return answer
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(poll)


@dataclass
class Placed:
    status: int
    order_id: str | None
    replayed: bool
    body: Any


class OrderlyClient:
    """The order service (with the stack's API token) and the payment provider's own API."""

    def __init__(
        self, session: aiohttp.ClientSession, order_service: str, provider: str, token: str
    ) -> None:
        self.session = session
        self.order_service = order_service.rstrip("/")
        self.provider = provider.rstrip("/")
        self.auth = {"Authorization": f"Bearer {token}"}

    # --- the order service -----------------------------------------------------------------

    async def put_catalog(self, sku: str, *, on_hand: int, price: int = 1250) -> None:
        body = {"price": price, "currency": "EUR", "on_hand": on_hand}
        url = f"{self.order_service}/catalog/{sku}"
        async with self.session.put(url, json=body, headers=self.auth) as response:
            assert response.status == 202, await response.text()

    async def try_place(
        self,
        customer_id: str,
        items: Sequence[tuple[str, int]],
        payment_token: str = "tok_visa",
        *,
        idempotency_key: str | None = None,
    ) -> Placed:
        body = {
            "customer_id": customer_id,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
            "payment_token": payment_token,
        }
        headers = dict(self.auth)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = f"{self.order_service}/orders"
        async with self.session.post(url, json=body, headers=headers) as response:
            answer = await response.json()
            return Placed(
                status=response.status,
                order_id=answer.get("order_id"),
                replayed=response.headers.get("Idempotent-Replayed") == "true",
                body=answer,
            )

    async def place(
        self,
        customer_id: str,
        items: Sequence[tuple[str, int]],
        payment_token: str = "tok_visa",
    ) -> str:
        placed = await self.try_place(customer_id, items, payment_token)
        assert placed.status == 202 and placed.order_id, placed.body
        assert placed.body["status"] == "PENDING"
        return placed.order_id

    async def cancel(self, order_id: str, reason: str) -> None:
        url = f"{self.order_service}/orders/{order_id}/cancel"
        async with self.session.post(url, json={"reason": reason}, headers=self.auth) as response:
            assert response.status == 202, await response.text()

    async def order(self, order_id: str) -> dict[str, Any] | None:
        """The order's read model; None while the projector has not applied it yet."""
        async with self.session.get(f"{self.order_service}/orders/{order_id}") as response:
            if response.status == 404:
                return None
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def until_order(
        self,
        order_id: str,
        condition: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        async def matching() -> dict[str, Any] | None:
            order = await self.order(order_id)
            return order if order is not None and condition(order) else None

        return await until(matching, timeout, f"order {order_id} {what}")

    async def until_terminal(self, order_id: str, timeout: float = 120.0) -> dict[str, Any]:
        return await self.until_order(
            order_id, lambda order: order["status"] in TERMINAL, "ends", timeout
        )

    async def orders_of(self, customer_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """Every order of the customer (the read model), following the pages."""
        orders: list[dict[str, Any]] = []
        params = {"customer_id": customer_id, "limit": "100"}
        if status is not None:
            params["status"] = status
        while True:
            url = f"{self.order_service}/orders"
            async with self.session.get(url, params=params) as response:
                assert response.status == 200, await response.text()
                page = await response.json()
            orders += page["orders"]
            if not page.get("next_cursor"):
                return orders
            params["cursor"] = page["next_cursor"]

    async def inventory(self, sku: str) -> dict[str, Any] | None:
        async with self.session.get(f"{self.order_service}/inventory/{sku}") as response:
            if response.status == 404:
                return None
            assert response.status == 200, await response.text()
            return dict(await response.json())

    # --- the payment provider (simulator) --------------------------------------------------

    async def charges(self, order_id: str) -> list[dict[str, Any]]:
        """The order's captures and refunds at the provider, oldest first."""
        url = f"{self.provider}/charges"
        async with self.session.get(url, params={"order_id": order_id}) as response:
            assert response.status == 200, await response.text()
            return list((await response.json())["charges"])

    async def charge_kinds(self, order_id: str) -> list[tuple[str, int]]:
        return [(charge["kind"], charge["amount"]) for charge in await self.charges(order_id)]

    async def faults(self, **knobs: Any) -> dict[str, Any]:
        """Set the simulator's fault knobs (``PUT /_sim/faults``); returns all of them."""
        url = f"{self.provider}/_sim/faults"
        async with self.session.put(url, json=knobs) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def current_faults(self) -> dict[str, Any]:
        async with self.session.get(f"{self.provider}/_sim/faults") as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())


NO_FAULTS: dict[str, Any] = {
    "latency_ms": 0,
    "outage": False,
    "outages": [],
    "ambiguous_rate": 0.0,
    "ambiguous_next": 0,
    "ambiguous_mode": "disconnect",
}


async def activity_attempts(temporal: Client, order_id: str, activity: str) -> list[int]:
    """For each ``activity`` the order's saga ran to its end, the attempt that ended it (its
    history records an activity's start once, with the last attempt's number)."""
    history = await temporal.get_workflow_handle(order_id).fetch_history()
    scheduled = {
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and event.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


# --- the CLI ------------------------------------------------------------------------------


def cli_env(**settings: str) -> dict[str, str]:
    """The CLI's environment: this process's imports, and no ORDERLY_* setting of the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERLY_")}
    return {
        **env,
        # The subprocess must import the same sources and requirements as the test.
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "ORDERLY_LOG_FORMAT": "json",
        **settings,
    }


@dataclass
class CliResult:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.status == 0, f"exit status {self.status}: {self.err[-3000:]}"
        return json.loads(self.out)


async def run_cli(*args: str, data_dir: Path, partitions: int, timeout: float = 180.0) -> CliResult:
    """``orderly <args> --data-dir DIR`` against a stack of that many stream partitions."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(ORDERLY_STREAM_PARTITIONS=str(partitions)),
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


def keep_logs(data_dir: Path, name: str) -> None:
    """Copy the stack's logs to $ORDERLY_KEEP_TEST_LOGS/<name> when that is set: the test's
    own directory goes away with its sandbox."""
    keep = os.environ.get("ORDERLY_KEEP_TEST_LOGS")
    if keep and (data_dir / "logs").is_dir():
        shutil.copytree(data_dir / "logs", Path(keep) / name, dirs_exist_ok=True)
