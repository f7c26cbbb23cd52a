"""The simulator's HTTP surface: input errors record nothing; keys in body or header; faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from orderly_platform.settings import Settings
from payment_provider_sim.app import create_app
from payment_provider_sim.settings import SimulatorSettings

TOKEN = "sim-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHARGE = {
    "order_id": "o-1",
    "amount": 1000,
    "currency": "EUR",
    "payment_token": "tok_visa",
    "idempotency_key": "o-1:capture",
}

Client = TestClient[Any, Any]


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(data_dir=tmp_path, max_request_bytes=4096)
    app = create_app(settings, SimulatorSettings(api_key=TOKEN))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def charges(client: Client, order_id: str = "o-1") -> list[dict[str, Any]]:
    response = await client.get("/charges", params={"order_id": order_id})
    assert response.status == 200
    listed: list[dict[str, Any]] = (await response.json())["charges"]
    return listed


async def test_a_capture_answers_201_and_lists_exactly_the_contract_fields(
    client: Client,
) -> None:
    response = await client.post("/charges", json=CHARGE, headers=AUTH)
    assert response.status == 201
    body = await response.json()
    assert body["status"] == "captured"
    assert body["charge_id"].startswith("ch_")
    assert "Idempotent-Replayed" not in response.headers
    [listed] = await charges(client)
    assert listed.keys() == {"kind", "amount", "idempotency_key", "at"}
    assert (listed["kind"], listed["amount"], listed["idempotency_key"]) == (
        "capture",
        1000,
        "o-1:capture",
    )
    assert listed["at"].endswith("Z")
    assert listed["at"] == body["created_at"]


async def test_the_key_may_come_in_the_header_instead(client: Client) -> None:
    without_key = {k: v for k, v in CHARGE.items() if k != "idempotency_key"}
    first = await client.post(
        "/charges", json=without_key, headers={**AUTH, "Idempotency-Key": "o-1:capture"}
    )
    assert first.status == 201
    again = await client.post("/charges", json=CHARGE, headers=AUTH)  # the same key, in the body
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json()) == (await first.json())
    assert len(await charges(client)) == 1


async def test_a_replayed_decline_is_the_same_decline(client: Client) -> None:
    declined = {**CHARGE, "payment_token": "tok_decline_stolen"}
    first = await client.post("/charges", json=declined, headers=AUTH)
    again = await client.post("/charges", json=declined, headers=AUTH)
    assert (first.status, again.status) == (402, 402)
    assert (await first.json())["error"] == "card_declined"
    assert (await again.json()) == (await first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await charges(client) == []


@pytest.mark.parametrize(
    ("send", "status", "error"),
    [
        (
            {"data": b'{"order_id": "o-1",', "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            {"data": b"order_id=o-1", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ({"json": {**CHARGE, "amount": 0}}, 422, "schema_violation"),
        ({"json": {**CHARGE, "amount": "10"}}, 422, "schema_violation"),
        ({"json": {**CHARGE, "currency": "eur"}}, 422, "schema_violation"),
        (
            {"json": {k: v for k, v in CHARGE.items() if k != "payment_token"}},
            422,
            "schema_violation",
        ),
        (
            {"json": {k: v for k, v in CHARGE.items() if k != "idempotency_key"}},
            422,
            "schema_violation",
        ),
        ({"json": CHARGE, "headers": {"Idempotency-Key": "another"}}, 400, "bad_header"),
        ({"json": {**CHARGE, "payment_token": "x" * 5000}}, 413, "payload_too_large"),
    ],
)
async def test_bad_input_gets_a_json_error_and_records_nothing(
    client: Client, send: dict[str, Any], status: int, error: str
) -> None:
    send = {**send, "headers": {**AUTH, **send.get("headers", {})}}
    response = await client.post("/charges", **send)
    assert response.status == status
    assert (await response.json())["error"] == error
    assert await charges(client) == []


async def test_writes_need_the_api_key_when_one_is_set(client: Client) -> None:
    response = await client.post("/charges", json=CHARGE)
    assert response.status == 401
    assert (await client.put("/_sim/faults", json={"outage": True})).status == 401
    assert await charges(client) == []


async def test_listing_needs_an_order_id(client: Client) -> None:
    for query in ("", "?order_id="):
        response = await client.get(f"/charges{query}")
        assert response.status == 400
        assert (await response.json())["error"] == "missing_parameter"


async def test_an_outage_answers_503_and_records_nothing(client: Client) -> None:
    await client.put("/_sim/faults", json={"outage": True}, headers=AUTH)
    response = await client.post("/charges", json=CHARGE, headers=AUTH)
    assert response.status == 503
    assert (await response.json())["error"] == "provider_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert await charges(client) == []
    await client.put("/_sim/faults", json={"outage": False}, headers=AUTH)
    assert (await client.post("/charges", json=CHARGE, headers=AUTH)).status == 201


async def test_a_lost_reply_drops_the_connection_after_recording(client: Client) -> None:
    await client.put("/_sim/faults", json={"ambiguous_next": 1}, headers=AUTH)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post("/charges", json=CHARGE, headers=AUTH)
    assert len(await charges(client)) == 1


async def test_in_504_mode_a_lost_reply_is_a_gateway_timeout(client: Client) -> None:
    faults = await client.put(
        "/_sim/faults", json={"ambiguous_next": 1, "ambiguous_mode": "504"}, headers=AUTH
    )
    assert (await faults.json())["ambiguous_next"] == 1
    response = await client.post("/charges", json=CHARGE, headers=AUTH)
    assert response.status == 504
    assert (await response.json())["error"] == "gateway_timeout"
    assert len(await charges(client)) == 1
    assert (await (await client.get("/_sim/faults")).json())["ambiguous_next"] == 0


async def test_the_faults_endpoint_shows_and_changes_the_knobs(client: Client) -> None:
    shown = await (await client.get("/_sim/faults")).json()
    assert shown == {
        "latency_ms": 0,
        "outage": False,
        "outages": [],
        "ambiguous_rate": 0.0,
        "ambiguous_next": 0,
        "ambiguous_mode": "disconnect",
        "in_outage": False,
        "uptime_s": shown["uptime_s"],
    }
    changed = await client.put(
        "/_sim/faults", json={"latency_ms": 20, "outages": [[0, 3600]]}, headers=AUTH
    )
    assert changed.status == 200
    body = await changed.json()
    assert (body["latency_ms"], body["outages"], body["in_outage"]) == (20, [[0, 3600]], True)
    typo = await client.put("/_sim/faults", json={"outgae": True}, headers=AUTH)
    assert typo.status == 422


async def test_health_and_readiness(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"ledger": "ok"}
