"""Builders for tests of code that appends and consumes events."""

from __future__ import annotations

import uuid

from contracts import EventEnvelope, StockReceived, new_envelope


def stock_received(
    sku: str = "SKU-1", quantity: int = 1, *, id: str | None = None
) -> EventEnvelope:
    return new_envelope(
        StockReceived(sku=sku, quantity=quantity, warehouse="wh-1"),
        source="/tests",
        subject=sku,
        id=id or str(uuid.uuid4()),
    )
