"""``POST /orders/{id}/cancel``: ask the order's saga to cancel it; one append, nothing else.

The request appends ``OrderCancellationRequested`` to the order's stream and answers 202:
the saga, signalled by the bridge, cancels the order (refunding and releasing what it had
done) unless it has already asked for the stock to be committed, in which case the order is
confirmed. ``GET /orders/{id}`` shows how it ended. A repeated request appends another
request, which the saga ignores.

The body is optional: ``{"reason": str}`` (default "customer request"). Errors, each as
``{"error": code, "detail": ...}`` and writing nothing: 401 bad or missing token; 415 a body
that is not application/json; 400 malformed JSON; 422 a bad reason; 404 ``order_not_found``
(no order with that id was ever placed); 503 when Redis does not answer.
"""

from __future__ import annotations

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from contracts import (
    CancelOrder,
    ContractError,
    MalformedJson,
    OrderCancellationRequested,
    decode_command,
    new_envelope,
)
from eventbus.appender import PendingAppend
from eventbus.topology import ORDERS
from order_service.catalog_endpoint import SOURCE
from order_service.errors import append_or_503, contract_error, require_json, store_unavailable
from order_service.keys import APPENDER, REDIS, SETTINGS, TOPOLOGY
from orderly_platform.http import (
    ApiError,
    correlation_id_of,
    json_response,
    require_bearer_token,
)


async def post_cancel(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    assert settings.api_token is not None
    require_bearer_token(request, settings.api_token)
    order_id = request.match_info["order_id"]
    command = _command(order_id, await request.read(), request.content_type)

    partition = request.app[TOPOLOGY].partition(ORDERS, order_id)
    try:
        placed = await request.app[REDIS].exists(partition.version_key(order_id))
    except RedisError as exc:
        raise store_unavailable(exc) from None
    if not placed:
        raise ApiError(404, "order_not_found", f"no order {order_id!r} was placed")
    event = OrderCancellationRequested(order_id=command.order_id, reason=command.reason)
    envelope = new_envelope(
        event, source=SOURCE, subject=order_id, correlation_id=correlation_id_of(request)
    )
    await append_or_503(request.app[APPENDER], [PendingAppend(envelope)])
    return json_response(
        {"order_id": order_id, "cancellation": "requested", "reason": command.reason},
        status=202,
        headers={"Location": f"/orders/{order_id}"},
    )


def _command(order_id: str, body: bytes, content_type: str) -> CancelOrder:
    fields: object = {}
    if body.strip():
        require_json(content_type)
        try:
            fields = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise contract_error(MalformedJson(str(exc))) from None
    if not isinstance(fields, dict):
        raise ApiError(422, "schema_violation", {"field": "$", "reason": "expected an object"})
    try:
        # The id comes from the path, whatever the body says.
        return decode_command(msgspec.json.encode({**fields, "order_id": order_id}), CancelOrder)
    except ContractError as exc:
        raise contract_error(exc) from None
