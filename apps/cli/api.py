"""The order service's HTTP API as the CLI's verbs use it (demo, check): a thin client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import click

from orderly_platform.settings import Settings
from orderly_platform.stack_file import require_endpoint, resolve_endpoints

TERMINAL = frozenset({"CONFIRMED", "REJECTED", "CANCELLED"})


class ApiFailed(click.ClickException):
    pass


@dataclass
class OrderApi:
    base_url: str
    token: str
    session: aiohttp.ClientSession

    async def put_catalog(
        self, sku: str, *, price: int, on_hand: int, currency: str = "EUR"
    ) -> None:
        body = {"price": price, "currency": currency, "on_hand": on_hand}
        await self._call("PUT", f"/catalog/{sku}", body, expect=(202,))

    async def place_order(
        self, customer_id: str, items: list[tuple[str, int]], payment_token: str
    ) -> str:
        body = {
            "customer_id": customer_id,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
            "payment_token": payment_token,
        }
        answer = await self._call("POST", "/orders", body, expect=(202,))
        return str(answer["order_id"])

    async def cancel(self, order_id: str, reason: str) -> None:
        await self._call("POST", f"/orders/{order_id}/cancel", {"reason": reason}, expect=(202,))

    async def order(self, order_id: str) -> dict[str, Any] | None:
        async with self.session.get(f"{self.base_url}/orders/{order_id}") as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise ApiFailed(
                    f"GET /orders/{order_id}: {response.status} {await response.text()}"
                )
            return dict(await response.json())

    async def until_terminal(self, order_id: str, timeout_s: float) -> dict[str, Any]:
        """The order once it is CONFIRMED, REJECTED or CANCELLED (polled; the read model is
        updated by the projector, a little after the saga)."""
        deadline = time.monotonic() + timeout_s
        while True:
            order = await self.order(order_id)
            if order is not None and order["status"] in TERMINAL:
                return order
            if time.monotonic() > deadline:
                status = order["status"] if order else "not yet visible"
                raise ApiFailed(f"order {order_id} is still {status} after {timeout_s:.0f} s")
            await asyncio.sleep(0.1)

    async def _call(
        self, method: str, path: str, body: dict[str, Any], *, expect: tuple[int, ...]
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.request(
            method, f"{self.base_url}{path}", json=body, headers=headers
        ) as response:
            if response.status not in expect:
                raise ApiFailed(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()


@asynccontextmanager
async def order_api(settings: Settings) -> AsyncIterator[OrderApi]:
    base_url = require_endpoint(settings, "order-service")
    token = settings.api_token or resolve_endpoints(settings).get("api-token")
    if not token:
        raise ApiFailed("no API token: set ORDERLY_API_TOKEN or start the stack with 'orderly up'")
    timeout = aiohttp.ClientTimeout(total=30, connect=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield OrderApi(base_url.rstrip("/"), token, session)
