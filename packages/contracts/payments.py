"""What the order saga and the payment service say to each other through Temporal.

The saga schedules these activities by name on the payments task queue; the payment
service implements them. Both sides import the names and types from here, so neither
imports the other.
"""

from typing import Final, Literal

import msgspec

from contracts.values import Amount, Identifier, Reason

PAYMENTS_TASK_QUEUE: Final = "payments"
CAPTURE_PAYMENT: Final = "capture_payment"
REFUND_PAYMENT: Final = "refund_payment"


class PaymentOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A capture's answer. A decline is an answer, not an error: the saga compensates."""

    status: Literal["captured", "declined"]
    amount: Amount
    charge_id: Identifier | None = None
    reason: Reason | None = None


class RefundOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A refund's answer; ``refunded`` is 0 when nothing had been captured."""

    refunded: Amount
    refund_id: Identifier | None = None
