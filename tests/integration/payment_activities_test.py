"""The payment service's activities against the real simulator, Postgres and Redis: each
capture and refund happens once per key, whatever is retried and whatever reply is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError

from contracts import decode_envelope
from contracts.commands import CapturePayment, RefundPayment
from eventbus.appender import EventAppender
from eventbus.topology import ORDERS, Topology
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from orderly_platform.settings import Settings
from payment_provider_sim.app import create_app
from payment_provider_sim.settings import SimulatorSettings
from payments.activities import PaymentActivities
from payments.ledger import payment_ledger
from payments.provider import PaymentProvider, ProviderUnavailable
from tests.databases import fresh_database

TOPOLOGY = Topology(partitions=2)
KEY = "sim-key"


class Payments:
    def __init__(self, activities: PaymentActivities, url: str, session: aiohttp.ClientSession):
        self.activities = activities
        self.url = url
        self.session = session

    async def faults(self, **knobs: Any) -> None:
        async with self.session.put(
            f"{self.url}/_sim/faults", json=knobs, headers={"Authorization": f"Bearer {KEY}"}
        ) as response:
            assert response.status == 200, await response.text()

    async def charges(self, order_id: str) -> list[tuple[str, int]]:
        async with self.session.get(f"{self.url}/charges", params={"order_id": order_id}) as r:
            return [(c["kind"], c["amount"]) for c in (await r.json())["charges"]]


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(await fresh_database(postgres_server, "payments"))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def payments(
    tmp_path: Path, engine: AsyncEngine, redis: aioredis.Redis
) -> AsyncIterator[Payments]:
    app = create_app(Settings(data_dir=tmp_path), SimulatorSettings(api_key=KEY))
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url("")).rstrip("/")
        provider = PaymentProvider(url, session, api_key=KEY, timeout_s=5)
        activities = PaymentActivities(provider, engine, EventAppender(redis, TOPOLOGY))
        yield Payments(activities, url, session)


def capture(order_id: str = "o-1", token: str = "tok_visa") -> CapturePayment:
    return CapturePayment(
        order_id=order_id,
        amount=2500,
        currency="EUR",
        payment_token=token,
        idempotency_key=f"{order_id}:capture",
    )


def refund(order_id: str = "o-1") -> RefundPayment:
    return RefundPayment(
        order_id=order_id, amount=2500, currency="EUR", idempotency_key=f"{order_id}:refund"
    )


async def payment_events(redis: aioredis.Redis, order_id: str) -> list[str]:
    stream = TOPOLOGY.partition(ORDERS, order_id).stream
    return [
        type(decode_envelope(fields[b"event"]).data).__name__
        for _, fields in await redis.xrange(stream)
    ]


async def test_a_capture_retried_charges_once_and_appends_one_event(
    payments: Payments, redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    first = await payments.activities.capture_payment(capture())
    again = await payments.activities.capture_payment(capture())
    assert first.status == "captured" and first.charge_id
    assert again == first
    assert await payments.charges("o-1") == [("capture", 2500)]
    assert await payment_events(redis, "o-1") == ["PaymentCaptured"]
    async with engine.connect() as connection:
        [row] = (await connection.execute(sa.select(payment_ledger))).all()
    assert (row.status, row.provider_ref) == ("captured", first.charge_id)


async def test_a_decline_is_an_answer_remembered_without_asking_again(
    payments: Payments, redis: aioredis.Redis
) -> None:
    declined = await payments.activities.capture_payment(capture(token="tok_decline_no_funds"))
    assert declined.status == "declined" and declined.reason
    await payments.faults(outage=True)  # a second ask would fail: it is answered from the ledger
    assert (
        await payments.activities.capture_payment(capture(token="tok_decline_no_funds")) == declined
    )
    assert await payments.charges("o-1") == []
    assert await payment_events(redis, "o-1") == ["PaymentDeclined"]


async def test_a_lost_reply_is_retried_into_exactly_one_capture(
    payments: Payments, redis: aioredis.Redis
) -> None:
    await payments.faults(ambiguous_next=1)
    with pytest.raises(ProviderUnavailable):
        await payments.activities.capture_payment(capture())
    assert await payments.charges("o-1") == [("capture", 2500)]  # it did capture
    outcome = await payments.activities.capture_payment(capture())  # Temporal's retry
    assert outcome.status == "captured"
    assert await payments.charges("o-1") == [("capture", 2500)]
    assert await payment_events(redis, "o-1") == ["PaymentCaptured"]


async def test_a_refund_gives_back_the_capture_once(
    payments: Payments, redis: aioredis.Redis
) -> None:
    captured = await payments.activities.capture_payment(capture())
    first = await payments.activities.refund_payment(refund())
    again = await payments.activities.refund_payment(refund())
    assert first.refunded == 2500 and first.refund_id and again == first
    assert await payments.charges("o-1") == [("capture", 2500), ("refund", 2500)]
    assert captured.charge_id
    assert await payment_events(redis, "o-1") == ["PaymentCaptured", "PaymentRefunded"]


async def test_a_refund_of_nothing_captured_refunds_nothing(payments: Payments) -> None:
    assert (await payments.activities.refund_payment(refund("o-2"))).refunded == 0
    await payments.activities.capture_payment(capture("o-3", token="tok_decline_x"))
    assert (await payments.activities.refund_payment(refund("o-3"))).refunded == 0
    assert await payments.charges("o-2") == await payments.charges("o-3") == []


async def test_a_refund_after_a_capture_whose_reply_never_came_finds_and_refunds_it(
    payments: Payments,
) -> None:
    # The provider captured but the reply was lost, and the saga gave up on the payment.
    await payments.faults(ambiguous_next=1)
    with pytest.raises(ProviderUnavailable):
        await payments.activities.capture_payment(capture())
    outcome = await payments.activities.refund_payment(refund())
    assert outcome.refunded == 2500
    assert await payments.charges("o-1") == [("capture", 2500), ("refund", 2500)]


async def test_a_request_the_provider_refuses_is_not_retried(payments: Payments) -> None:
    await payments.activities.capture_payment(capture())
    # The same key for another amount: the ledger refuses it before the provider would.
    with pytest.raises(ApplicationError) as refused:
        await payments.activities.capture_payment(
            CapturePayment(
                order_id="o-1",
                amount=9999,
                currency="EUR",
                payment_token="tok_visa",
                idempotency_key="o-1:capture",
            )
        )
    assert refused.value.non_retryable
