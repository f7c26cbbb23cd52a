"""The event catalogue: tags, configuration, constraints and the type registry."""

import re
from collections.abc import Callable
from typing import get_args

import msgspec
import pytest

from contracts.events import (
    EVENT_TYPES,
    LEGACY_EVENT_TYPES,
    DomainEvent,
    Event,
    OrderPlaced,
    OrderPlacedV1,
    StockReceived,
    event_type_of,
)
from contracts.values import OrderLine

TAG = re.compile(r"^orderly\.(?P<name>[A-Z][A-Za-z]+)\.v(?P<version>[1-9][0-9]*)$")

EXPECTED_TYPES = {
    "orderly.OrderPlaced.v2",
    "orderly.OrderCancellationRequested.v1",
    "orderly.OrderConfirmed.v1",
    "orderly.OrderRejected.v1",
    "orderly.OrderCancelled.v1",
    "orderly.InventoryReservationRequested.v1",
    "orderly.InventoryReserved.v1",
    "orderly.InventoryReservationRejected.v1",
    "orderly.InventoryCommitRequested.v1",
    "orderly.InventoryCommitted.v1",
    "orderly.InventoryReleaseRequested.v1",
    "orderly.InventoryReleased.v1",
    "orderly.PaymentCaptured.v1",
    "orderly.PaymentDeclined.v1",
    "orderly.PaymentRefunded.v1",
    "orderly.CatalogItemUpdated.v1",
    "orderly.StockReceived.v1",
    "orderly.StockReserved.v1",
    "orderly.StockCommitted.v1",
    "orderly.StockReleased.v1",
}
NOT_ABOUT_AN_ORDER = {"orderly.CatalogItemUpdated.v1", "orderly.StockReceived.v1"}


def test_event_types_are_exactly_the_catalogue() -> None:
    assert set(EVENT_TYPES) == EXPECTED_TYPES
    assert set(EVENT_TYPES.values()) == set(get_args(Event))
    assert {"orderly.OrderPlaced.v1": OrderPlacedV1} == LEGACY_EVENT_TYPES


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES) + sorted(LEGACY_EVENT_TYPES))
def test_tag_names_the_class_and_carries_the_version(event_type: str) -> None:
    cls = EVENT_TYPES.get(event_type) or LEGACY_EVENT_TYPES[event_type]
    match = TAG.match(event_type)
    assert match is not None
    assert cls.__name__.removesuffix(f"V{match['version']}") == match["name"]
    config = cls.__struct_config__
    assert (config.tag_field, config.tag) == ("type", event_type)
    assert config.frozen
    assert not config.forbid_unknown_fields
    # kw_only is not in StructConfig: passing every field positionally must be refused.
    with pytest.raises(TypeError, match="positional"):
        construct: Callable[..., object] = cls
        construct(*[None] * len(cls.__struct_fields__))
    assert issubclass(cls, DomainEvent)


@pytest.mark.parametrize("event_type", sorted(EXPECTED_TYPES - NOT_ABOUT_AN_ORDER))
def test_every_order_event_carries_order_id(event_type: str) -> None:
    assert "order_id" in EVENT_TYPES[event_type].__struct_fields__


def test_every_current_type_has_a_sample_of_that_type(
    sample_factories: dict[str, Callable[[], Event]],
) -> None:
    assert set(sample_factories) == set(EVENT_TYPES)
    for event_type, factory in sample_factories.items():
        event = factory()
        assert type(event) is EVENT_TYPES[event_type]
        assert event_type_of(event) == event_type


def test_events_are_immutable(order_placed: OrderPlaced) -> None:
    with pytest.raises(AttributeError):
        order_placed.total = 0  # type: ignore[misc]
    # Tuples, not lists, so a "frozen" event cannot be changed through its items either.
    assert isinstance(order_placed.items, tuple)
    assert hash(order_placed) == hash(msgspec.structs.replace(order_placed))


@pytest.mark.parametrize(
    ("sku", "valid"),
    [
        ("SKU-1", True),
        ("a", True),
        ("mug.blue_L", True),
        ("A" * 64, True),
        ("A" * 65, False),
        ("", False),
        ("-leading-dash", False),
        ("has space", False),
        ("slash/inside", False),
    ],
)
def test_sku_pattern(sku: str, valid: bool) -> None:
    raw = msgspec.json.encode({"sku": sku, "quantity": 1, "warehouse": "wh-1"})
    if valid:
        assert msgspec.json.decode(raw, type=StockReceived).sku == sku
    else:
        with pytest.raises(msgspec.ValidationError, match=r"at `\$\.sku`"):
            msgspec.json.decode(raw, type=StockReceived)


def test_order_lines_are_plain_untagged_structs() -> None:
    line = OrderLine(sku="SKU-1", quantity=1, unit_price=5, line_total=5)
    assert msgspec.json.decode(msgspec.json.encode(line)) == {
        "sku": "SKU-1",
        "quantity": 1,
        "unit_price": 5,
        "line_total": 5,
    }


def test_event_type_of_refuses_an_untagged_struct() -> None:
    with pytest.raises(TypeError, match="OrderLine"):
        event_type_of(OrderLine(sku="S", quantity=1, unit_price=1, line_total=1))  # type: ignore[arg-type]
