"""The domain events of the order saga, one msgspec Struct per event type and version.

Each event's tag is its CloudEvents ``type`` and carries the version
(``orderly.<Name>.v<N>``). A breaking change never edits a published event: it adds a new
version and an upcaster (see ``contracts.upcasting``), so every event ever stored stays
readable. New optional fields may be added with a default, because readers ignore fields
they do not know.
"""

from typing import Annotated, Final, TypeAlias, get_args

import msgspec

from contracts.values import (
    MAX_ORDER_LINES,
    Amount,
    Currency,
    CustomerId,
    IdempotencyKey,
    Identifier,
    MinorUnits,
    OrderId,
    OrderItems,
    OrderLines,
    PaymentToken,
    Quantity,
    Reason,
    Sku,
    StockLevel,
    WarehouseId,
)


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: immutable, keyword-only, tagged with its CloudEvents type."""


# --- orders -------------------------------------------------------------------------------


class OrderLineV1(msgspec.Struct, frozen=True, kw_only=True):
    """An order line of the single-currency era, before line totals were recorded."""

    sku: Sku
    quantity: Quantity
    unit_price: MinorUnits


class OrderPlacedV1(DomainEvent, frozen=True, kw_only=True, tag="orderly.OrderPlaced.v1"):
    """Superseded by ``OrderPlaced`` (v2); kept so stored v1 events can be read and written.

    Every amount is implicitly in EUR: the currency was not recorded then.
    """

    order_id: OrderId
    customer_id: CustomerId
    items: Annotated[
        tuple[OrderLineV1, ...], msgspec.Meta(min_length=1, max_length=MAX_ORDER_LINES)
    ]
    total: Amount
    payment_token: PaymentToken


class OrderPlaced(DomainEvent, frozen=True, kw_only=True, tag="orderly.OrderPlaced.v2"):
    """An order was accepted and priced; the saga starts from here."""

    order_id: OrderId
    customer_id: CustomerId
    items: OrderLines
    total: Amount
    currency: Currency
    payment_token: PaymentToken


class OrderCancellationRequested(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.OrderCancellationRequested.v1"
):
    """The customer asked to cancel; the saga decides whether it still can."""

    order_id: OrderId
    reason: Reason


class OrderConfirmed(DomainEvent, frozen=True, kw_only=True, tag="orderly.OrderConfirmed.v1"):
    """Terminal: stock committed and payment captured."""

    order_id: OrderId


class OrderRejected(DomainEvent, frozen=True, kw_only=True, tag="orderly.OrderRejected.v1"):
    """Terminal: the saga failed a step and compensated the ones before it."""

    order_id: OrderId
    reason: Reason


class OrderCancelled(DomainEvent, frozen=True, kw_only=True, tag="orderly.OrderCancelled.v1"):
    """Terminal: cancelled on request before confirmation, after compensation."""

    order_id: OrderId
    reason: Reason


# --- inventory ----------------------------------------------------------------------------


class InventoryReservationRequested(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryReservationRequested.v1"
):
    """The saga asks inventory to hold stock for an order."""

    order_id: OrderId
    items: OrderItems


class InventoryReserved(DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryReserved.v1"):
    """Inventory held every requested unit for the order."""

    order_id: OrderId
    items: OrderItems


class InventoryReservationRejected(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryReservationRejected.v1"
):
    """Inventory held nothing for the order; ``short_skus`` are the ones it lacked."""

    order_id: OrderId
    reason: Reason
    # Empty when the rejection is not about stock (an unknown SKU, say): the reason says why.
    short_skus: Annotated[tuple[Sku, ...], msgspec.Meta(max_length=MAX_ORDER_LINES)] = ()


class InventoryCommitRequested(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryCommitRequested.v1"
):
    """The saga turns the order's reservation into a sale."""

    order_id: OrderId
    items: OrderItems


class InventoryCommitted(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryCommitted.v1"
):
    """The reserved units left stock for good."""

    order_id: OrderId
    items: OrderItems


class InventoryReleaseRequested(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryReleaseRequested.v1"
):
    """Compensation: the saga gives the order's reservation back."""

    order_id: OrderId
    items: OrderItems


class InventoryReleased(DomainEvent, frozen=True, kw_only=True, tag="orderly.InventoryReleased.v1"):
    """The reserved units are available again."""

    order_id: OrderId
    items: OrderItems


# --- payments -----------------------------------------------------------------------------


