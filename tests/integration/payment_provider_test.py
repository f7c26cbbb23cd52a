"""The payment client (packages/payments/provider.py) against the real simulator.

Most tests serve the simulator's app in this process on a real socket; the restart tests run
``python -m payment_provider_sim`` as its own process, the way ``orderly up`` starts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import BaseTestServer, TestServer

from orderly_platform.embedded import PythonService, ServerFailedToStart
from orderly_platform.settings import Settings
from payment_provider_sim.app import create_app
from payment_provider_sim.settings import SimulatorSettings
from payments.provider import (
    Capture,
    ChargeRecord,
    IdempotencyConflict,
    InvalidRequest,
    PaymentDeclined,
    PaymentProvider,
    ProviderUnavailable,
)

TOKEN = "provider-test-token"


class Simulator:
    """The simulator's app on a real port, a client of it, and its fault knobs."""

    def __init__(self, server: BaseTestServer, session: aiohttp.ClientSession) -> None:
        self.url = str(server.make_url("")).rstrip("/")
        self.session = session
        self.provider = PaymentProvider(self.url, session, api_key=TOKEN, timeout_s=5)

    async def faults(self, **knobs: Any) -> None:
        async with self.session.put(
            f"{self.url}/_sim/faults", json=knobs, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response:
            assert response.status == 200, await response.text()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest_asyncio.fixture
async def sim(tmp_path: Path, session: aiohttp.ClientSession) -> AsyncIterator[Simulator]:
    app = create_app(Settings(data_dir=tmp_path), SimulatorSettings(api_key=TOKEN))
    async with TestServer(app) as server:
        yield Simulator(server, session)


async def capture(provider: PaymentProvider, key: str = "o-1:capture", **changes: Any) -> Capture:
    request: dict[str, Any] = {
        "order_id": "o-1",
        "amount": 2500,
        "currency": "EUR",
        "payment_token": "tok_visa",
        "idempotency_key": key,
    }
    return await provider.capture(**{**request, **changes})


def kinds(charges: list[ChargeRecord]) -> list[tuple[str, int, str]]:
    return [(c.kind, c.amount, c.idempotency_key) for c in charges]


async def test_a_capture_is_made_once_and_listed(sim: Simulator) -> None:
    captured = await capture(sim.provider)
    assert captured.charge_id.startswith("ch_")
    assert (captured.order_id, captured.amount, captured.currency) == ("o-1", 2500, "EUR")
    assert not captured.replayed
    assert kinds(await sim.provider.charges("o-1")) == [("capture", 2500, "o-1:capture")]
    assert await sim.provider.charges("o-2") == []


async def test_a_decline_is_final_and_the_same_on_retry(sim: Simulator) -> None:
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as declined:
            await capture(sim.provider, payment_token="tok_decline_insufficient_funds")
        assert not declined.value.retryable
        assert declined.value.code == "card_declined"
        assert "declined" in str(declined.value)
    assert await sim.provider.charges("o-1") == []


async def test_a_replayed_key_returns_the_first_capture(sim: Simulator) -> None:
    first = await capture(sim.provider)
    again = await capture(sim.provider)
    assert again.replayed
    assert again.charge_id == first.charge_id
    assert len(await sim.provider.charges("o-1")) == 1


async def test_a_key_reused_for_another_request_is_a_conflict(sim: Simulator) -> None:
    await capture(sim.provider)
    with pytest.raises(IdempotencyConflict) as conflict:
        await capture(sim.provider, amount=2600)
    assert not conflict.value.retryable
    assert conflict.value.status == 409
    assert len(await sim.provider.charges("o-1")) == 1


async def test_a_refund_is_made_once_and_no_more_than_was_captured(sim: Simulator) -> None:
    captured = await capture(sim.provider)
    refund_of = {
        "order_id": "o-1",
        "charge_id": captured.charge_id,
        "currency": "EUR",
    }
    refund = await sim.provider.refund(**refund_of, amount=2500, idempotency_key="o-1:refund")
    assert refund.refund_id.startswith("re_")
    assert refund.charge_id == captured.charge_id
    again = await sim.provider.refund(**refund_of, amount=2500, idempotency_key="o-1:refund")
    assert (again.refund_id, again.replayed) == (refund.refund_id, True)

    with pytest.raises(InvalidRequest) as over:
        await sim.provider.refund(**refund_of, amount=1, idempotency_key="o-1:refund-2")
    assert (over.value.status, over.value.code) == (422, "refund_exceeds_capture")
    assert not over.value.retryable
    assert kinds(await sim.provider.charges("o-1")) == [
        ("capture", 2500, "o-1:capture"),
        ("refund", 2500, "o-1:refund"),
    ]


async def test_a_refund_of_an_unknown_charge_is_refused(sim: Simulator) -> None:
    with pytest.raises(InvalidRequest) as unknown:
        await sim.provider.refund(
            order_id="o-1", charge_id="ch_nope", amount=1, currency="EUR", idempotency_key="r"
        )
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_charge")


async def test_an_outage_is_retryable_and_records_nothing(sim: Simulator) -> None:
    await sim.faults(outage=True)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await capture(sim.provider)
    assert unavailable.value.retryable
    assert unavailable.value.status == 503
    assert await sim.provider.charges("o-1") == []

    await sim.faults(outage=False)
    assert not (await capture(sim.provider)).replayed  # nothing was recorded under the key


@pytest.mark.parametrize("mode", ["disconnect", "504"])
async def test_a_lost_reply_is_unavailable_and_the_retry_returns_that_capture(
    sim: Simulator, mode: str
) -> None:
    await sim.faults(ambiguous_next=1, ambiguous_mode=mode)
    with pytest.raises(ProviderUnavailable) as lost:
        await capture(sim.provider)
    assert lost.value.retryable
    # The provider charged; only the reply was lost.
    assert kinds(await sim.provider.charges("o-1")) == [("capture", 2500, "o-1:capture")]

    retried = await capture(sim.provider)
    assert retried.replayed
    assert kinds(await sim.provider.charges("o-1")) == [("capture", 2500, "o-1:capture")]


async def test_a_lost_refund_reply_is_retried_without_a_second_refund(sim: Simulator) -> None:
    captured = await capture(sim.provider)
    refund: dict[str, Any] = {
        "order_id": "o-1",
        "charge_id": captured.charge_id,
        "amount": 1000,
        "currency": "EUR",
        "idempotency_key": "o-1:refund",
    }
    await sim.faults(ambiguous_next=1)
    with pytest.raises(ProviderUnavailable):
        await sim.provider.refund(**refund)
    assert (await sim.provider.refund(**refund)).replayed
    assert [c.kind for c in await sim.provider.charges("o-1")] == ["capture", "refund"]


async def test_a_timeout_is_unavailable_and_the_charge_it_hid_is_returned_on_retry(
    sim: Simulator,
) -> None:
    impatient = PaymentProvider(sim.url, sim.session, api_key=TOKEN, timeout_s=0.2)
    await sim.faults(latency_ms=600)
    with pytest.raises(ProviderUnavailable, match="did not answer in time"):
        await capture(impatient)
    await sim.faults(latency_ms=0)
    # The slow request goes on at the provider after the client gave up, and captures.
    for _ in range(50):
        if await sim.provider.charges("o-1"):
            break
        await asyncio.sleep(0.1)
    assert (await capture(impatient)).replayed
    assert len(await sim.provider.charges("o-1")) == 1


async def test_an_unreachable_provider_is_unavailable(session: aiohttp.ClientSession) -> None:
    nowhere = PaymentProvider("http://127.0.0.1:9", session)  # the discard port: refused
    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        await capture(nowhere)
    with pytest.raises(ProviderUnavailable):
        await nowhere.charges("o-1")


async def test_ten_concurrent_identical_captures_make_one_charge(sim: Simulator) -> None:
    captures = await asyncio.gather(*(capture(sim.provider) for _ in range(10)))
    assert len({c.charge_id for c in captures}) == 1
    assert sum(not c.replayed for c in captures) == 1
    assert kinds(await sim.provider.charges("o-1")) == [("capture", 2500, "o-1:capture")]


def simulator_process(data_dir: Path, **env: str) -> PythonService:
    return PythonService(
        "payment-provider",
        "payment_provider_sim",
        data_dir,
        env={"ORDERLY_DATA_DIR": str(data_dir), **env},
        start_timeout=30,
    )


async def test_the_ledger_survives_a_restart_of_the_process(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    first = simulator_process(tmp_path)
    await first.start()
    try:
        provider = PaymentProvider(first.url, session)
        captured = await capture(provider)
        await provider.refund(
            order_id="o-1",
            charge_id=captured.charge_id,
            amount=500,
            currency="EUR",
            idempotency_key="o-1:refund",
        )
        with pytest.raises(PaymentDeclined):
            await capture(provider, key="o-2:capture", order_id="o-2", payment_token="tok_decline")
        listed = await provider.charges("o-1")
        with pytest.raises(ServerFailedToStart):  # one simulator per ledger
            await simulator_process(tmp_path).start()
    finally:
        await first.stop()

    second = simulator_process(tmp_path)
    await second.start()
    try:
        provider = PaymentProvider(second.url, session)
        assert await provider.charges("o-1") == listed
        again = await capture(provider)
        assert (again.charge_id, again.replayed) == (captured.charge_id, True)
        with pytest.raises(PaymentDeclined):
            await capture(provider, key="o-2:capture", order_id="o-2", payment_token="tok_decline")
        with pytest.raises(InvalidRequest, match="exceeds"):  # the refund before still counts
            await provider.refund(
                order_id="o-1",
                charge_id=captured.charge_id,
                amount=2001,
                currency="EUR",
                idempotency_key="o-1:refund-2",
            )
    finally:
        await second.stop()
    assert (tmp_path / "payment-provider" / "ledger.jsonl").exists()


async def test_the_process_takes_its_faults_from_the_environment(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    process = simulator_process(
        tmp_path,
        ORDERLY_SIM_DATA_DIR=str(tmp_path / "ledger"),
        ORDERLY_SIM_OUTAGES="0-3600",
        ORDERLY_SIM_LATENCY_MS="10",
        ORDERLY_SIM_API_KEY=TOKEN,
    )
    await process.start()
    try:
        async with session.get(f"{process.url}/_sim/faults") as response:
            faults = await response.json()
        assert (faults["outages"], faults["latency_ms"], faults["in_outage"]) == (
            [[0, 3600]],
            10,
            True,
        )
        with pytest.raises(InvalidRequest) as unauthorized:
            await capture(PaymentProvider(process.url, session))
        assert unauthorized.value.status == 401
        with pytest.raises(ProviderUnavailable):
            await capture(PaymentProvider(process.url, session, api_key=TOKEN))
    finally:
        await process.stop()
    assert (tmp_path / "ledger" / "ledger.jsonl").exists()
