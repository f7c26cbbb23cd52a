"""Pricing an order from the live catalog: prices come from the catalog, never the client."""

from __future__ import annotations

from collections.abc import Mapping

from contracts import OrderLine, OrderPlaced, PlaceOrder
from inventory.catalog_copy import CatalogItem


class PricingRefused(Exception):
    """The order cannot be priced; ``field`` is the JSON path of the item to blame."""

    def __init__(self, code: str, field: str, reason: str) -> None:
        super().__init__(f"{code} at {field}: {reason}")
        self.code = code
        self.field = field
        self.reason = reason


def price_order(
    command: PlaceOrder, catalog: Mapping[str, CatalogItem], *, order_id: str
) -> OrderPlaced:
    """The OrderPlaced of ``command``: every line at its SKU's current price, one currency."""
    lines = []
    currency: str | None = None
    for index, item in enumerate(command.items):
        field = f"$.items[{index}].sku"
        entry = catalog.get(item.sku)
        if entry is None:
            raise PricingRefused("unknown_sku", field, f"SKU {item.sku!r} is not in the catalog")
        if currency is None:
            currency = entry.currency
        elif entry.currency != currency:
            # A total over two currencies means nothing, and a payment has one currency.
            raise PricingRefused(
                "mixed_currencies",
                field,
                f"SKU {item.sku!r} is priced in {entry.currency}, the items before it in "
                f"{currency}: an order is paid in one currency",
            )
        lines.append(
            OrderLine(
                sku=item.sku,
                quantity=item.quantity,
                unit_price=entry.price,
                line_total=entry.price * item.quantity,
            )
        )
    assert currency is not None, "PlaceOrder has at least one item"
    return OrderPlaced(
        order_id=order_id,
        customer_id=command.customer_id,
        items=tuple(lines),
        total=sum(line.line_total for line in lines),
        currency=currency,
        payment_token=command.payment_token,
    )
