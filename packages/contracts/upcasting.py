"""The upcaster chain: reading superseded event versions as the current ones.

Stored events are never rewritten. Instead each superseded type has one upcaster that
turns its data into the next version's; ``upcast`` follows the chain until it reaches a
current type. Upcasters work on plain dicts (decoded JSON), so no old Struct has to stay
importable by consumers, and each step is a small pure function that tests can pin down.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeAlias

import msgspec

from contracts.errors import UnknownEventType, schema_violation
from contracts.events import EVENT_TYPES, OrderPlacedV1

EventData: TypeAlias = dict[str, Any]


class Upcaster(NamedTuple):
    """One step of a chain: the type it produces and how the data changes."""

    to_type: str
    transform: Callable[[EventData], EventData]


CURRENT_TYPES: Final[frozenset[str]] = frozenset(EVENT_TYPES)
"""The CloudEvents types that decoding returns; every chain ends in one of them."""


def _order_placed_v1_to_v2(data: EventData) -> EventData:
    """v1 predates multi-currency: every amount was EUR and lines carried no total."""
    # Validating against the v1 schema first reports a broken old event in its own terms
    # (e.g. a bad v1 quantity) instead of as a confusing v2 complaint about line_total.
    v1 = msgspec.convert(data, OrderPlacedV1)
    return {
        "order_id": v1.order_id,
        "customer_id": v1.customer_id,
        "items": [
            {
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.unit_price * line.quantity,
            }
            for line in v1.items
        ],
        "total": v1.total,
        "currency": "EUR",
        "payment_token": v1.payment_token,
    }


UPCASTERS: Final[Mapping[str, Upcaster]] = MappingProxyType(
    {
        "orderly.OrderPlaced.v1": Upcaster("orderly.OrderPlaced.v2", _order_placed_v1_to_v2),
    }
)
"""Superseded CloudEvents type -> the step to its successor."""


def chain_of(event_type: str) -> tuple[Upcaster, ...]:
    """The steps that lead from ``event_type`` to its current version (none if current).

    Raises ``UnknownEventType`` for a type that is neither current nor superseded.
    """
    steps: list[Upcaster] = []
    while event_type not in CURRENT_TYPES:
        step = UPCASTERS.get(event_type)
        if step is None:
            raise UnknownEventType(f"unknown event type {event_type!r}", field="$.type")
        steps.append(step)
        # A registry mistake (a cycle) must fail loudly rather than loop forever.
        if len(steps) > len(UPCASTERS):
            raise RuntimeError(f"upcaster chain through {event_type!r} has a cycle")
        event_type = step.to_type
    return tuple(steps)


def current_type_of(event_type: str) -> str:
    """The current type that ``event_type`` upcasts to, without touching any data."""
    steps = chain_of(event_type)
    return steps[-1].to_type if steps else event_type


def upcast_unchecked(event_type: str, data: EventData) -> tuple[str, EventData]:
    """``upcast`` for the codec: msgspec errors propagate so the caller can locate them."""
    for step in chain_of(event_type):
        event_type, data = step.to_type, step.transform(data)
    return event_type, data


def upcast(event_type: str, data: EventData) -> tuple[str, EventData]:
    """Bring ``data`` of ``event_type`` up to the current version of that event.

    A current type comes back unchanged. The input dict is never modified. Raises
    ``UnknownEventType`` for an unknown type and ``SchemaViolation`` (paths relative to the
    data) when old data does not even match its own version's schema.
    """
    try:
        return upcast_unchecked(event_type, data)
    except msgspec.ValidationError as exc:
        raise schema_violation(exc) from exc


def _check_registry() -> None:
    # Run at import so a broken registry fails every test run, not a late replay.
    for legacy_type in UPCASTERS:
        chain_of(legacy_type)


_check_registry()
