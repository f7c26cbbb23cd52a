"""How the client reads answers the simulator never gives: a proxy's HTML, throttling,
a success it cannot decode. (The simulator itself is driven in tests/integration.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from payments.provider import (
    InvalidRequest,
    PaymentProvider,
    ProviderError,
    ProviderUnavailable,
)

CANNED: dict[str, tuple[int, str, str]] = {
    "proxy-502": (502, "text/html", "<html><body>Bad Gateway</body></html>"),
    "throttled": (429, "application/json", '{"error": "rate_limited", "detail": "slow down"}'),
    "garbled-success": (201, "application/json", '{"charge_id": 12'),
    "wrong-success": (201, "application/json", '{"unexpected": true}'),
    "redirect": (302, "text/plain", ""),
    "gone": (410, "text/plain", "no such endpoint"),
}


@pytest_asyncio.fixture
async def provider() -> AsyncIterator[PaymentProvider]:
    async def canned(request: web.Request) -> web.Response:
        body = await request.json()
        status, content_type, text = CANNED[body["order_id"]]
        headers = {"Location": "/elsewhere"} if status == 302 else None
        return web.Response(status=status, content_type=content_type, text=text, headers=headers)

    app = web.Application()
    app.router.add_post("/charges", canned)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        yield PaymentProvider(str(server.make_url("/")), session)


async def capture(provider: PaymentProvider, case: str) -> None:
    await provider.capture(
        order_id=case, amount=1, currency="EUR", payment_token="tok", idempotency_key=case
    )


@pytest.mark.parametrize(
    ("case", "error", "status"),
    [
        ("proxy-502", ProviderUnavailable, 502),
        ("throttled", ProviderUnavailable, 429),
        ("garbled-success", ProviderUnavailable, None),
        ("wrong-success", ProviderUnavailable, None),
        ("redirect", ProviderUnavailable, 302),
        ("gone", InvalidRequest, 410),
    ],
)
async def test_odd_answers_map_to_the_documented_errors(
    provider: PaymentProvider, case: str, error: type[ProviderError], status: int | None
) -> None:
    with pytest.raises(error) as raised:
        await capture(provider, case)
    assert raised.value.status == status
    assert raised.value.retryable == (error is ProviderUnavailable)