class PaymentCaptured(DomainEvent, frozen=True, kw_only=True, tag="orderly.PaymentCaptured.v1"):
    """The provider charged the customer; ``charge_id`` is the provider's reference."""

    order_id: OrderId
    amount: Amount
    currency: Currency
    idempotency_key: IdempotencyKey
    charge_id: Identifier


class PaymentDeclined(DomainEvent, frozen=True, kw_only=True, tag="orderly.PaymentDeclined.v1"):
    """The provider refused the charge; nothing was taken."""

    order_id: OrderId
    amount: Amount
    currency: Currency
    idempotency_key: IdempotencyKey
    reason: Reason


class PaymentRefunded(DomainEvent, frozen=True, kw_only=True, tag="orderly.PaymentRefunded.v1"):
    """Compensation: a captured amount went back to the customer."""

    order_id: OrderId
    amount: Amount
    currency: Currency
    idempotency_key: IdempotencyKey
    refund_id: Identifier


# --- catalog and stock --------------------------------------------------------------------


class CatalogItemUpdated(
    DomainEvent, frozen=True, kw_only=True, tag="orderly.CatalogItemUpdated.v1"
):
    """A SKU's price and stock level were set (``PUT /catalog/{sku}``)."""

    sku: Sku
    price: MinorUnits
    currency: Currency
    on_hand: StockLevel


class StockReceived(DomainEvent, frozen=True, kw_only=True, tag="orderly.StockReceived.v1"):
    """Integration event from a warehouse: units arrived and raise ``on_hand``."""

    sku: Sku
    quantity: Quantity
    warehouse: WarehouseId


# The inventory service's moves of one SKU's stock for one order, appended to the SKU's
# catalog stream in the same atomic step as the move itself (see ``inventory.stock``). They
# sit in one stream with the catalog updates and deliveries, so folding that stream in order
# gives the SKU's stock exactly as Redis holds it; the order-level Inventory* events do not,
# because an order stream has no defined order relative to a catalog stream.


class StockReserved(DomainEvent, frozen=True, kw_only=True, tag="orderly.StockReserved.v1"):
    """Units of the SKU were held for an order: ``reserved`` rose by ``quantity``."""

    sku: Sku
    quantity: Quantity
    order_id: OrderId


class StockCommitted(DomainEvent, frozen=True, kw_only=True, tag="orderly.StockCommitted.v1"):
    """An order's held units left stock: ``reserved`` and ``on_hand`` fell by ``quantity``.

    ``on_hand`` never falls below zero: a catalog count set below what was reserved leaves
    fewer units than the order holds, and only those can leave.
    """

    sku: Sku
    quantity: Quantity
    order_id: OrderId


class StockReleased(DomainEvent, frozen=True, kw_only=True, tag="orderly.StockReleased.v1"):
    """An order's held units are available again: ``reserved`` fell by ``quantity``."""

    sku: Sku
    quantity: Quantity
    order_id: OrderId


Event: TypeAlias = (
    OrderPlaced
    | OrderCancellationRequested
    | OrderConfirmed
    | OrderRejected
    | OrderCancelled
    | InventoryReservationRequested
    | InventoryReserved
    | InventoryReservationRejected
    | InventoryCommitRequested
    | InventoryCommitted
    | InventoryReleaseRequested
    | InventoryReleased
    | PaymentCaptured
    | PaymentDeclined
    | PaymentRefunded
    | CatalogItemUpdated
    | StockReceived
    | StockReserved
    | StockCommitted
    | StockReleased
)
"""The current version of every event: what decoding returns and consumers match on."""

LegacyEvent: TypeAlias = OrderPlacedV1
"""Superseded versions: still writable (tests, replays of old data), upcast when read."""

AnyEvent: TypeAlias = Event | LegacyEvent


def event_type_of(event: AnyEvent) -> str:
    """The CloudEvents ``type`` of an event: its tag, version included."""
    return _tag_of(type(event))


def _tag_of(cls: type[DomainEvent]) -> str:
    tag = cls.__struct_config__.tag
    # Only a class from outside this module can fail here: a programming error, not data.
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} is not a tagged orderly event")
    return tag


EVENT_TYPES: Final[dict[str, type[Event]]] = {_tag_of(cls): cls for cls in get_args(Event)}
"""Current event classes by CloudEvents type."""

LEGACY_EVENT_TYPES: Final[dict[str, type[LegacyEvent]]] = {_tag_of(OrderPlacedV1): OrderPlacedV1}
"""Superseded event classes by CloudEvents type; each has an upcaster."""
