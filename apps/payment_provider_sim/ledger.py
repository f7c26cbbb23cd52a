"""The simulated provider's books: captures, declines and refunds, each under its idempotency key.

Pure decisions, no I/O: ``Ledger.capture`` and ``Ledger.refund`` either answer from the record
already held under the key (the same request again), refuse (the key was used for another
request, the charge is unknown, the refund is larger than what is left), or decide a new
record and add it. The caller makes a new record durable before it answers
(``durable_ledger``); the same records, replayed in order through ``Ledger(records)``, rebuild
the books after a restart.

Keys form one namespace for captures and refunds, as at a real provider: a capture's key sent
with a refund is a conflict. A request's fingerprint is its decoded body without the key,
encoded again, so key order, whitespace and unknown fields do not make two bodies differ.
Refusals are not recorded: their key stays free, and asking again gets the same refusal
because nothing they depend on can change (charge ids are the ledger's own; amounts only
ever shrink).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, TypeAlias

import msgspec

DECLINED_TOKEN_PREFIX = "tok_decline"

Identifier: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Amount: TypeAlias = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
Currency: TypeAlias = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Token: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
IdempotencyKey: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class CaptureRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /charges``: take ``amount`` from the payment method behind ``payment_token``."""

    order_id: Identifier
    amount: Amount
    currency: Currency
    payment_token: Token
    # Optional here because the Idempotency-Key header may carry it instead; one is required.
    idempotency_key: IdempotencyKey | None = None


class RefundRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /refunds``: give back part or all of a capture."""

    order_id: Identifier
    charge_id: Identifier
    amount: Amount
    currency: Currency
    idempotency_key: IdempotencyKey | None = None


class Captured(msgspec.Struct, frozen=True, kw_only=True, tag="capture", tag_field="kind"):
    key: str
    fingerprint: str
    charge_id: str
    order_id: str
    amount: int
    currency: str
    at: datetime


class Declined(msgspec.Struct, frozen=True, kw_only=True, tag="decline", tag_field="kind"):
    key: str
    fingerprint: str
    order_id: str
    amount: int
    currency: str
    reason: str
    at: datetime


class Refunded(msgspec.Struct, frozen=True, kw_only=True, tag="refund", tag_field="kind"):
    key: str
    fingerprint: str
    refund_id: str
    charge_id: str
    order_id: str
    amount: int
    currency: str
    at: datetime


Record: TypeAlias = Captured | Declined | Refunded


class ChargeListing(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``GET /charges?order_id=``: money that moved (declines moved none)."""

    kind: Literal["capture", "refund"]
    amount: int
    idempotency_key: str
    at: datetime


class LedgerRefusal(Exception):
    """The ledger will not act on this request; nothing is recorded."""

    status = 422
    code = "refused"


class IdempotencyConflict(LedgerRefusal):
    status = 409
    code = "idempotency_conflict"


class UnknownCharge(LedgerRefusal):
    status = 404
    code = "unknown_charge"


class RefundRefused(LedgerRefusal):
    """A refund that does not fit its charge: other order or currency, or too much."""

    status = 422
    code = "refund_exceeds_capture"

    def __init__(self, message: str, *, code: str = "refund_exceeds_capture") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Answer:
    """What the ledger holds under a request's key; ``new`` when this request created it."""

    record: Record
    new: bool


class Ledger:
    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._by_key: dict[str, Record] = {}
        self._charges: dict[str, Captured] = {}
        self._refunded: dict[str, int] = defaultdict(int)  # by charge id
        self._money_moved: dict[str, list[Captured | Refunded]] = defaultdict(list)  # by order
        for record in records:
            self._add(record)

    def capture(self, key: str, request: CaptureRequest, now: datetime) -> Answer:
        fingerprint = _fingerprint("capture", request)
        held = self._held(key, fingerprint)
        if held is not None:
            return Answer(held, new=False)
        record: Record
        if request.payment_token.startswith(DECLINED_TOKEN_PREFIX):
            record = Declined(
                key=key,
                fingerprint=fingerprint,
                order_id=request.order_id,
                amount=request.amount,
                currency=request.currency,
                reason=f"the card was declined (test token {request.payment_token!r})",
                at=now,
            )
        else:
            record = Captured(
                key=key,
                fingerprint=fingerprint,
                charge_id=f"ch_{uuid.uuid4().hex}",
                order_id=request.order_id,
                amount=request.amount,
                currency=request.currency,
                at=now,
            )
        self._add(record)
        return Answer(record, new=True)

    def refund(self, key: str, request: RefundRequest, now: datetime) -> Answer:
        fingerprint = _fingerprint("refund", request)
        held = self._held(key, fingerprint)
        if held is not None:
            return Answer(held, new=False)
        charge = self._charges.get(request.charge_id)
        if charge is None or charge.order_id != request.order_id:
            raise UnknownCharge(f"no charge {request.charge_id!r} for order {request.order_id!r}")
        if charge.currency != request.currency:
            raise RefundRefused(
                f"the charge is in {charge.currency}, not {request.currency}",
                code="currency_mismatch",
            )
        left = charge.amount - self._refunded[charge.charge_id]
        if request.amount > left:
            raise RefundRefused(
                f"refund of {request.amount} exceeds the {left} {charge.currency} left"
                f" of charge {charge.charge_id} (captured {charge.amount})"
            )
        record = Refunded(
            key=key,
            fingerprint=fingerprint,
            refund_id=f"re_{uuid.uuid4().hex}",
            charge_id=charge.charge_id,
            order_id=request.order_id,
            amount=request.amount,
            currency=request.currency,
            at=now,
        )
        self._add(record)
        return Answer(record, new=True)

    def charges(self, order_id: str) -> list[ChargeListing]:
        """The order's captures and refunds, oldest first."""
        return [
            ChargeListing(
                kind="capture" if isinstance(record, Captured) else "refund",
                amount=record.amount,
                idempotency_key=record.key,
                at=record.at,
            )
            for record in self._money_moved.get(order_id, ())
        ]

    def _held(self, key: str, fingerprint: str) -> Record | None:
        held = self._by_key.get(key)
        if held is not None and held.fingerprint != fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different request;"
                " send a new key for a new request"
            )
        return held

    def _add(self, record: Record) -> None:
        if record.key in self._by_key:
            raise ValueError(f"idempotency key {record.key!r} recorded twice")
        self._by_key[record.key] = record
        if isinstance(record, Captured):
            self._charges[record.charge_id] = record
            self._money_moved[record.order_id].append(record)
        elif isinstance(record, Refunded):
            self._refunded[record.charge_id] += record.amount
            self._money_moved[record.order_id].append(record)


_fingerprint_encoder = msgspec.json.Encoder()


def _fingerprint(kind: str, request: CaptureRequest | RefundRequest) -> str:
    body = msgspec.structs.replace(request, idempotency_key=None)
    return hashlib.sha256(_fingerprint_encoder.encode((kind, body))).hexdigest()
