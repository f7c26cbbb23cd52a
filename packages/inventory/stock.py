"""An order's stock in Redis: reserve, commit and release, atomic per SKU, once per order.

A SKU's stock is its live catalog entry (``inventory.catalog_copy``): ``on_hand``, kept by
the catalog events, and ``reserved``, kept here; available = on_hand - reserved. Each move of
one SKU for one order is one call of ``stock.lua`` in the SKU's catalog hash slot, which
checks and moves the stock, records the order's state for the SKU, and appends the move's
event (``StockReserved``, ``StockCommitted``, ``StockReleased``) to the SKU's catalog stream,
all in one atomic step. The per-(order, SKU) record makes every move happen at most once: a
repeated request gets the record's answer, and a release that comes before its reservation
leaves a tombstone, so the late reservation holds nothing.

An order usually spans several catalog slots, so no one script can hold all its SKUs. An
order's reservation therefore reserves each SKU (sorted by SKU, in one round trip) and, when
any is short, releases the ones it holds: the order holds all its units or none. Repeating
it (a redelivered request after a crash in the middle) repeats the same calls, which the
records answer as before, and so reaches the same outcome. Meanwhile another order may see
units as reserved that are then released: it is refused where it could have had them, never
given units that are not there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import redis.asyncio as aioredis

from contracts import (
    CloudEventAttributes,
    EventEnvelope,
    OrderItem,
    StockCommitted,
    StockReleased,
    StockReserved,
    encode_envelope,
    new_envelope,
)
from contracts.values import MAX_QUANTITY
from eventbus.appender import DEFAULT_DEDUPE_TTL, DEFAULT_VERSION_TTL
from eventbus.scripts import LuaScript, ScriptCall, as_text
from eventbus.topology import CATALOG, Topology

# An order's records outlive any saga (its waits are hours at most) and a dedupe key (7
# days), so a request redelivered or requeued from the dead letters within 30 days is
# answered from them; after that it would be a new reservation.
RESERVATION_TTL: Final = 30 * 24 * 3600
# The CloudEvents source of the per-SKU stock events and of the service's answers.
INVENTORY_SOURCE: Final = "/orderly/inventory"
# Event ids are derived from what they are about, so a repeated step writes the same id.
INVENTORY_NAMESPACE: Final = uuid.UUID("5f0b8a3e-2c4d-4e7a-9a61-3b1d0c7e9f42")

STOCK_MOVE: Final = LuaScript.named("stock.lua", "inventory")

# Reasons name at most this many SKUs; ``short_skus`` names them all.
_NAMED_IN_REASON = 5


class Move(StrEnum):
    RESERVE = "reserve"
    COMMIT = "commit"
    RELEASE = "release"


class HoldState(StrEnum):
    """An order's record for one SKU, as stock.lua keeps it."""

    NONE = ""  # nothing asked yet (or the record expired)
    RESERVED = "reserved"
    REJECTED = "rejected"
    COMMITTED = "committed"
    RELEASED = "released"  # also a tombstone (quantity 0): released before any reservation


_EVENT_OF_MOVE: Final[dict[Move, type[StockReserved | StockCommitted | StockReleased]]] = {
    Move.RESERVE: StockReserved,
    Move.COMMIT: StockCommitted,
    Move.RELEASE: StockReleased,
}


class StockMoveRefused(Exception):
    """A move that cannot be done as asked; nothing moved for the SKU named."""


class NothingToCommit(StockMoveRefused):
    """A commit found SKUs that the order does not hold (never reserved, refused, released)."""

    def __init__(self, order_id: str, states: Mapping[str, HoldState]) -> None:
        described = ", ".join(
            f"{sku}: {state or 'no reservation'}" for sku, state in states.items()
        )
        super().__init__(f"order {order_id!r} holds no stock to commit for {described}")
        self.order_id = order_id
        self.states = dict(states)


@dataclass(frozen=True)
class SkuMove:
    """What one move did for one SKU of an order."""

    sku: str
    # The order's record for the SKU after the move, and its units.
    state: HoldState
    quantity: int
    # The stream entry of the stock event, when this call moved stock; None when it did not
    # (refused, or done before).
    entry_id: str | None


@dataclass(frozen=True)
class Reservation:
    """An order's reservation: all its units are held, or none of them."""

    reserved: bool
    # The SKUs that lacked stock (empty when reserved, or refused for another reason).
    short_skus: tuple[str, ...] = ()
    reason: str | None = None


def units_by_sku(items: Iterable[OrderItem]) -> dict[str, int]:
    """The order's units per SKU, sorted by SKU: an order may list one SKU twice, but it
    holds one record per SKU."""
    units: dict[str, int] = {}
    for item in items:
        units[item.sku] = units.get(item.sku, 0) + item.quantity
    return dict(sorted(units.items()))


def answer_id(order_id: str, step: str) -> str:
    """The CloudEvents id of the service's answer to an order's step (reservation, commit,
    release): the same for every redelivery of the request, so the answer is appended once."""
    return str(uuid.uuid5(INVENTORY_NAMESPACE, f"answer/{step}/{order_id}"))


def stock_event_id(move: Move, sku: str, order_id: str) -> str:
    # A SKU has no '/', so the name is unambiguous whatever the order id holds.
    return str(uuid.uuid5(INVENTORY_NAMESPACE, f"stock/{move}/{sku}/{order_id}"))


