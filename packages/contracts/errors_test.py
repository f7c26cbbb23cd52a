"""Every kind of bad input becomes the right ContractError, located by exact JSON path."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from contracts.codec import (
    decode_batch,
    decode_binary_envelope,
    decode_command,
    decode_envelope,
    decode_envelope_obj,
    decode_event,
    encode_envelope,
)
from contracts.commands import CancelOrder, PlaceOrder, UpdateCatalogItem
from contracts.envelope import new_envelope
from contracts.errors import (
    ContractError,
    MalformedJson,
    SchemaViolation,
    UnknownEventType,
    UnsupportedSpecVersion,
    schema_violation,
)
from contracts.events import OrderPlaced, StockReceived
from contracts.values import OrderLine

Wire = dict[str, Any]

ORDER = OrderPlaced(
    order_id="ord-1",
    customer_id="cust-1",
    items=(
        OrderLine(sku="SKU-1", quantity=2, unit_price=500, line_total=1000),
        OrderLine(sku="SKU-2", quantity=1, unit_price=250, line_total=250),
    ),
    total=1250,
    currency="EUR",
    payment_token="tok",
)


def _valid_wire() -> Wire:
    env = new_envelope(
        ORDER, source="/order-service", subject="ord-1", time=datetime(2024, 1, 1, tzinfo=UTC)
    )
    wire: Wire = msgspec.json.decode(encode_envelope(env))
    return wire


def _set(path: tuple[str | int, ...], value: object) -> Callable[[Wire], None]:
    def mutate(wire: Wire) -> None:
        target: Any = wire
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _drop(path: tuple[str | int, ...]) -> Callable[[Wire], None]:
    def mutate(wire: Wire) -> None:
        target: Any = wire
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


ENVELOPE_CASES: list[tuple[str, Callable[[Wire], None], type[ContractError], str, str]] = [
    (
        "quantity zero",
        _set(("data", "items", 1, "quantity"), 0),
        SchemaViolation,
        "schema_violation",
        "$.data.items[1].quantity",
    ),
    (
        "negative price",
        _set(("data", "items", 0, "unit_price"), -1),
        SchemaViolation,
        "schema_violation",
        "$.data.items[0].unit_price",
    ),
    (
        "bad currency",
        _set(("data", "currency"), "eur"),
        SchemaViolation,
        "schema_violation",
        "$.data.currency",
    ),
    (
        "empty items",
        _set(("data", "items"), []),
        SchemaViolation,
        "schema_violation",
        "$.data.items",
    ),
    (
        "too many items",
        _set(
            ("data", "items"),
            [{"sku": "S", "quantity": 1, "unit_price": 1, "line_total": 1}] * 101,
        ),
        SchemaViolation,
        "schema_violation",
        "$.data.items",
    ),
    (
        "bad sku",
        _set(("data", "items", 0, "sku"), "no spaces"),
        SchemaViolation,
        "schema_violation",
        "$.data.items[0].sku",
    ),
    (
        "wrong type in data",
        _set(("data", "total"), "1250"),
        SchemaViolation,
        "schema_violation",
        "$.data.total",
    ),
    ("data not an object", _set(("data",), [1, 2]), SchemaViolation, "schema_violation", "$.data"),
    (
        "missing data field",
        _drop(("data", "currency")),
        SchemaViolation,
        "schema_violation",
        "$.data.currency",
    ),
    (
        "missing nested field",
        _drop(("data", "items", 1, "line_total")),
        SchemaViolation,
        "schema_violation",
        "$.data.items[1].line_total",
    ),
    ("missing attribute", _drop(("subject",)), SchemaViolation, "schema_violation", "$.subject"),
    ("missing data", _drop(("data",)), SchemaViolation, "schema_violation", "$.data"),
    (
        "missing specversion",
        _drop(("specversion",)),
        SchemaViolation,
        "schema_violation",
        "$.specversion",
    ),
    (
        "wrong attribute type",
        _set(("aggregateversion",), "3"),
        SchemaViolation,
        "schema_violation",
        "$.aggregateversion",
    ),
    (
        "aggregate version zero",
        _set(("aggregateversion",), 0),
        SchemaViolation,
        "schema_violation",
        "$.aggregateversion",
    ),
    (
        "naive time",
        _set(("time",), "2024-01-01T00:00:00"),
        SchemaViolation,
        "schema_violation",
        "$.time",
    ),
    ("empty id", _set(("id",), ""), SchemaViolation, "schema_violation", "$.id"),
    (
        "xml content",
        _set(("datacontenttype",), "application/xml"),
        SchemaViolation,
        "schema_violation",
        "$.datacontenttype",
    ),
    (
        "tag inside data contradicts type",
        _set(("data", "type"), "orderly.OrderConfirmed.v1"),
        SchemaViolation,
        "schema_violation",
        "$.data.type",
    ),
    (
        "specversion 0.3",
        _set(("specversion",), "0.3"),
        UnsupportedSpecVersion,
        "unsupported_spec_version",
        "$.specversion",
    ),
    (
        "specversion number",
        _set(("specversion",), 1.0),
        UnsupportedSpecVersion,
        "unsupported_spec_version",
        "$.specversion",
    ),
    (
        "unknown type",
        _set(("type",), "orderly.OrderTeleported.v1"),
        UnknownEventType,
        "unknown_event_type",
        "$.type",
    ),
    (
        "unknown version",
        _set(("type",), "orderly.OrderPlaced.v9"),
        UnknownEventType,
        "unknown_event_type",
        "$.type",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "error", "code", "field"),
    [case[1:] for case in ENVELOPE_CASES],
    ids=[case[0] for case in ENVELOPE_CASES],
)
def test_bad_envelope_is_reported_precisely(
    mutate: Callable[[Wire], None], error: type[ContractError], code: str, field: str
) -> None:
    wire = _valid_wire()
    mutate(wire)
    decoders: list[Callable[[], object]] = [
        lambda: decode_envelope(msgspec.json.encode(wire)),
        lambda: decode_envelope_obj(wire),
    ]
    for decode in decoders:
        with pytest.raises(error) as caught:
            decode()
        assert type(caught.value) is error
        assert caught.value.code == code
        assert caught.value.field == field
        assert caught.value.reason


def test_the_valid_wire_itself_decodes() -> None:
    # Guards the table above: each case fails because of its mutation alone.
    assert decode_envelope(msgspec.json.encode(_valid_wire())).data == ORDER


def test_foreign_specversion_wins_over_other_problems() -> None:
    raw = b'{"specversion": "0.3", "id": "x", "type": "orderly.Nope.v1"}'
    with pytest.raises(UnsupportedSpecVersion) as caught:
        decode_envelope(raw)
    assert caught.value.field == "$.specversion"


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"id": "x",}', b"not json", b'{"data": {"a": tru}}', b"\xff\xfe"]
)
def test_malformed_json(raw: bytes) -> None:
    for decode in (decode_envelope, decode_event):
        with pytest.raises(MalformedJson) as caught:
            decode(raw)
        assert caught.value.code == "malformed_json"
        assert caught.value.field is None
        assert caught.value.reason.startswith("malformed JSON")


# msgspec parses towards the expected type, so "{" is a wrong type for a batch, not bad JSON.
@pytest.mark.parametrize("raw", [b"", b"[", b'[{"id": "x",}]', b"nope", b"[1,]"])
def test_malformed_batch(raw: bytes) -> None:
    with pytest.raises(MalformedJson) as caught:
        decode_batch(raw)
    assert caught.value.field is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"[]", "$"), (b'"event"', "$"), (b"null", "$")],
)
def test_envelope_that_is_not_an_object(raw: bytes, field: str) -> None:
    with pytest.raises(SchemaViolation) as caught:
        decode_envelope(raw)
    assert caught.value.field == field


def test_batch_that_is_not_an_array() -> None:
    with pytest.raises(SchemaViolation) as caught:
        decode_batch(b"{}")
    assert caught.value.field == "$"


def test_binary_mode_errors() -> None:
    attributes = {
        "specversion": "1.0",
        "id": "e",
        "source": "/wh",
        "type": "orderly.StockReceived.v1",
        "time": "2024-01-01T00:00:00Z",
        "subject": "SKU-1",
    }
    good = b'{"sku": "SKU-1", "quantity": 1, "warehouse": "w"}'
    assert decode_binary_envelope(attributes, good).data == StockReceived(
        sku="SKU-1", quantity=1, warehouse="w"
    )
    cases: list[tuple[dict[str, str], bytes, type[ContractError], str | None]] = [
        (
            attributes,
            b'{"sku": "SKU-1", "quantity": 0, "warehouse": "w"}',
            SchemaViolation,
            "$.data.quantity",
        ),
        (attributes, b"{oops", MalformedJson, "$.data"),
        (attributes | {"specversion": "0.3"}, good, UnsupportedSpecVersion, "$.specversion"),
        (attributes | {"type": "orderly.Nope.v1"}, good, UnknownEventType, "$.type"),
        (attributes | {"aggregateversion": "zero"}, good, SchemaViolation, "$.aggregateversion"),
        ({k: v for k, v in attributes.items() if k != "source"}, good, SchemaViolation, "$.source"),
    ]
    for attrs, body, error, field in cases:
        with pytest.raises(error) as caught:
            decode_binary_envelope(attrs, body)
        assert type(caught.value) is error
        assert caught.value.field == field


STOCK = b'"type": "orderly.StockReceived.v1"'


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{" + STOCK + b', "sku": "S", "quantity": 0, "warehouse": "w"}', "$.quantity"),
        (b"{" + STOCK + b', "sku": "S", "quantity": true, "warehouse": "w"}', "$.quantity"),
        (b"{" + STOCK + b', "sku": "S", "warehouse": "w"}', "$.quantity"),
        (b'{"sku": "S", "quantity": 1, "warehouse": "w"}', "$.type"),
        (b'{"type": 7, "sku": "S", "quantity": 1, "warehouse": "w"}', "$.type"),
    ],
)
def test_standalone_event_errors(raw: bytes, field: str) -> None:
    with pytest.raises(SchemaViolation) as caught:
        decode_event(raw)
    assert type(caught.value) is SchemaViolation
    assert caught.value.field == field


def test_standalone_unknown_type() -> None:
    with pytest.raises(UnknownEventType) as caught:
        decode_event(b'{"type": "orderly.Nope.v1", "sku": "S"}')
    assert (caught.value.code, caught.value.field) == ("unknown_event_type", "$.type")


COMMAND_CASES: list[tuple[type[Any], bytes, type[ContractError], str | None]] = [
    (
        PlaceOrder,
        b'{"customer_id": "c", "items": [{"sku": "S", "quantity": 0}], "payment_token": "t"}',
        SchemaViolation,
        "$.items[0].quantity",
    ),
    (
        PlaceOrder,
        b'{"customer_id": "c", "items": [], "payment_token": "t"}',
        SchemaViolation,
        "$.items",
    ),
    (
        PlaceOrder,
        b'{"customer_id": "c", "items": [{"sku": "S", "quantity": 1}]}',
        SchemaViolation,
        "$.payment_token",
    ),
    (
        PlaceOrder,
        b'{"customer_id": 5, "items": [{"sku": "S", "quantity": 1}], "payment_token": "t"}',
        SchemaViolation,
        "$.customer_id",
    ),
    (
        PlaceOrder,
        b'{"customer_id": "c", "items": [{"sku": "S", "quantity": 1.5}], "payment_token": "t"}',
        SchemaViolation,
        "$.items[0].quantity",
    ),
    (
        UpdateCatalogItem,
        b'{"price": -1, "currency": "EUR", "on_hand": 3}',
        SchemaViolation,
        "$.price",
    ),
    (
        UpdateCatalogItem,
        b'{"price": 100, "currency": "EURO", "on_hand": 3}',
        SchemaViolation,
        "$.currency",
    ),
    (
        UpdateCatalogItem,
        b'{"price": 100, "currency": "EUR", "on_hand": -3}',
        SchemaViolation,
        "$.on_hand",
    ),
    (CancelOrder, b'{"order_id": ""}', SchemaViolation, "$.order_id"),
    (CancelOrder, b"[]", SchemaViolation, "$"),
    (CancelOrder, b'{"order_id": "o"', MalformedJson, None),
]


@pytest.mark.parametrize(("cls", "raw", "error", "field"), COMMAND_CASES)
def test_bad_command_is_reported_precisely(
    cls: type[Any], raw: bytes, error: type[ContractError], field: str | None
) -> None:
    with pytest.raises(error) as caught:
        decode_command(raw, cls)
    assert type(caught.value) is error
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("message", "root", "reason", "field"),
    [
        (
            "Expected `int` >= 1 - at `$.items[0].quantity`",
            "$",
            "Expected `int` >= 1",
            "$.items[0].quantity",
        ),
        (
            "Expected `int` >= 1 - at `$.items[0].quantity`",
            "$.data",
            "Expected `int` >= 1",
            "$.data.items[0].quantity",
        ),
        (
            "Object missing required field `currency`",
            "$.data",
            "Object missing required field `currency`",
            "$.data.currency",
        ),
        (
            "Object missing required field `sku` - at `$.items[2]`",
            "$[4].data",
            "Object missing required field `sku`",
            "$[4].data.items[2].sku",
        ),
        ("Expected `object`, got `array`", "$", "Expected `object`, got `array`", "$"),
    ],
)
def test_msgspec_messages_are_parsed(message: str, root: str, reason: str, field: str) -> None:
    error = schema_violation(msgspec.ValidationError(message), root=root)
    assert (error.reason, error.field, error.code) == (reason, field, "schema_violation")


def test_error_hierarchy() -> None:
    for cls in (MalformedJson, SchemaViolation, UnknownEventType, UnsupportedSpecVersion):
        assert issubclass(cls, ContractError)
        assert issubclass(cls, Exception)
    codes = {
        c.code for c in (MalformedJson, SchemaViolation, UnknownEventType, UnsupportedSpecVersion)
    }
    assert len(codes) == 4
    error = SchemaViolation("Expected `int`", field="$.total")
    assert str(error) == "Expected `int` (at $.total)"
