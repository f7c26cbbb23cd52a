"""``POST /orders``: validate, price from the live catalog, append OrderPlaced; nothing else.

The append of OrderPlaced (to the new order's stream, expected version 0) is the request's
only write, and with an ``Idempotency-Key`` it also stores the key's record in the same
atomic script call (see ``order_service.idempotency`` for that design). Prices come from the
SKUs' live catalog copies (``inventory.catalog_copy``), which a ``PUT /catalog/{sku}`` sets in
the same step as its own append: an order placed after that PUT answered sees its price. The
copies and the key's record are read in one pipelined round trip before anything is written.

Stock is not checked here: the saga reserves it (and rejects the order when it is short),
the one place it can be checked without a race against other orders.

Errors, each written as ``{"error": code, "detail": ...}`` and writing nothing: 401 bad or
missing token; 415 not application/json; 400 malformed JSON or a malformed Idempotency-Key;
413 body too large; 422 schema violation, ``unknown_sku`` (not in the catalog) or
``mixed_currencies``, each naming the item's field; 409 ``idempotency_conflict`` when the
key was used for another request; 503 when Redis does not answer (retrying with the same key
is safe).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import RedisError

from contracts import ContractError, PlaceOrder, decode_command, new_envelope
from eventbus.appender import AlreadyClaimed, PendingAppend
from eventbus.topology import Topology
from inventory.catalog_copy import CatalogItem, CatalogLookup
from order_service.catalog_endpoint import SOURCE
from order_service.errors import append_or_503, contract_error, require_json, store_unavailable
from order_service.idempotency import IdempotentRequest, idempotency_key, new_order_id
from order_service.keys import APPENDER, REDIS, SETTINGS, TOPOLOGY
from order_service.pricing import PricingRefused, price_order
from orderly_platform.http import (
    ApiError,
    correlation_id_of,
    json_response,
    require_bearer_token,
)

PENDING = "PENDING"
REPLAYED_HEADER = "Idempotent-Replayed"


async def post_order(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    assert settings.api_token is not None
    require_bearer_token(request, settings.api_token)
    require_json(request.content_type)
    key = idempotency_key(request)
    try:
        command = decode_command(await request.read(), PlaceOrder)  # 413 past client_max_size
    except ContractError as exc:
        raise contract_error(exc) from None
    topology = request.app[TOPOLOGY]
    idempotent = None if key is None else IdempotentRequest.of(key, command, topology)

    stored, catalog = await _read(
        request.app[REDIS], topology, idempotent, (item.sku for item in command.items)
    )
    if idempotent is not None and stored is not None:
        return _accepted(idempotent.first_order_id(stored), replayed=True)

    order_id = new_order_id(topology, None if idempotent is None else idempotent.partition)
    # The rest of the request's log lines are about this order (request_context clears it).
    structlog.contextvars.bind_contextvars(order_id=order_id)
    try:
        event = price_order(command, catalog, order_id=order_id)
    except PricingRefused as exc:
        raise ApiError(422, exc.code, {"field": exc.field, "reason": exc.reason}) from None
    pending = PendingAppend(
        new_envelope(
            event, source=SOURCE, subject=order_id, correlation_id=correlation_id_of(request)
        ),
        expected_version=0,
        claim=None if idempotent is None else idempotent.claim(order_id),
    )
    try:
        await append_or_503(request.app[APPENDER], [pending])
    except AlreadyClaimed as held:  # a concurrent request with the same key got there first
        assert idempotent is not None
        return _accepted(idempotent.first_order_id(held.value), replayed=True)
    return _accepted(order_id, replayed=False)


async def _read(
    redis: aioredis.Redis,
    topology: Topology,
    idempotent: IdempotentRequest | None,
    skus: Iterable[str],
) -> tuple[bytes | None, dict[str, CatalogItem]]:
    """The key's stored record (if any) and the catalog entries of ``skus``, in one round trip."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            if idempotent is not None:
                pipe.get(idempotent.record_key)
            lookup = CatalogLookup.queue(pipe, topology, skus)
            replies = await pipe.execute()
    except RedisError as exc:
        raise store_unavailable(exc) from None
    stored = replies.pop(0) if idempotent is not None else None
    return stored, lookup.items(replies)


def _accepted(order_id: str, *, replayed: bool) -> web.Response:
    headers = {"Location": f"/orders/{order_id}"}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return json_response({"order_id": order_id, "status": PENDING}, status=202, headers=headers)
