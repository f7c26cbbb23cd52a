"""The order service's HTTP API as the CLI's verbs use it (demo, load): a thin client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import click

from cli.errors import one_line
from orderly_platform.settings import Settings
from orderly_platform.stack_file import require_endpoint, resolve_endpoints
from projections.orders import TERMINAL

# Polling an order for its end: the first look soon, then each wait a fifth longer, so the
# moment seen trails the real one by at most ~20% (and POLL_MAX_S), and a slow order costs
# a few requests a second, not ten.
POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S = 0.02, 1.2, 0.25


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
        self,
        customer_id: str,
        items: list[tuple[str, int]],
        payment_token: str,
        *,
        idempotency_key: str | None = None,
    ) -> str:
        body = {
            "customer_id": customer_id,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
            "payment_token": payment_token,
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = await self._call("POST", "/orders", body, expect=(202,), headers=headers)
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
        """The order once it is CONFIRMED, REJECTED or CANCELLED; ApiFailed after timeout_s."""
        order = await self.poll_until_terminal(order_id, timeout_s)
        if order is None or order["status"] not in TERMINAL:
            status = order["status"] if order else "not yet visible"
            raise ApiFailed(f"order {order_id} is still {status} after {timeout_s:.0f} s")
        return order

    async def poll_until_terminal(
        self, order_id: str, timeout_s: float, slots: asyncio.Semaphore | None = None
    ) -> dict[str, Any] | None:
        """The order once it is terminal in the read model (the projector updates it a little
        after the saga), or as last seen (None: never visible) when ``timeout_s`` runs out.

        Polled with a growing wait; ``slots`` bounds the GETs in flight that callers polling
        many orders at once send, so that watching does not swamp the service."""
        deadline = time.monotonic() + timeout_s
        wait = POLL_FIRST_S
        while True:
            if slots is None:
                order = await self.order(order_id)
            else:
                async with slots:
                    order = await self.order(order_id)
            if order is not None and order["status"] in TERMINAL:
                return order
            if time.monotonic() + wait > deadline:
                return order
            await asyncio.sleep(wait)
            wait = min(wait * POLL_GROWTH, POLL_MAX_S)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        *,
        expect: tuple[int, ...],
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        async with self.session.request(
            method, f"{self.base_url}{path}", json=body, headers=headers
        ) as response:
            if response.status not in expect:
                raise ApiFailed(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()


@asynccontextmanager
async def order_api(settings: Settings, *, connections: int = 100) -> AsyncIterator[OrderApi]:
    """A client of the stack's order service; at most ``connections`` requests in flight."""
    base_url = require_endpoint(settings, "order-service")
    token = settings.api_token or resolve_endpoints(settings).get("api-token")
    if not token:
        raise ApiFailed("no API token: set ORDERLY_API_TOKEN or start the stack with 'orderly up'")
    timeout = aiohttp.ClientTimeout(total=30, connect=5)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield OrderApi(base_url.rstrip("/"), token, session)


def unreachable(settings: Settings, exc: BaseException) -> ApiFailed:
    """The one-line error for an order service that does not answer."""
    url = resolve_endpoints(settings).get("order-service", "?")
    return ApiFailed(f"cannot reach the order service at {url}: {one_line(exc)}")