class StockLedger:
    """Moves orders' stock in Redis; see the module docstring for what it guarantees."""

    def __init__(
        self,
        redis: aioredis.Redis,
        topology: Topology,
        *,
        reservation_ttl: int = RESERVATION_TTL,
        dedupe_ttl: int = DEFAULT_DEDUPE_TTL,
        version_ttl: int = DEFAULT_VERSION_TTL,
    ) -> None:
        self.redis = redis
        self.topology = topology
        self.reservation_ttl = reservation_ttl
        self.dedupe_ttl = dedupe_ttl
        self.version_ttl = version_ttl

    async def reserve(
        self,
        order_id: str,
        items: Iterable[OrderItem],
        *,
        cause: CloudEventAttributes | None = None,
    ) -> Reservation:
        """Hold every unit of the order, or none: a short SKU releases the others."""
        units = units_by_sku(items)
        # Lines of one SKU may add up past what one stock event can carry: no stock has them.
        too_many = tuple(sku for sku, quantity in units.items() if quantity > MAX_QUANTITY)
        if too_many:
            reason = f"more than {MAX_QUANTITY} units of {_named(too_many)}"
            return Reservation(reserved=False, short_skus=too_many, reason=reason)
        moves = await self.move(Move.RESERVE, order_id, units, cause=cause)
        # Committed: a reservation repeated after its order's commit, which it preceded.
        if all(m.state in (HoldState.RESERVED, HoldState.COMMITTED) for m in moves.values()):
            return Reservation(reserved=True)
        held = {sku: m.quantity for sku, m in moves.items() if m.state == HoldState.RESERVED}
        if held:
            await self.move(Move.RELEASE, order_id, held, cause=cause)
        short = tuple(sku for sku, m in moves.items() if m.state == HoldState.REJECTED)
        if short:
            reason = f"not enough stock of {_named(short)}"
        else:
            reason = "the order's stock was released before it was reserved"
        return Reservation(reserved=False, short_skus=short, reason=reason)

    async def commit(
        self,
        order_id: str,
        items: Iterable[OrderItem],
        *,
        cause: CloudEventAttributes | None = None,
    ) -> dict[str, SkuMove]:
        """Turn the order's reservation into a sale; raises ``NothingToCommit`` for SKUs the
        order does not hold (the others are committed all the same)."""
        moves = await self.move(Move.COMMIT, order_id, units_by_sku(items), cause=cause)
        missing = {sku: m.state for sku, m in moves.items() if m.state != HoldState.COMMITTED}
        if missing:
            raise NothingToCommit(order_id, missing)
        return moves

    async def release(
        self,
        order_id: str,
        items: Iterable[OrderItem],
        *,
        cause: CloudEventAttributes | None = None,
    ) -> dict[str, SkuMove]:
        """Give back what the order holds; a SKU it never reserved gets a tombstone."""
        return await self.move(Move.RELEASE, order_id, units_by_sku(items), cause=cause)

    async def move(
        self,
        move: Move,
        order_id: str,
        units: Mapping[str, int],
        *,
        cause: CloudEventAttributes | None = None,
    ) -> dict[str, SkuMove]:
        """One ``move`` of each SKU's units for the order, in SKU order, in one round trip.

        Raises ``StockMoveRefused`` when the script refused a SKU (a quantity other than the
        one the order holds); the other SKUs' moves are done all the same.
        """
        skus = sorted(units)
        calls = [self._call(move, order_id, sku, units[sku], cause) for sku in skus]
        replies = await STOCK_MOVE.run_many(self.redis, calls)
        moves: dict[str, SkuMove] = {}
        for sku, reply in zip(skus, replies, strict=True):
            if isinstance(reply, Exception):
                raise StockMoveRefused(f"{move} of {sku} for order {order_id!r}: {reply}")
            state, quantity, entry_id = reply
            moves[sku] = SkuMove(
                sku=sku,
                state=HoldState(as_text(state)),
                quantity=int(quantity),
                entry_id=as_text(entry_id) or None,
            )
        return moves

    def _call(
        self,
        move: Move,
        order_id: str,
        sku: str,
        quantity: int,
        cause: CloudEventAttributes | None,
    ) -> ScriptCall:
        partition = self.topology.partition(CATALOG, sku)
        envelope = _stock_event(move, order_id, sku, quantity, cause)
        keys: list[Any] = [
            partition.stream,
            partition.catalog_item_key(sku),
            partition.reservation_key(order_id, sku),
            partition.dedupe_key(envelope.dedupe_key),
            partition.version_key(sku),
        ]
        args: list[Any] = [
            str(move),
            quantity,
            encode_envelope(envelope),
            self.reservation_ttl,
            self.dedupe_ttl,
            self.version_ttl,
        ]
        return keys, args


def _named(skus: tuple[str, ...]) -> str:
    """SKUs for a reason, which has a length limit; ``short_skus`` names them all."""
    more = len(skus) - _NAMED_IN_REASON
    return ", ".join(skus[:_NAMED_IN_REASON]) + (f" and {more} more" if more > 0 else "")


def _stock_event(
    move: Move, order_id: str, sku: str, quantity: int, cause: CloudEventAttributes | None
) -> EventEnvelope:
    """The event the move appends if it moves stock: encoded before the script runs, which
    appends it as it is or not at all."""
    event = _EVENT_OF_MOVE[move](sku=sku, quantity=quantity, order_id=order_id)
    return new_envelope(
        event,
        source=INVENTORY_SOURCE,
        subject=sku,
        id=stock_event_id(move, sku, order_id),
        correlation_id=None if cause is None else cause.correlationid or cause.id,
        causation_id=None if cause is None else cause.id,
    )
