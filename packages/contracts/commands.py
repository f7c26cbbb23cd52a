"""The commands orderly accepts: HTTP request bodies and requests between services.

Unknown fields are ignored rather than refused, so an older service keeps accepting
requests from a newer client that sends fields it does not know yet.
"""

from typing import Final

import msgspec

from contracts.values import (
    Amount,
    Currency,
    CustomerId,
    IdempotencyKey,
    Identifier,
    MinorUnits,
    OrderId,
    OrderItems,
    PaymentToken,
    Reason,
    StockLevel,
)


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every command: immutable and keyword-only."""


class PlaceOrder(Command, frozen=True, kw_only=True):
    """The body of ``POST /orders``; prices come from the catalog, never from the client."""

    customer_id: CustomerId
    items: OrderItems
    payment_token: PaymentToken


class CancelOrder(Command, frozen=True, kw_only=True):
    """The body of ``POST /orders/{id}/cancel`` (the id is filled in from the path)."""

    order_id: OrderId
    reason: Reason = "customer request"


class UpdateCatalogItem(Command, frozen=True, kw_only=True):
    """The body of ``PUT /catalog/{sku}``; the SKU comes from the path."""

    price: MinorUnits
    currency: Currency
    on_hand: StockLevel


class CapturePayment(Command, frozen=True, kw_only=True):
    """Charge an order's total; the idempotency key makes a retried capture a no-op."""

    order_id: OrderId
    amount: Amount
    currency: Currency
    payment_token: PaymentToken
    idempotency_key: IdempotencyKey
    # The order's correlation, for the payment event and the log lines (sagas started
    # before it was sent leave it out).
    correlation_id: Identifier | None = None


class RefundPayment(Command, frozen=True, kw_only=True):
    """Give back a captured amount; the idempotency key makes a retried refund a no-op."""

    order_id: OrderId
    amount: Amount
    currency: Currency
    idempotency_key: IdempotencyKey
    correlation_id: Identifier | None = None


COMMAND_TYPES: Final[tuple[type[Command], ...]] = (
    PlaceOrder,
    CancelOrder,
    UpdateCatalogItem,
    CapturePayment,
    RefundPayment,
)
