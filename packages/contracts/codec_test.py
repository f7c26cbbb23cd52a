"""Round trips, tolerance of unknown fields, the wire shape, and decoder reuse."""

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from contracts.codec import (
    command_decoder,
    data_decoder,
    decode_batch,
    decode_binary_envelope,
    decode_command,
    decode_envelope,
    decode_envelope_obj,
    decode_event,
    decode_stored_attributes,
    decode_stored_event,
    encode_cloudevent,
    encode_command,
    encode_envelope,
    encode_event,
)
from contracts.commands import COMMAND_TYPES, PlaceOrder
from contracts.envelope import CloudEventAttributes, EventEnvelope, new_envelope
from contracts.errors import SchemaViolation, UnknownEventType
from contracts.events import (
    EVENT_TYPES,
    Event,
    OrderConfirmed,
    OrderPlaced,
    StockReceived,
    event_type_of,
)
from contracts.values import OrderItem

WHEN = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _envelope(event: Event) -> EventEnvelope:
    return new_envelope(
        event,
        source="/order-service",
        subject="ord-7f3c",
        correlation_id="corr-1",
        causation_id="cause-1",
        aggregate_version=3,
        time=WHEN,
    )


def test_envelope_round_trip(sample_event: Event) -> None:
    env = _envelope(sample_event)
    decoded = decode_envelope(encode_envelope(env))
    assert decoded == env
    assert type(decoded.data) is type(sample_event)


def test_a_stored_event_decodes_to_its_envelopes_data_and_attributes(
    sample_event: Event,
) -> None:
    envelope = new_envelope(sample_event, source="/t", subject="s")
    raw = encode_envelope(envelope)
    assert decode_stored_event(raw) == sample_event
    attributes = decode_stored_attributes(raw)
    assert (attributes.id, attributes.source, attributes.type, attributes.time) == (
        envelope.id,
        envelope.source,
        envelope.type,
        envelope.time,
    )


def test_envelope_round_trip_through_parsed_json(sample_event: Event) -> None:
    env = _envelope(sample_event)
    assert decode_envelope_obj(msgspec.json.decode(encode_envelope(env))) == env


def test_standalone_round_trip(sample_event: Event) -> None:
    raw = encode_event(sample_event)
    assert msgspec.json.decode(raw)["type"] == event_type_of(sample_event)
    decoded = decode_event(raw)
    assert decoded == sample_event
    assert type(decoded) is type(sample_event)


def test_structured_json_has_attributes_and_untagged_data(sample_event: Event) -> None:
    wire = msgspec.json.decode(encode_envelope(_envelope(sample_event)))
    assert wire["specversion"] == "1.0"
    assert wire["type"] == event_type_of(sample_event)
    assert wire["time"] == "2024-05-01T12:30:15.123456Z"
    assert (wire["correlationid"], wire["causationid"], wire["aggregateversion"]) == (
        "corr-1",
        "cause-1",
        3,
    )
    # The tag lives in the CloudEvents type attribute only, never duplicated inside data.
    assert "type" not in wire["data"]
    expected = msgspec.json.decode(encode_event(sample_event))
    del expected["type"]
    assert wire["data"] == expected


def test_absent_extensions_are_left_out_not_null() -> None:
    env = new_envelope(OrderConfirmed(order_id="o"), source="/s", subject="o")
    wire = msgspec.json.decode(encode_envelope(env))
    assert "causationid" not in wire
    assert "aggregateversion" not in wire
    assert "traceparent" not in wire  # an untraced producer writes no tracing extension
    assert wire["datacontenttype"] == "application/json"


def test_traceparent_travels_as_the_distributed_tracing_extension() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    env = new_envelope(
        OrderConfirmed(order_id="o"), source="/s", subject="o", traceparent=traceparent
    )
    encoded = encode_envelope(env)
    assert msgspec.json.decode(encoded)["traceparent"] == traceparent
    assert decode_envelope(encoded).traceparent == traceparent
    assert decode_stored_attributes(encoded).traceparent == traceparent


def test_unknown_fields_are_ignored_in_envelope_and_data(order_placed: OrderPlaced) -> None:
    env = _envelope(order_placed)
    wire: dict[str, Any] = msgspec.json.decode(encode_envelope(env))
    wire["sequence"] = "7"  # an extension orderly does not know
    wire["partitionkey"] = {"nested": [1, 2]}
    wire["data"]["gift_wrap"] = True
    wire["data"]["items"][0]["colour"] = "blue"
    raw = msgspec.json.encode(wire)

    assert decode_envelope(raw) == env
    assert decode_envelope_obj(msgspec.json.decode(raw)) == env
    standalone: dict[str, Any] = msgspec.json.decode(encode_event(order_placed))
    standalone["loyalty_points"] = 12
    assert decode_event(msgspec.json.encode(standalone)) == order_placed


