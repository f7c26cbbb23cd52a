"""``PUT /catalog/{sku}``: set a SKU's price and stock, recorded as a CatalogItemUpdated event.

Read-your-writes: the SKU's live catalog copy (``inventory.catalog_copy``) is set in the same
atomic step as the append, so an order placed once this answered is priced from the change,
while ``GET /inventory/{sku}`` (the Postgres read model) may still trail it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from contracts import (
    CatalogItemUpdated,
    ContractError,
    SchemaViolation,
    UpdateCatalogItem,
    decode_command,
    new_envelope,
)
from contracts.values import Sku
from eventbus.appender import PendingAppend
from inventory.catalog_copy import catalog_side_writes
from order_service.errors import append_or_503, contract_error, require_json
from order_service.keys import APPENDER, SETTINGS, TOPOLOGY
from orderly_platform.http import correlation_id_of, json_response, require_bearer_token

SOURCE = "/order-service"


def path_sku(request: web.Request) -> str:
    sku = request.match_info["sku"]
    try:
        return msgspec.convert(sku, Sku)
    except msgspec.ValidationError as exc:
        raise contract_error(SchemaViolation(str(exc).split(" - at ")[0], field="sku")) from None


async def put_catalog_item(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    assert settings.api_token is not None
    require_bearer_token(request, settings.api_token)
    sku = path_sku(request)
    require_json(request.content_type)
    try:
        command = decode_command(await request.read(), UpdateCatalogItem)
    except ContractError as exc:
        raise contract_error(exc) from None
    event = CatalogItemUpdated(
        sku=sku, price=command.price, currency=command.currency, on_hand=command.on_hand
    )
    envelope = new_envelope(
        event, source=SOURCE, subject=sku, correlation_id=correlation_id_of(request)
    )
    side_writes = catalog_side_writes(envelope, request.app[TOPOLOGY])
    await append_or_503(request.app[APPENDER], [PendingAppend(envelope, side_writes=side_writes)])
    return json_response(
        {"sku": sku, "price": event.price, "currency": event.currency, "on_hand": event.on_hand},
        status=202,
    )
