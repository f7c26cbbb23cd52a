"""``GET /inventory/{sku}``: the inventory read model (it may trail by the projection lag)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from order_service.catalog_endpoint import path_sku
from order_service.keys import read_model_engine
from orderly_platform.http import ApiError, json_response
from projections.tables import inventory


async def get_inventory(request: web.Request) -> web.Response:
    sku = path_sku(request)
    async with read_model_engine(request).connect() as connection:
        row = (await connection.execute(sa.select(inventory).where(inventory.c.sku == sku))).first()
    if row is None:
        raise ApiError(404, "not_found", f"no inventory for SKU {sku!r}")
    return json_response(
        {
            "sku": row.sku,
            "on_hand": row.on_hand,
            "reserved": row.reserved,
            "available": row.on_hand - row.reserved,
            "price": row.price,
            "currency": row.currency,
        }
    )
