"""The CloudEvents envelope: defaults of new_envelope, consistency checks, dedupe key."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.envelope import SPEC_VERSION, EventEnvelope, dedupe_key, new_envelope
from contracts.errors import SchemaViolation
from contracts.events import OrderConfirmed, OrderPlaced

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_new_envelope_fills_id_time_type_and_correlation(order_placed: OrderPlaced) -> None:
    before = datetime.now(UTC)
    env = new_envelope(order_placed, source="/order-service", subject=order_placed.order_id)
    after = datetime.now(UTC)

    assert uuid.UUID(env.id).version == 4
    assert before <= env.time <= after
    assert env.time.utcoffset() == timedelta(0)
    assert env.type == "orderly.OrderPlaced.v2"
    assert env.specversion == SPEC_VERSION == "1.0"
    assert env.datacontenttype == "application/json"
    assert (env.source, env.subject) == ("/order-service", order_placed.order_id)
    # An event that is not caused by another starts its own correlation.
    assert env.correlationid == env.id
    assert env.causationid is None
    assert env.aggregateversion is None
    assert env.data is order_placed


def test_new_envelope_ids_are_unique(order_placed: OrderPlaced) -> None:
    ids = {new_envelope(order_placed, source="/s", subject="o").id for _ in range(50)}
    assert len(ids) == 50


def test_new_envelope_keeps_what_it_is_given() -> None:
    env = new_envelope(
        OrderConfirmed(order_id="o-1"),
        source="/saga",
        subject="o-1",
        correlation_id="corr-1",
        causation_id="cause-1",
        aggregate_version=7,
        id="evt-1",
        time=WHEN,
    )
    assert (env.id, env.time, env.correlationid, env.causationid, env.aggregateversion) == (
        "evt-1",
        WHEN,
        "corr-1",
        "cause-1",
        7,
    )


def test_dedupe_key_is_source_plus_id() -> None:
    env = new_envelope(OrderConfirmed(order_id="o-1"), source="/saga", subject="o-1", id="e-9")
    assert env.dedupe_key == dedupe_key("/saga", "e-9")
    assert env.dedupe_key != dedupe_key("/saga", "e-8")
    assert env.dedupe_key != dedupe_key("/other", "e-9")


def test_dedupe_key_cannot_collide_across_the_separator() -> None:
    # A naive "source:id" join would give "a:b:c" for both pairs.
    assert dedupe_key("a:b", "c") != dedupe_key("a", "b:c")


def test_envelope_refuses_a_type_that_contradicts_its_data() -> None:
    with pytest.raises(SchemaViolation) as caught:
        EventEnvelope(
            id="e",
            source="/s",
            type="orderly.OrderRejected.v1",
            time=WHEN,
            subject="o",
            data=OrderConfirmed(order_id="o"),
        )
    assert caught.value.field == "$.type"


def test_envelope_refuses_a_naive_time() -> None:
    with pytest.raises(SchemaViolation) as caught:
        new_envelope(
            OrderConfirmed(order_id="o"), source="/s", subject="o", time=datetime(2024, 1, 1)
        )
    assert caught.value.field == "$.time"


def test_envelope_accepts_any_aware_offset() -> None:
    cest = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    env = new_envelope(OrderConfirmed(order_id="o"), source="/s", subject="o", time=cest)
    assert env.time == WHEN