def test_encode_cloudevent_refuses_a_type_that_contradicts_the_data(
    order_placed: OrderPlaced,
) -> None:
    attrs = CloudEventAttributes(
        id="e", source="/s", type="orderly.OrderConfirmed.v1", time=WHEN, subject="o"
    )
    with pytest.raises(SchemaViolation) as caught:
        encode_cloudevent(attrs, order_placed)
    assert caught.value.field == "$.type"


def test_batch_decodes_every_element_and_locates_errors(order_placed: OrderPlaced) -> None:
    first = _envelope(order_placed)
    second = _envelope(OrderConfirmed(order_id="ord-7f3c"))
    raw = b"[" + encode_envelope(first) + b"," + encode_envelope(second) + b"]"
    assert decode_batch(raw) == [first, second]
    assert decode_batch(b"[]") == []

    broken = raw.replace(b'"order_id":"ord-7f3c"}', b'"order_id":""}')
    with pytest.raises(SchemaViolation) as caught:
        decode_batch(broken)
    assert caught.value.field == "$[1].data.order_id"

    unknown = raw.replace(b"orderly.OrderConfirmed.v1", b"orderly.Nope.v1")
    with pytest.raises(UnknownEventType) as unknown_caught:
        decode_batch(unknown)
    assert unknown_caught.value.field == "$[1].type"


def test_binary_mode_reads_string_attributes() -> None:
    env = decode_binary_envelope(
        {
            "specversion": "1.0",
            "id": "wh-evt-1",
            "source": "/warehouse/wh-1",
            "type": "orderly.StockReceived.v1",
            "time": "2024-05-01T12:30:15.123456Z",
            "subject": "SKU-1",
            "datacontenttype": "application/json; charset=utf-8",
            "aggregateversion": "4",
        },
        b'{"sku": "SKU-1", "quantity": 5, "warehouse": "wh-1", "pallet": "P-9"}',
    )
    assert env.data == StockReceived(sku="SKU-1", quantity=5, warehouse="wh-1")
    assert (env.time, env.aggregateversion, env.correlationid) == (WHEN, 4, None)


def test_command_round_trip_and_unknown_fields() -> None:
    cmd = PlaceOrder(
        customer_id="c-1", items=(OrderItem(sku="SKU-1", quantity=2),), payment_token="tok"
    )
    assert decode_command(encode_command(cmd), PlaceOrder) == cmd
    raw = (
        b'{"customer_id": "c-1", "coupon": "X", '
        b'"items": [{"sku": "SKU-1", "quantity": 2, "note": "n"}], "payment_token": "tok"}'
    )
    assert decode_command(raw, PlaceOrder) == cmd


def test_decoders_are_built_once_and_reused() -> None:
    for event_type, cls in EVENT_TYPES.items():
        decoder = data_decoder(event_type)
        assert decoder is data_decoder(event_type)
        assert decoder.type is cls
    for command_cls in COMMAND_TYPES:
        assert command_decoder(command_cls) is command_decoder(command_cls)
        assert command_decoder(command_cls).type is command_cls


def test_decoding_builds_no_decoder(monkeypatch: pytest.MonkeyPatch, sample_event: Event) -> None:
    env_raw = encode_envelope(_envelope(sample_event))
    event_raw = encode_event(sample_event)
    cmd_raw = encode_command(
        PlaceOrder(customer_id="c", items=(OrderItem(sku="S", quantity=1),), payment_token="t")
    )

    def tripwire(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Decoder was built while decoding")

    monkeypatch.setattr(msgspec.json, "Decoder", tripwire)
    assert decode_envelope(env_raw).data == sample_event
    assert decode_event(event_raw) == sample_event
    assert decode_batch(b"[" + env_raw + b"]")[0].data == sample_event
    assert decode_command(cmd_raw, PlaceOrder).customer_id == "c"


def test_command_decoder_refuses_a_non_command() -> None:
    with pytest.raises(TypeError, match="OrderPlaced"):
        command_decoder(OrderPlaced)  # type: ignore[type-var]
