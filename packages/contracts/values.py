"""Validated value types shared by events and commands.

Every constraint lives here once, so an event and the command that causes it can never
disagree about what a valid SKU, quantity or amount is.
"""

from typing import Annotated, TypeAlias

import msgspec

# Bounds keep every product of quantity and price, and the sum of up to MAX_ORDER_LINES
# such products, inside int64: msgspec cannot encode larger integers, and Postgres BIGINT
# columns in the projections could not hold them either.
MAX_QUANTITY = 1_000_000
MAX_UNIT_PRICE = 10_000_000_000
MAX_AMOUNT = MAX_UNIT_PRICE * MAX_QUANTITY * 100
MAX_ORDER_LINES = 100
MAX_STOCK = 1_000_000_000_000

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"

Identifier: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""An opaque id (order, customer, charge): non-empty and short enough to index."""

OrderId: TypeAlias = Identifier
CustomerId: TypeAlias = Identifier

Sku: TypeAlias = Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
"""A stock-keeping unit; the pattern keeps it safe inside Redis keys and URL paths."""

Quantity: TypeAlias = Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
"""How many units of a SKU an order line or stock movement is about; never zero."""

StockLevel: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=MAX_STOCK)]
"""Units on hand in a warehouse; zero is a real state, negative is not."""

MinorUnits: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=MAX_UNIT_PRICE)]
"""A unit price in minor units of its currency (cents for EUR); integers, never floats."""

Amount: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
"""A total, line total, capture or refund in minor units of its currency."""

Currency: TypeAlias = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN)]
"""An ISO-4217 alphabetic code such as "EUR"."""

PaymentToken: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
"""The provider's token for the customer's payment method; opaque to orderly."""

IdempotencyKey: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
"""The key a provider uses to turn a retried charge or refund into a no-op."""

Reason: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
"""A human sentence explaining a rejection, decline or cancellation."""

WarehouseId: TypeAlias = Identifier


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    """A SKU and a quantity: what a customer asks for and what inventory moves."""

    sku: Sku
    quantity: Quantity


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """A priced order line as recorded when the order was placed."""

    sku: Sku
    quantity: Quantity
    unit_price: MinorUnits
    line_total: Amount


OrderItems: TypeAlias = Annotated[
    tuple[OrderItem, ...], msgspec.Meta(min_length=1, max_length=MAX_ORDER_LINES)
]
OrderLines: TypeAlias = Annotated[
    tuple[OrderLine, ...], msgspec.Meta(min_length=1, max_length=MAX_ORDER_LINES)
]
