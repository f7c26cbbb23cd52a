"""``POST /charges``, ``POST /refunds`` and ``GET /charges?order_id=``: the provider's API.

A charge or refund goes through, in order:

1. the bearer token when ``ORDERLY_SIM_API_KEY`` is set (401), ``application/json`` (415), the
   body (400 malformed JSON, 413 too large, 422 schema violation) and its idempotency key
   (the body's ``idempotency_key`` or the ``Idempotency-Key`` header; both may be sent if
   they are equal, 400 otherwise; one is required, 422);
2. the faults: the latency, then an outage (503 ``provider_unavailable``, nothing recorded);
3. the ledger: the same key and body again answers as the first time (with
   ``Idempotent-Replayed: true``); the key with another body is a 409
   ``idempotency_conflict``; a refund of an unknown charge is a 404 ``unknown_charge``, of
   more than is left a 422 ``refund_exceeds_capture``, in another currency a 422
   ``currency_mismatch`` (none of these is recorded); a new capture, decline or refund is
   written to disk before anything is answered;
4. the reply: 201 for a capture or refund, 402 ``card_declined`` for a decline, unless the
   faults lose it (the record stays).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from contracts.errors import ContractError, MalformedJson, malformed_json, schema_violation
from orderly_platform.http import ApiError, json_response, require_bearer_token
from payment_provider_sim.durable_ledger import DurableLedger
from payment_provider_sim.faults import Faults
from payment_provider_sim.journal import JournalFailed
from payment_provider_sim.keys import FAULTS, IN_FLIGHT, LEDGER, SIMULATOR_SETTINGS
from payment_provider_sim.ledger import (
    Answer,
    Captured,
    CaptureRequest,
    Declined,
    LedgerRefusal,
    Refunded,
    RefundRequest,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

R = TypeVar("R", CaptureRequest, RefundRequest)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in (CaptureRequest, RefundRequest)
}


async def post_charge(request: web.Request) -> web.StreamResponse:
    capture = await _read_request(request, CaptureRequest)
    key = _idempotency_key(request, capture.idempotency_key)
    return await _carry_out(request, lambda ledger: ledger.capture(key, capture))


async def post_refund(request: web.Request) -> web.StreamResponse:
    refund = await _read_request(request, RefundRequest)
    key = _idempotency_key(request, refund.idempotency_key)
    return await _carry_out(request, lambda ledger: ledger.refund(key, refund))


async def get_charges(request: web.Request) -> web.Response:
    order_id = request.query.get("order_id")
    if not order_id:
        raise ApiError(400, "missing_parameter", {"field": "order_id", "reason": "required"})
    try:
        charges = request.app[LEDGER].charges(order_id)
    except JournalFailed as exc:
        raise _refusal(exc) from None
    return json_response({"charges": charges})


async def _read_request(request: web.Request, cls: type[R]) -> R:
    api_key = request.app[SIMULATOR_SETTINGS].api_key
    if api_key:
        require_bearer_token(request, api_key)
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send application/json, not {request.content_type or 'nothing'}",
        )
    raw = await request.read()  # 413 past client_max_size
    try:
        decoded: R = _decoders[cls].decode(raw)
    except msgspec.ValidationError as exc:
        raise _contract_error(schema_violation(exc)) from None
    except msgspec.DecodeError as exc:
        raise _contract_error(malformed_json(exc)) from None
    return decoded


def _contract_error(error: ContractError) -> ApiError:
    """The order service's error shape: 400 for what is not JSON, 422 for the wrong JSON."""
    status = 400 if isinstance(error, MalformedJson) else 422
    return ApiError(status, error.code, {"field": error.field, "reason": error.reason})


def _idempotency_key(request: web.Request, in_body: str | None) -> str:
    headers = request.headers.getall(IDEMPOTENCY_HEADER, [])
    if len(headers) > 1:
        raise _bad_key(400, IDEMPOTENCY_HEADER, "send one Idempotency-Key header, not several")
    in_header = headers[0] if headers else None
    if in_header is not None and not 0 < len(in_header) <= MAX_KEY_LENGTH:
        raise _bad_key(400, IDEMPOTENCY_HEADER, f"1 to {MAX_KEY_LENGTH} characters")
    if in_header is not None and in_body is not None and in_header != in_body:
        raise _bad_key(400, IDEMPOTENCY_HEADER, "differs from the body's idempotency_key")
    key = in_body or in_header
    if key is None:
        raise _bad_key(
            422, "$.idempotency_key", "required, in the body or the Idempotency-Key header"
        )
    return key


