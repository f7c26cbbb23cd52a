"""``POST /events``: integration events from outside systems, appended once each.

Every event of a request is validated before anything is appended, so a bad request
changes nothing. A retried request (same ``source`` + ``id``) gets the first answer.
A StockReceived raises its SKU's live catalog copy (``inventory.catalog_copy``) in the same
atomic step as its append, and a retried one raises it only once.

Errors: 401 bad or missing token; 413 body too large; 415 not a CloudEvents content type;
400 malformed JSON, bad ``ce-*`` header, specversion other than 1.0; 422 schema violation
(including a subject that is not the event's SKU), unknown type, or a type outside systems
may not publish; 503 when Redis does not answer (retrying is safe).
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from contracts import ContractError, EventEnvelope, StockReceived
from eventbus.appender import PendingAppend
from inventory.catalog_copy import catalog_side_writes
from order_service.cloudevents_http import BATCH, BadHeader, UnsupportedMediaType, parse_events
from order_service.errors import append_or_503, contract_error
from order_service.keys import APPENDER, SETTINGS, TOPOLOGY
from orderly_platform.http import (
    ApiError,
    correlation_id_of,
    json_response,
    require_bearer_token,
)

# Outside systems may publish these; the saga's own events only orderly writes.
INTEGRATION_EVENT_TYPES = frozenset({"orderly.StockReceived.v1"})


async def post_events(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    assert settings.api_token is not None
    require_bearer_token(request, settings.api_token)
    body = await request.read()  # 413 past client_max_size, raised by aiohttp
    envelopes = _parse(request, body)
    correlation_id = correlation_id_of(request)
    # An outside system's own correlation is kept; an event without one joins the request's.
    envelopes = [
        e if e.correlationid else msgspec.structs.replace(e, correlationid=correlation_id)
        for e in envelopes
    ]
    topology = request.app[TOPOLOGY]
    appended = await append_or_503(
        request.app[APPENDER],
        [PendingAppend(e, side_writes=catalog_side_writes(e, topology)) for e in envelopes],
    )
    return json_response(
        {
            "events": [
                {"id": e.id, "source": e.source, "stream": a.stream, "entry_id": a.entry_id}
                for e, a in zip(envelopes, appended, strict=True)
            ]
        },
        status=202,
    )


def _parse(request: web.Request, body: bytes) -> list[EventEnvelope]:
    try:
        envelopes = parse_events(request.headers, request.content_type, body)
    except UnsupportedMediaType as exc:
        raise ApiError(415, "unsupported_media_type", str(exc)) from None
    except BadHeader as exc:
        raise ApiError(400, "bad_header", str(exc)) from None
    except ContractError as exc:
        raise contract_error(exc) from None
    if not envelopes:
        raise ApiError(422, "empty_batch", "a batch must hold at least one event")
    accepted = []
    for index, envelope in enumerate(envelopes):
        at = f"$[{index}]" if request.content_type == BATCH else "$"
        if envelope.type not in INTEGRATION_EVENT_TYPES:
            raise ApiError(
                422,
                "type_not_accepted",
                {
                    "field": f"{at}.type",
                    "reason": f"{envelope.type} is not accepted from outside systems; "
                    f"accepted: {sorted(INTEGRATION_EVENT_TYPES)}",
                },
            )
        aggregate_id = _aggregate_id(envelope)
        if envelope.subject != aggregate_id:
            # The subject picks the stream partition: a wrong one would split a SKU's events
            # over partitions and lose their order.
            raise ApiError(
                422,
                "schema_violation",
                {"field": f"{at}.subject", "reason": f"must be the SKU {aggregate_id!r}"},
            )
        # Aggregate versions are orderly's to assign, never an outside system's.
        accepted.append(msgspec.structs.replace(envelope, aggregateversion=None))
    return accepted


def _aggregate_id(envelope: EventEnvelope) -> str:
    data = envelope.data
    assert isinstance(data, StockReceived), "only integration types reach here"
    return data.sku
