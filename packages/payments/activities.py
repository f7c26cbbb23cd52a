"""The payment service's Temporal activities: capture and refund, exactly once each per key.

Both follow the ledger's protocol (ledger.py): record the intent under the idempotency key,
ask the provider under the same key, record the answer, then append the payment event. A
retry at any point repeats only what did not finish: the provider honours the key, the
ledger returns answers it already has, and the event's id is derived from the key, so the
stream deduplicates a second append.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts import PaymentCaptured, PaymentDeclined, PaymentRefunded, new_envelope
from contracts.commands import CapturePayment, RefundPayment
from contracts.payments import CAPTURE_PAYMENT, REFUND_PAYMENT, PaymentOutcome, RefundOutcome
from eventbus.appender import EventAppender
from payments import ledger
from payments.provider import PaymentDeclined as Declined
from payments.provider import PaymentProvider, ProviderError

T = TypeVar("T")

PAYMENTS_SOURCE = "/orderly/payments"
# Event ids derived from the idempotency key: one event per capture or refund, ever.
_EVENT_IDS = uuid.UUID("6f1d2c1e-9a53-4c55-9a4e-5d8f0b7e2a10")


def _event_id(key: str, what: str) -> str:
    return str(uuid.uuid5(_EVENT_IDS, f"{key}/{what}"))


class PaymentActivities:
    def __init__(
        self, provider: PaymentProvider, engine: AsyncEngine, appender: EventAppender
    ) -> None:
        self.provider = provider
        self.engine = engine
        self.appender = appender

    @activity.defn(name=CAPTURE_PAYMENT)
    async def capture_payment(self, request: CapturePayment) -> PaymentOutcome:
        key = request.idempotency_key
        async with self.engine.begin() as connection:
            row = await _begin(
                connection,
                request.order_id,
                "capture",
                key,
                request,
                payment_token=request.payment_token,
            )
        if row.status == "pending":
            outcome = await self._ask_provider_to_capture(request)
        else:  # answered before: say it again, without asking the provider
            outcome = PaymentOutcome(
                status=row.status, amount=row.amount, charge_id=row.provider_ref, reason=row.reason
            )
        await self._append_capture_event(request, outcome)
        return outcome

    async def _ask_provider_to_capture(self, request: CapturePayment) -> PaymentOutcome:
        key = request.idempotency_key
        try:
            capture = await _final_errors(
                self.provider.capture(
                    order_id=request.order_id,
                    amount=request.amount,
                    currency=request.currency,
                    payment_token=request.payment_token,
                    idempotency_key=key,
                )
            )
        except Declined as declined:
            outcome = PaymentOutcome(
                status="declined", amount=request.amount, reason=str(declined) or "declined"
            )
            async with self.engine.begin() as connection:
                await ledger.complete_entry(connection, key, "declined", reason=outcome.reason)
            return outcome
        # ProviderUnavailable and the like propagate: Temporal retries the activity.
        async with self.engine.begin() as connection:
            await ledger.complete_entry(connection, key, "captured", provider_ref=capture.charge_id)
        return PaymentOutcome(status="captured", amount=request.amount, charge_id=capture.charge_id)

    async def _append_capture_event(self, request: CapturePayment, outcome: PaymentOutcome) -> None:
        key = request.idempotency_key
        if outcome.status == "captured":
            assert outcome.charge_id is not None
            event: PaymentCaptured | PaymentDeclined = PaymentCaptured(
                order_id=request.order_id,
                amount=request.amount,
                currency=request.currency,
                idempotency_key=key,
                charge_id=outcome.charge_id,
            )
        else:
            event = PaymentDeclined(
                order_id=request.order_id,
                amount=request.amount,
                currency=request.currency,
                idempotency_key=key,
                reason=outcome.reason or "declined",
            )
        await self.appender.append(
            new_envelope(
                event,
                source=PAYMENTS_SOURCE,
                subject=request.order_id,
                id=_event_id(key, outcome.status),
                correlation_id=request.correlation_id,
            )
        )

    @activity.defn(name=REFUND_PAYMENT)
    async def refund_payment(self, request: RefundPayment) -> RefundOutcome:
        """Give back what the order's capture took; nothing when nothing was captured.

        The saga also asks after a capture whose answer never came (the provider was down
        past the deadline): then the provider's own record says whether it captured.
        """
        charge_id = await self._captured_charge(request.order_id)
        if charge_id is None:
            return RefundOutcome(refunded=0)
        key = request.idempotency_key
        async with self.engine.begin() as connection:
            row = await _begin(connection, request.order_id, "refund", key, request)
        refund_id = row.provider_ref
        if row.status == "pending":
            refund = await _final_errors(
                self.provider.refund(
                    order_id=request.order_id,
                    charge_id=charge_id,
                    amount=request.amount,
                    currency=request.currency,
                    idempotency_key=key,
                )
            )
            refund_id = refund.refund_id
            async with self.engine.begin() as connection:
                await ledger.complete_entry(connection, key, "refunded", provider_ref=refund_id)
        await self.appender.append(
            new_envelope(
                PaymentRefunded(
                    order_id=request.order_id,
                    amount=request.amount,
                    currency=request.currency,
                    idempotency_key=key,
                    refund_id=refund_id,
                ),
                source=PAYMENTS_SOURCE,
                subject=request.order_id,
                id=_event_id(key, "refunded"),
                correlation_id=request.correlation_id,
            )
        )
        return RefundOutcome(refunded=request.amount, refund_id=refund_id)

    async def _captured_charge(self, order_id: str) -> str | None:
        key = f"{order_id}:capture"
        async with self.engine.connect() as connection:
            row = await ledger.entry(connection, key)
        if row is None or row.status == "declined":
            return None
        if row.status == "captured":
            return str(row.provider_ref)
        # Pending: the capture's answer was lost. The provider knows whether it captured;
        # if it did, the same request under the same key returns that capture (no new one).
        listed = await self.provider.charges(order_id)
        if not any(c.kind == "capture" and c.idempotency_key == key for c in listed):
            return None
        capture = await _final_errors(
            self.provider.capture(
                order_id=order_id,
                amount=row.amount,
                currency=row.currency,
                payment_token=row.payment_token,
                idempotency_key=key,
            )
        )
        async with self.engine.begin() as connection:
            await ledger.complete_entry(connection, key, "captured", provider_ref=capture.charge_id)
        return capture.charge_id


async def _final_errors(call: Awaitable[T]) -> T:
    """The provider's answer; an error no retry can fix (a refused request, a reused key)
    fails the activity for good instead of being retried until the deadline."""
    try:
        return await call
    except Declined:
        raise
    except ProviderError as exc:
        if exc.retryable:
            raise
        raise ApplicationError(
            f"the payment provider refused the request: {exc}",
            type=type(exc).__name__,
            non_retryable=True,
        ) from exc


async def _begin(
    connection: AsyncConnection,
    order_id: str,
    kind: ledger.Kind,
    key: str,
    request: CapturePayment | RefundPayment,
    *,
    payment_token: str | None = None,
) -> sa.Row[Any]:
    try:
        return await ledger.begin_entry(
            connection,
            key=key,
            order_id=order_id,
            kind=kind,
            amount=request.amount,
            currency=request.currency,
            payment_token=payment_token,
        )
    except ledger.LedgerMismatch as exc:
        # The same key for another request is a bug upstream: retrying cannot fix it.
        raise ApplicationError(str(exc), type="LedgerMismatch", non_retryable=True) from exc