def _bad_key(status: int, field: str, reason: str) -> ApiError:
    code = "bad_header" if status == 400 else "schema_violation"
    return ApiError(status, code, {"field": field, "reason": reason})


async def _carry_out(
    request: web.Request, act: Callable[[DurableLedger], Awaitable[Answer]]
) -> web.StreamResponse:
    # Like a real provider, finish what was asked even when the caller hangs up (a client's
    # timeout is as ambiguous as a lost reply): the work runs as its own task, which the
    # handler's cancellation does not reach and which a graceful stop waits for.
    work = asyncio.ensure_future(_act(request, act))
    in_flight = request.app[IN_FLIGHT]
    in_flight.add(work)
    work.add_done_callback(_forget(in_flight))
    answer = await asyncio.shield(work)
    return _reply(request, answer)


def _forget(in_flight: set[asyncio.Future[Answer]]) -> Callable[[asyncio.Future[Answer]], None]:
    def forget(work: asyncio.Future[Answer]) -> None:
        in_flight.discard(work)
        if not work.cancelled():
            # Retrieved here: when the caller hung up, nobody else would, and asyncio would
            # log the refusal as an error never retrieved.
            work.exception()

    return forget


async def _act(request: web.Request, act: Callable[[DurableLedger], Awaitable[Answer]]) -> Answer:
    ledger = await _pass_faults(request)
    try:
        return await act(ledger)
    except (LedgerRefusal, JournalFailed) as exc:
        raise _refusal(exc) from None


async def _pass_faults(request: web.Request) -> DurableLedger:
    """Wait out the latency, refuse during an outage; the ledger to use otherwise."""
    faults = request.app[FAULTS]
    latency_ms = faults.knobs.latency_ms
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)  # the simulated provider's own delay
    if faults.in_outage():
        raise ApiError(
            503,
            "provider_unavailable",
            "the provider is having an outage; nothing was recorded, retry later",
            headers={"Retry-After": "1"},
        )
    return request.app[LEDGER]


def _refusal(exc: LedgerRefusal | JournalFailed) -> ApiError:
    if isinstance(exc, JournalFailed):
        return ApiError(503, "ledger_unavailable", f"the provider cannot record anything: {exc}")
    return ApiError(exc.status, exc.code, str(exc))


def _reply(request: web.Request, answer: Answer) -> web.StreamResponse:
    faults: Faults = request.app[FAULTS]
    if faults.lose_this_reply():
        return _lose_reply(request, faults.knobs.ambiguous_mode)
    headers = {} if answer.new else {REPLAYED_HEADER: "true"}
    record = answer.record
    if isinstance(record, Declined):
        raise ApiError(402, "card_declined", record.reason, headers=headers)
    return json_response(_view(record), status=201, headers=headers)


def _view(record: Captured | Refunded) -> dict[str, object]:
    if isinstance(record, Captured):
        return {
            "charge_id": record.charge_id,
            "status": "captured",
            "order_id": record.order_id,
            "amount": record.amount,
            "currency": record.currency,
            "idempotency_key": record.key,
            "created_at": record.at,
        }
    return {
        "refund_id": record.refund_id,
        "status": "refunded",
        "charge_id": record.charge_id,
        "order_id": record.order_id,
        "amount": record.amount,
        "currency": record.currency,
        "idempotency_key": record.key,
        "created_at": record.at,
    }


def _lose_reply(request: web.Request, mode: str) -> web.StreamResponse:
    """The request was carried out and recorded; its client is not told."""
    if mode == "504":
        raise ApiError(
            504, "gateway_timeout", "the provider did not answer in time; the outcome is unknown"
        )
    if request.transport is not None:
        request.transport.close()
    # Never reaches the client: the connection is already closed.
    return web.Response(status=504)
