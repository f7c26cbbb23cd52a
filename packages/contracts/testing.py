"""Realistic event histories for tests and benchmarks: orders that run the whole saga.

The mix follows what a shop sees: most orders confirm, some run out of stock, some are
declined and compensated, a few are cancelled. Every history is what the saga would emit.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from contracts.envelope import EventEnvelope, new_envelope
from contracts.events import (
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
    StockReleased,
    StockReserved,
)
from contracts.values import OrderItem, OrderLine

CONFIRMED, OUT_OF_STOCK, DECLINED, CANCELLED = "confirmed", "out_of_stock", "declined", "cancelled"
# Share of each outcome in a realistic day.
OUTCOMES = (CONFIRMED, OUT_OF_STOCK, DECLINED, CANCELLED)
WEIGHTS = (0.80, 0.08, 0.07, 0.05)
SOURCE = "/orderly/testing"
IN_FLIGHT = 300


def order_history(
    order_id: str,
    outcome: str,
    *,
    customer_id: str = "c-1",
    items: tuple[OrderItem, ...] = (OrderItem(sku="SKU-1", quantity=1),),
    unit_price: int = 1000,
    stock_moves: bool = False,
) -> list[Event]:
    """The events of one order's saga that ends with ``outcome``, in the order emitted.

    With ``stock_moves``, also the inventory service's per-SKU events (``StockReserved``...,
    whose subject is the SKU: see ``subject_of``), each just before the answer it leads to.
    """

    def moved(kind: type[StockReserved | StockCommitted | StockReleased]) -> list[Event]:
        if not stock_moves:
            return []
        return [kind(sku=i.sku, quantity=i.quantity, order_id=order_id) for i in items]

    lines = tuple(
        OrderLine(
            sku=i.sku,
            quantity=i.quantity,
            unit_price=unit_price,
            line_total=unit_price * i.quantity,
        )
        for i in items
    )
    total = sum(line.line_total for line in lines)
    key = f"{order_id}:payment"
    placed = OrderPlaced(
        order_id=order_id,
        customer_id=customer_id,
        items=lines,
        total=total,
        currency="EUR",
        payment_token="tok_ok",
    )
    reserve = InventoryReservationRequested(order_id=order_id, items=items)
    reserved: list[Event] = [
        *moved(StockReserved),
        InventoryReserved(order_id=order_id, items=items),
    ]
    if outcome == OUT_OF_STOCK:
        return [
            placed,
            reserve,
            InventoryReservationRejected(
                order_id=order_id, reason="out of stock", short_skus=(items[0].sku,)
            ),
            OrderRejected(order_id=order_id, reason="out of stock"),
        ]
    release: list[Event] = [
        InventoryReleaseRequested(order_id=order_id, items=items),
        *moved(StockReleased),
        InventoryReleased(order_id=order_id, items=items),
    ]
    if outcome == DECLINED:
        declined = PaymentDeclined(
            order_id=order_id, amount=total, currency="EUR", idempotency_key=key, reason="declined"
        )
        return [
            placed,
            reserve,
            *reserved,
            declined,
            *release,
            OrderRejected(order_id=order_id, reason="payment declined"),
        ]
    captured = PaymentCaptured(
        order_id=order_id,
        amount=total,
        currency="EUR",
        idempotency_key=key,
        charge_id=f"ch-{order_id}",
    )
    if outcome == CANCELLED:
        refunded = PaymentRefunded(
            order_id=order_id,
            amount=total,
            currency="EUR",
            idempotency_key=f"{key}:refund",
            refund_id=f"re-{order_id}",
        )
        return [
            placed,
            reserve,
            *reserved,
            captured,
            OrderCancellationRequested(order_id=order_id, reason="customer request"),
            refunded,
            *release,
            OrderCancelled(order_id=order_id, reason="customer request"),
        ]
    return [
        placed,
        reserve,
        *reserved,
        captured,
        InventoryCommitRequested(order_id=order_id, items=items),
        *moved(StockCommitted),
        InventoryCommitted(order_id=order_id, items=items),
        OrderConfirmed(order_id=order_id),
    ]


def order_mix(
    orders: int, *, skus: int = 100, customers: int = 1_000, seed: int = 7, start: datetime
) -> Iterator[EventEnvelope]:
    """The catalog of ``skus`` items, then ``orders`` orders' histories (with the inventory
    service's per-SKU stock moves), interleaved the way concurrent sagas interleave (a few
    hundred orders in flight), a millisecond apart.

    The same arguments give the same events, ids included."""
    rng = random.Random(seed)
    clock = start
    for n in range(skus):
        sku = f"SKU-{n:04d}"
        yield new_envelope(
            CatalogItemUpdated(sku=sku, price=500 + n, currency="EUR", on_hand=1_000_000),
            source=SOURCE,
            subject=sku,
            time=clock,
            id=_uuid(rng),
        )
    in_flight: list[list[tuple[str, Event]]] = []
    placed = 0
    while placed < orders or in_flight:
        # A steady state: a new order whenever one has settled, never more than 300 open.
        if placed < orders and len(in_flight) < IN_FLIGHT:
            order_id = _uuid(rng)
            items = tuple(
                OrderItem(sku=f"SKU-{n:04d}", quantity=rng.randint(1, 3))
                for n in rng.sample(range(skus), rng.randint(1, min(3, skus)))
            )
            history = order_history(
                order_id,
                rng.choices(OUTCOMES, WEIGHTS)[0],
                customer_id=f"c-{rng.randrange(customers)}",
                items=items,
                stock_moves=True,
            )
            in_flight.append([(order_id, e) for e in reversed(history)])
            placed += 1
        slot = rng.randrange(len(in_flight))
        order_id, event = in_flight[slot].pop()
        if not in_flight[slot]:
            in_flight[slot] = in_flight[-1]
            in_flight.pop()
        clock += timedelta(milliseconds=1)
        yield new_envelope(
            event, source=SOURCE, subject=subject_of(event, order_id), time=clock, id=_uuid(rng)
        )


def subject_of(event: Event, order_id: str) -> str:
    """An event's aggregate in an order's history: the SKU for a stock move, else the order."""
    return (
        event.sku if isinstance(event, StockReserved | StockCommitted | StockReleased) else order_id
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
