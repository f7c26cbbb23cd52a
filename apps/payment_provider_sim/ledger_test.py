from datetime import UTC, datetime

import pytest

from payment_provider_sim.ledger import (
    Captured,
    CaptureRequest,
    ChargeListing,
    Declined,
    IdempotencyConflict,
    Ledger,
    Refunded,
    RefundRefused,
    RefundRequest,
    UnknownCharge,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def capture_request(**changes: object) -> CaptureRequest:
    fields: dict[str, object] = {
        "order_id": "o-1",
        "amount": 1000,
        "currency": "EUR",
        "payment_token": "tok_visa",
    }
    return CaptureRequest(**{**fields, **changes})  # type: ignore[arg-type]


def captured(ledger: Ledger, key: str = "o-1:capture", **changes: object) -> Captured:
    record = ledger.capture(key, capture_request(**changes), NOW).record
    assert isinstance(record, Captured)
    return record


def refund_request(charge: Captured, **changes: object) -> RefundRequest:
    fields: dict[str, object] = {
        "order_id": charge.order_id,
        "charge_id": charge.charge_id,
        "amount": charge.amount,
        "currency": charge.currency,
    }
    return RefundRequest(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_capture_is_recorded_under_its_key_and_listed_for_its_order() -> None:
    ledger = Ledger()
    answer = ledger.capture("k-1", capture_request(), NOW)
    assert answer.new
    assert isinstance(answer.record, Captured)
    assert answer.record.charge_id.startswith("ch_")
    assert ledger.charges("o-1") == [
        ChargeListing(kind="capture", amount=1000, idempotency_key="k-1", at=NOW)
    ]
    assert ledger.charges("o-2") == []


def test_the_same_key_and_request_gets_the_first_answer_and_no_new_charge() -> None:
    ledger = Ledger()
    first = ledger.capture("k-1", capture_request(), NOW)
    again = ledger.capture("k-1", capture_request(idempotency_key="k-1"), NOW)
    assert not again.new
    assert again.record == first.record
    assert len(ledger.charges("o-1")) == 1


@pytest.mark.parametrize(
    "change",
    [{"amount": 999}, {"currency": "USD"}, {"payment_token": "tok_other"}, {"order_id": "o-2"}],
)
def test_the_same_key_with_another_request_is_a_conflict(change: dict[str, object]) -> None:
    ledger = Ledger()
    ledger.capture("k-1", capture_request(), NOW)
    with pytest.raises(IdempotencyConflict):
        ledger.capture("k-1", capture_request(**change), NOW)
    assert len(ledger.charges("o-1")) == 1


def test_captures_and_refunds_share_one_key_namespace() -> None:
    ledger = Ledger()
    charge = captured(ledger, key="k-1")
    with pytest.raises(IdempotencyConflict):
        ledger.refund("k-1", refund_request(charge), NOW)


def test_a_decline_token_is_declined_remembered_and_not_listed() -> None:
    ledger = Ledger()
    first = ledger.capture("k-1", capture_request(payment_token="tok_decline_insufficient"), NOW)
    assert isinstance(first.record, Declined)
    assert "tok_decline_insufficient" in first.record.reason
    again = ledger.capture("k-1", capture_request(payment_token="tok_decline_insufficient"), NOW)
    assert (again.new, again.record) == (False, first.record)
    assert ledger.charges("o-1") == []


def test_refunds_up_to_the_captured_amount_and_no_further() -> None:
    ledger = Ledger()
    charge = captured(ledger)
    part = ledger.refund("r-1", refund_request(charge, amount=600), NOW)
    assert isinstance(part.record, Refunded)
    assert part.record.refund_id.startswith("re_")
    with pytest.raises(RefundRefused) as refused:
        ledger.refund("r-2", refund_request(charge, amount=401), NOW)
    assert refused.value.code == "refund_exceeds_capture"
    ledger.refund("r-2", refund_request(charge, amount=400), NOW)
    assert [(c.kind, c.amount) for c in ledger.charges("o-1")] == [
        ("capture", 1000),
        ("refund", 600),
        ("refund", 400),
    ]


def test_a_refused_refund_leaves_its_key_free() -> None:
    ledger = Ledger()
    charge = captured(ledger)
    with pytest.raises(RefundRefused):
        ledger.refund("r-1", refund_request(charge, amount=1001), NOW)
    assert ledger.refund("r-1", refund_request(charge, amount=1000), NOW).new


def test_a_replayed_refund_is_not_counted_twice() -> None:
    ledger = Ledger()
    charge = captured(ledger)
    first = ledger.refund("r-1", refund_request(charge), NOW)
    again = ledger.refund("r-1", refund_request(charge), NOW)
    assert (again.new, again.record) == (False, first.record)
    assert len(ledger.charges("o-1")) == 2


def test_a_refund_of_an_unknown_charge_or_another_orders_charge_is_refused() -> None:
    ledger = Ledger()
    charge = captured(ledger)
    with pytest.raises(UnknownCharge):
        ledger.refund("r-1", refund_request(charge, charge_id="ch_nope"), NOW)
    with pytest.raises(UnknownCharge):
        ledger.refund("r-1", refund_request(charge, order_id="o-2"), NOW)


def test_a_refund_in_another_currency_is_refused() -> None:
    ledger = Ledger()
    charge = captured(ledger)
    with pytest.raises(RefundRefused) as refused:
        ledger.refund("r-1", refund_request(charge, currency="USD"), NOW)
    assert refused.value.code == "currency_mismatch"


def test_replaying_the_records_rebuilds_the_same_books() -> None:
    ledger = Ledger()
    charge = captured(ledger)
    refund = ledger.refund("r-1", refund_request(charge, amount=300), NOW).record
    decline = ledger.capture("k-2", capture_request(payment_token="tok_decline"), NOW).record

    rebuilt = Ledger([charge, refund, decline])
    assert rebuilt.charges("o-1") == ledger.charges("o-1")
    assert rebuilt.capture("o-1:capture", capture_request(), NOW).record == charge
    assert rebuilt.capture("k-2", capture_request(payment_token="tok_decline"), NOW).record == (
        decline
    )
    with pytest.raises(RefundRefused):  # what was refunded before the restart still counts
        rebuilt.refund("r-2", refund_request(charge, amount=701), NOW)


def test_records_with_a_repeated_key_are_refused() -> None:
    charge = captured(Ledger())
    with pytest.raises(ValueError, match="recorded twice"):
        Ledger([charge, charge])
