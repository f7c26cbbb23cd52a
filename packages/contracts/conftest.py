"""One realistic sample per current event type, shared by the contracts tests.

The ``sample_event`` fixture is parametrized over ``EVENT_TYPES``, so a test that takes it
runs once per event type, and a new event type without a sample fails loudly.
"""

from collections.abc import Callable

import pytest

from contracts.events import (
    EVENT_TYPES,
    CatalogItemUpdated,
    Event,
    InventoryCommitRequested,
    InventoryCommitted,
    InventoryReleased,
    InventoryReleaseRequested,
    InventoryReservationRejected,
    InventoryReservationRequested,
    InventoryReserved,
    OrderCancellationRequested,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRejected,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    StockCommitted,
    StockReceived,
    StockReleased,
    StockReserved,
)
from contracts.values import OrderItem, OrderLine

ORDER_ID = "ord-7f3c"
ITEMS = (OrderItem(sku="SKU-1", quantity=2), OrderItem(sku="mug.blue_L", quantity=1))


def _order_placed() -> OrderPlaced:
    return OrderPlaced(
        order_id=ORDER_ID,
        customer_id="cust-42",
        items=(
            OrderLine(sku="SKU-1", quantity=2, unit_price=1250, line_total=2500),
            OrderLine(sku="mug.blue_L", quantity=1, unit_price=899, line_total=899),
        ),
        total=3399,
        currency="EUR",
        payment_token="tok_visa",
    )


SAMPLE_FACTORIES: dict[str, Callable[[], Event]] = {
    "orderly.OrderPlaced.v2": _order_placed,
    "orderly.OrderCancellationRequested.v1": lambda: OrderCancellationRequested(
        order_id=ORDER_ID, reason="customer request"
    ),
    "orderly.OrderConfirmed.v1": lambda: OrderConfirmed(order_id=ORDER_ID),
    "orderly.OrderRejected.v1": lambda: OrderRejected(order_id=ORDER_ID, reason="out of stock"),
    "orderly.OrderCancelled.v1": lambda: OrderCancelled(order_id=ORDER_ID, reason="changed mind"),
    "orderly.InventoryReservationRequested.v1": lambda: InventoryReservationRequested(
        order_id=ORDER_ID, items=ITEMS
    ),
    "orderly.InventoryReserved.v1": lambda: InventoryReserved(order_id=ORDER_ID, items=ITEMS),
    "orderly.InventoryReservationRejected.v1": lambda: InventoryReservationRejected(
        order_id=ORDER_ID, reason="insufficient stock", short_skus=("mug.blue_L",)
    ),
    "orderly.InventoryCommitRequested.v1": lambda: InventoryCommitRequested(
        order_id=ORDER_ID, items=ITEMS
    ),
    "orderly.InventoryCommitted.v1": lambda: InventoryCommitted(order_id=ORDER_ID, items=ITEMS),
    "orderly.InventoryReleaseRequested.v1": lambda: InventoryReleaseRequested(
        order_id=ORDER_ID, items=ITEMS
    ),
    "orderly.InventoryReleased.v1": lambda: InventoryReleased(order_id=ORDER_ID, items=ITEMS),
    "orderly.PaymentCaptured.v1": lambda: PaymentCaptured(
        order_id=ORDER_ID,
        amount=3399,
        currency="EUR",
        idempotency_key=f"capture:{ORDER_ID}",
        charge_id="ch_001",
    ),
    "orderly.PaymentDeclined.v1": lambda: PaymentDeclined(
        order_id=ORDER_ID,
        amount=3399,
        currency="EUR",
        idempotency_key=f"capture:{ORDER_ID}",
        reason="card declined",
    ),
    "orderly.PaymentRefunded.v1": lambda: PaymentRefunded(
        order_id=ORDER_ID,
        amount=3399,
        currency="EUR",
        idempotency_key=f"refund:{ORDER_ID}",
        refund_id="re_001",
    ),
    "orderly.CatalogItemUpdated.v1": lambda: CatalogItemUpdated(
        sku="SKU-1", price=1250, currency="EUR", on_hand=40
    ),
    "orderly.StockReceived.v1": lambda: StockReceived(sku="SKU-1", quantity=12, warehouse="wh-1"),
    "orderly.StockReserved.v1": lambda: StockReserved(sku="SKU-1", quantity=2, order_id=ORDER_ID),
    "orderly.StockCommitted.v1": lambda: StockCommitted(sku="SKU-1", quantity=2, order_id=ORDER_ID),
    "orderly.StockReleased.v1": lambda: StockReleased(sku="SKU-1", quantity=2, order_id=ORDER_ID),
}


@pytest.fixture(params=sorted(EVENT_TYPES))
def sample_event(request: pytest.FixtureRequest) -> Event:
    """A sample of each current event type in turn."""
    event_type: str = request.param
    return SAMPLE_FACTORIES[event_type]()


@pytest.fixture
def order_placed() -> OrderPlaced:
    return _order_placed()


@pytest.fixture
def sample_factories() -> dict[str, Callable[[], Event]]:
    return SAMPLE_FACTORIES
