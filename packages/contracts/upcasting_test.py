"""The upcaster chain, and that reading a v1 OrderPlaced always yields v2."""

import copy
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from contracts.codec import (
    decode_envelope,
    decode_envelope_obj,
    decode_event,
    decode_stored_event,
    encode_cloudevent,
    encode_event,
)
from contracts.envelope import CloudEventAttributes
from contracts.errors import SchemaViolation, UnknownEventType
from contracts.events import (
    LEGACY_EVENT_TYPES,
    OrderLineV1,
    OrderPlaced,
    OrderPlacedV1,
)
from contracts.upcasting import CURRENT_TYPES, UPCASTERS, chain_of, current_type_of, upcast
from contracts.values import OrderLine

# Written by hand, the way the single-currency service stored it: no currency, no line totals.
V1_ENVELOPE = b"""{
  "specversion": "1.0",
  "id": "legacy-0001",
  "source": "/legacy-order-service",
  "type": "orderly.OrderPlaced.v1",
  "time": "2023-03-04T10:00:00+01:00",
  "subject": "ord-1",
  "datacontenttype": "application/json",
  "correlationid": "legacy-0001",
  "aggregateversion": 1,
  "data": {
    "order_id": "ord-1",
    "customer_id": "cust-1",
    "items": [
      {"sku": "SKU-1", "quantity": 3, "unit_price": 1250},
      {"sku": "SKU-2", "quantity": 1, "unit_price": 99}
    ],
    "total": 3849,
    "payment_token": "tok_visa"
  }
}"""

V1_DATA: dict[str, Any] = msgspec.json.decode(V1_ENVELOPE)["data"]

EXPECTED_LINES = (
    OrderLine(sku="SKU-1", quantity=3, unit_price=1250, line_total=3750),
    OrderLine(sku="SKU-2", quantity=1, unit_price=99, line_total=99),
)


def test_v1_envelope_decodes_as_v2_in_eur_with_line_totals() -> None:
    env = decode_envelope(V1_ENVELOPE)
    assert env.type == "orderly.OrderPlaced.v2"
    assert isinstance(env.data, OrderPlaced)
    assert env.data.currency == "EUR"
    assert env.data.items == EXPECTED_LINES
    assert env.data.total == 3849
    assert (env.data.order_id, env.data.customer_id) == ("ord-1", "cust-1")
    # The envelope's own attributes survive the upcast untouched.
    assert (env.id, env.source, env.subject, env.aggregateversion) == (
        "legacy-0001",
        "/legacy-order-service",
        "ord-1",
        1,
    )
    assert env.time == datetime(2023, 3, 4, 9, 0, tzinfo=UTC)


def test_a_stored_v1_event_decodes_as_the_v2_its_envelope_holds() -> None:
    assert decode_stored_event(V1_ENVELOPE) == decode_envelope(V1_ENVELOPE).data


def test_v1_written_by_the_legacy_struct_decodes_as_v2() -> None:
    v1 = OrderPlacedV1(
        order_id="ord-2",
        customer_id="cust-2",
        items=(OrderLineV1(sku="SKU-9", quantity=4, unit_price=250),),
        total=1000,
        payment_token="tok",
    )
    attrs = CloudEventAttributes(
        id="e-2",
        source="/legacy",
        type="orderly.OrderPlaced.v1",
        time=datetime(2023, 1, 1, tzinfo=UTC),
        subject="ord-2",
    )
    for decoded in (
        decode_envelope(encode_cloudevent(attrs, v1)).data,
        decode_envelope_obj(msgspec.json.decode(encode_cloudevent(attrs, v1))).data,
        decode_event(encode_event(v1)),
    ):
        assert decoded == OrderPlaced(
            order_id="ord-2",
            customer_id="cust-2",
            items=(OrderLine(sku="SKU-9", quantity=4, unit_price=250, line_total=1000),),
            total=1000,
            currency="EUR",
            payment_token="tok",
        )


def test_upcast_turns_v1_data_into_v2_data_without_touching_the_input() -> None:
    original = copy.deepcopy(V1_DATA)
    event_type, data = upcast("orderly.OrderPlaced.v1", V1_DATA)
    assert event_type == "orderly.OrderPlaced.v2"
    assert data == {
        "order_id": "ord-1",
        "customer_id": "cust-1",
        "items": [
            {"sku": "SKU-1", "quantity": 3, "unit_price": 1250, "line_total": 3750},
            {"sku": "SKU-2", "quantity": 1, "unit_price": 99, "line_total": 99},
        ],
        "total": 3849,
        "currency": "EUR",
        "payment_token": "tok_visa",
    }
    assert original == V1_DATA


def test_upcast_leaves_a_current_type_alone() -> None:
    data = {"order_id": "o"}
    assert upcast("orderly.OrderConfirmed.v1", data) == ("orderly.OrderConfirmed.v1", data)


def test_upcast_refuses_an_unknown_type() -> None:
    with pytest.raises(UnknownEventType) as caught:
        upcast("orderly.OrderPlaced.v0", {})
    assert (caught.value.code, caught.value.field) == ("unknown_event_type", "$.type")


def test_upcast_reports_broken_v1_data_against_the_v1_schema() -> None:
    broken = copy.deepcopy(V1_DATA)
    broken["items"][1]["quantity"] = 0
    with pytest.raises(SchemaViolation) as caught:
        upcast("orderly.OrderPlaced.v1", broken)
    assert caught.value.field == "$.items[1].quantity"


def test_broken_v1_envelope_is_located_inside_data() -> None:
    raw = V1_ENVELOPE.replace(b'"unit_price": 99', b'"unit_price": -1')
    with pytest.raises(SchemaViolation) as caught:
        decode_envelope(raw)
    assert caught.value.field == "$.data.items[1].unit_price"


def test_every_chain_ends_in_a_current_type() -> None:
    assert set(LEGACY_EVENT_TYPES) == set(UPCASTERS)
    assert not CURRENT_TYPES & set(UPCASTERS)
    for legacy in UPCASTERS:
        assert current_type_of(legacy) in CURRENT_TYPES
        assert chain_of(legacy)
    assert chain_of("orderly.OrderPlaced.v2") == ()
    assert [step.to_type for step in chain_of("orderly.OrderPlaced.v1")] == [
        "orderly.OrderPlaced.v2"
    ]
