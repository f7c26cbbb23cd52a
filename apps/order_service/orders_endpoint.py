"""``GET /orders/{id}`` and ``GET /orders``: the orders read model (it trails the streams).

The list is newest first and paged with an opaque cursor (the last row's placed_at and
order id), so pages stay stable while new orders arrive.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from aiohttp import web

from order_service.keys import read_model_engine
from orderly_platform.http import ApiError, json_response
from projections.orders import CANCELLED, CONFIRMED, PENDING, REJECTED
from projections.tables import orders

STATUSES = (PENDING, CONFIRMED, REJECTED, CANCELLED)
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class _Cursor(msgspec.Struct, array_like=True):
    placed_at: datetime
    order_id: str


def _view(row: Any) -> dict[str, object]:
    return {
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "status": row.status,
        "reason": row.reason,
        "items": row.items,
        "total": row.total,
        "currency": row.currency,
        "timeline": row.timeline,
        "placed_at": row.placed_at.isoformat(),
        # Saga health: while PENDING, the step the saga waits for and since when; else null.
        "waiting_for": row.waiting_for,
        "waiting_since": row.waiting_since.isoformat() if row.waiting_since else None,
    }


async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    async with read_model_engine(request).connect() as connection:
        row = (
            await connection.execute(sa.select(orders).where(orders.c.order_id == order_id))
        ).first()
    if row is None:
        raise ApiError(404, "not_found", f"no order {order_id!r}")
    return json_response(_view(row))


async def list_orders(request: web.Request) -> web.Response:
    query = request.query
    limit = _limit(query.get("limit"))
    statement = sa.select(orders).order_by(orders.c.placed_at.desc(), orders.c.order_id.desc())
    if customer_id := query.get("customer_id"):
        statement = statement.where(orders.c.customer_id == customer_id)
    if status := query.get("status"):
        if status not in STATUSES:
            raise ApiError(
                422, "schema_violation", {"field": "status", "reason": f"one of {list(STATUSES)}"}
            )
        statement = statement.where(orders.c.status == status)
    if cursor := query.get("cursor"):
        after = _decode_cursor(cursor)
        statement = statement.where(
            sa.tuple_(orders.c.placed_at, orders.c.order_id) < (after.placed_at, after.order_id)
        )
    async with read_model_engine(request).connect() as connection:
        rows = (await connection.execute(statement.limit(limit + 1))).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode_cursor(page[-1]) if more else None
    return json_response({"orders": [_view(r) for r in page], "next_cursor": next_cursor})


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(
            422,
            "schema_violation",
            {"field": "limit", "reason": f"an integer from 1 to {MAX_LIMIT}"},
        )
    return limit


def _encode_cursor(row: Any) -> str:
    raw = msgspec.json.encode(_Cursor(row.placed_at, row.order_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ApiError(400, "bad_cursor", "cursor is not one this service returned") from None
