"""Commands: the HTTP bodies of the public interface decode as documented."""

from collections.abc import Callable

import msgspec
import pytest

from contracts.codec import decode_command, encode_command
from contracts.commands import (
    COMMAND_TYPES,
    CancelOrder,
    CapturePayment,
    Command,
    PlaceOrder,
    RefundPayment,
    UpdateCatalogItem,
)
from contracts.values import OrderItem


def test_post_orders_body_from_the_architecture() -> None:
    raw = b'{"customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": 2}], "payment_token": "tok_visa"}'
    assert decode_command(raw, PlaceOrder) == PlaceOrder(
        customer_id="c-1", items=(OrderItem(sku="SKU-1", quantity=2),), payment_token="tok_visa"
    )


def test_put_catalog_body_from_the_architecture() -> None:
    raw = b'{"price": 1250, "currency": "EUR", "on_hand": 0}'
    assert decode_command(raw, UpdateCatalogItem) == UpdateCatalogItem(
        price=1250, currency="EUR", on_hand=0
    )


def test_cancel_reason_defaults_to_customer_request() -> None:
    assert decode_command(b'{"order_id": "o-1"}', CancelOrder).reason == "customer request"
    assert decode_command(b'{"order_id": "o-1", "reason": "late"}', CancelOrder).reason == "late"


@pytest.mark.parametrize(
    "command",
    [
        PlaceOrder(customer_id="c", items=(OrderItem(sku="S", quantity=1),), payment_token="t"),
        CancelOrder(order_id="o"),
        UpdateCatalogItem(price=0, currency="USD", on_hand=5),
        CapturePayment(
            order_id="o", amount=100, currency="EUR", payment_token="t", idempotency_key="k"
        ),
        RefundPayment(order_id="o", amount=100, currency="EUR", idempotency_key="k"),
    ],
    ids=lambda command: type(command).__name__,
)
def test_command_round_trip(command: Command) -> None:
    assert decode_command(encode_command(command), type(command)) == command
    # Commands carry no tag: the endpoint, not the body, says what the command is.
    assert "type" not in msgspec.json.decode(encode_command(command))


@pytest.mark.parametrize("cls", COMMAND_TYPES, ids=lambda cls: cls.__name__)
def test_commands_are_frozen_and_tolerant(cls: type[Command]) -> None:
    config = cls.__struct_config__
    assert config.frozen
    assert not config.forbid_unknown_fields
    with pytest.raises(TypeError, match="positional"):
        construct: Callable[..., object] = cls
        construct(*[None] * len(cls.__struct_fields__))
