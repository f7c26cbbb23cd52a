"""The order saga's inputs, state and activity requests (everything it sends through Temporal)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import msgspec

from contracts import Event
from contracts.values import (
    Amount,
    Currency,
    CustomerId,
    Identifier,
    OrderId,
    OrderLines,
    PaymentToken,
)

ORDERS_TASK_QUEUE: Final = "orders"
EMIT_EVENT: Final = "emit_event"
# The CloudEvents source of every event the saga emits.
SAGA_SOURCE: Final = "/orderly/saga"


class SagaDeadlines(msgspec.Struct, frozen=True, kw_only=True):
    """How long each wait may last, in seconds. Part of the saga's input, so of its history:
    changing the defaults does not change sagas already running."""

    # For the inventory service to answer a reservation, commit or release.
    inventory: float = 60.0
    # For the payment provider: retried with backoff all along, so an outage of hours is
    # ridden out; past it the order is rejected (and anything captured refunded).
    payment: float = 6 * 3600.0
    # One call to the provider (an attempt; a timed-out attempt is retried).
    payment_attempt: float = 30.0

    @property
    def inventory_wait(self) -> timedelta:
        return timedelta(seconds=self.inventory)


class SagaInput(msgspec.Struct, frozen=True, kw_only=True):
    order_id: OrderId
    customer_id: CustomerId
    items: OrderLines
    total: Amount
    currency: Currency
    payment_token: PaymentToken
    # The OrderPlaced event's id and correlation: what the saga's events are caused by.
    placed_event_id: Identifier
    correlation_id: Identifier
    deadlines: SagaDeadlines = SagaDeadlines()


class EmitEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Append ``event`` to its order's stream under ``event_id`` (fixed by the workflow, so a
    retried activity appends it once)."""

    event_id: Identifier
    order_id: OrderId
    event: Event
    correlation_id: Identifier
    causation_id: Identifier


class SagaState(msgspec.Struct, frozen=True, kw_only=True):
    """What the ``state`` query answers: where the saga is and what it waits for."""

    order_id: OrderId
    step: str
    waiting_for: str | None = None
    status: str = "PENDING"
    reason: str | None = None
    reserved: bool = False
    captured: Amount = 0
    refunded: Amount = 0
    cancel_requested: str | None = None
