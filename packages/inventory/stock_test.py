"""Reserving, committing and releasing orders' stock against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from contracts import (
    CatalogItemUpdated,
    EventEnvelope,
    OrderItem,
    StockCommitted,
    StockReleased,
    StockReserved,
    decode_envelope,
    new_envelope,
)
from contracts.values import MAX_QUANTITY
from eventbus.appender import EventAppender, PendingAppend
from eventbus.topology import CATALOG, Topology
from inventory.catalog_copy import ON_HAND, RESERVED, catalog_item_key, catalog_side_writes
from inventory.stock import (
    INVENTORY_SOURCE,
    RESERVATION_TTL,
    HoldState,
    Move,
    NothingToCommit,
    Reservation,
    StockLedger,
    StockMoveRefused,
    stock_event_id,
)
from orderly_platform.embedded import RedisServer

TOPOLOGY = Topology(partitions=4)


async def catalogue(redis: aioredis.Redis, sku: str, on_hand: int) -> None:
    """``PUT /catalog/{sku}``, as the order service appends it (with the copy's side writes)."""
    envelope = new_envelope(
        CatalogItemUpdated(sku=sku, price=100, currency="EUR", on_hand=on_hand),
        source="/tests",
        subject=sku,
    )
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(envelope, side_writes=catalog_side_writes(envelope, TOPOLOGY))]
    )


async def stock(redis: aioredis.Redis, sku: str) -> tuple[int, int]:
    """(on_hand, reserved) as the SKU's live entry holds them."""
    on_hand, reserved = await redis.hmget(catalog_item_key(TOPOLOGY, sku), ON_HAND, RESERVED)
    return int(on_hand or 0), int(reserved or 0)


async def stock_events(redis: aioredis.Redis, sku: str) -> list[EventEnvelope]:
    """The SKU's stock moves on its catalog stream, in stream order."""
    stream = TOPOLOGY.partition(CATALOG, sku).stream
    envelopes = [decode_envelope(fields[b"event"]) for _, fields in await redis.xrange(stream)]
    return [e for e in envelopes if e.subject == sku and e.source == INVENTORY_SOURCE]


def one(sku: str, quantity: int = 1) -> list[OrderItem]:
    return [OrderItem(sku=sku, quantity=quantity)]


async def test_100_concurrent_reservations_of_one_unit_hold_exactly_the_30_on_hand(
    redis: aioredis.Redis, redis_server: RedisServer
) -> None:
    await catalogue(redis, "SKU-HOT", 30)
    # Four replicas of the service, each with its own connections, 25 orders each at once.
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(4)]
    ledgers = [StockLedger(client, TOPOLOGY) for client in clients]
    watching = True
    seen: list[tuple[int, int]] = []

    async def watch() -> None:
        while watching:
            seen.append(await stock(redis, "SKU-HOT"))

    watcher = asyncio.create_task(watch())
    try:
        outcomes = await asyncio.gather(
            *(ledgers[n % 4].reserve(f"order-{n}", one("SKU-HOT")) for n in range(100))
        )
    finally:
        watching = False
        await watcher
        for client in clients:
            await client.aclose()

    assert sum(o.reserved for o in outcomes) == 30
    assert {o.short_skus for o in outcomes if not o.reserved} == {("SKU-HOT",)}
    assert await stock(redis, "SKU-HOT") == (30, 30)
    assert len(seen) > 1 and all(on_hand - reserved >= 0 for on_hand, reserved in seen)
    assert len(await stock_events(redis, "SKU-HOT")) == 30


async def test_a_repeated_reservation_holds_the_units_once(redis: aioredis.Redis) -> None:
    await catalogue(redis, "SKU-1", 10)
    ledger = StockLedger(redis, TOPOLOGY)
    first = await ledger.reserve("order-1", one("SKU-1", 3))
    again = await ledger.reserve("order-1", one("SKU-1", 3))
    assert first == again == Reservation(reserved=True)
    assert await stock(redis, "SKU-1") == (10, 3)
    [event] = await stock_events(redis, "SKU-1")
    assert event.data == StockReserved(sku="SKU-1", quantity=3, order_id="order-1")
    assert event.id == stock_event_id(Move.RESERVE, "SKU-1", "order-1")

    record = TOPOLOGY.partition(CATALOG, "SKU-1").reservation_key("order-1", "SKU-1")
    assert await redis.hgetall(record) == {b"state": b"reserved", b"quantity": b"3"}
    assert RESERVATION_TTL - 60 < await redis.ttl(record) <= RESERVATION_TTL


async def test_lines_of_one_sku_are_held_as_one(redis: aioredis.Redis) -> None:
    await catalogue(redis, "SKU-1", 3)
    ledger = StockLedger(redis, TOPOLOGY)
    items = [*one("SKU-1", 2), *one("SKU-1", 2)]
    assert await ledger.reserve("order-1", items) == Reservation(
        reserved=False, short_skus=("SKU-1",), reason="not enough stock of SKU-1"
    )
    assert await stock(redis, "SKU-1") == (3, 0)


async def test_lines_of_one_sku_beyond_what_an_event_can_carry_are_refused(
    redis: aioredis.Redis,
) -> None:
    await catalogue(redis, "SKU-1", 5_000_000)
    ledger = StockLedger(redis, TOPOLOGY)
    items = [*one("SKU-1", MAX_QUANTITY), *one("SKU-1", 1)]
    outcome = await ledger.reserve("order-1", items)
    assert outcome.short_skus == ("SKU-1",) and not outcome.reserved
    assert await stock(redis, "SKU-1") == (5_000_000, 0)


async def test_a_release_before_the_reservation_leaves_nothing_reserved(
    redis: aioredis.Redis,
) -> None:
    await catalogue(redis, "SKU-1", 10)
    ledger = StockLedger(redis, TOPOLOGY)
    released = await ledger.release("order-1", one("SKU-1", 2))
    assert released["SKU-1"].state == HoldState.RELEASED and released["SKU-1"].entry_id is None
    late = await ledger.reserve("order-1", one("SKU-1", 2))
    assert not late.reserved and late.short_skus == ()
    assert late.reason == "the order's stock was released before it was reserved"
    assert await stock(redis, "SKU-1") == (10, 0)
    assert await stock_events(redis, "SKU-1") == []


async def test_a_commit_takes_the_units_out_of_stock_once(redis: aioredis.Redis) -> None:
    await catalogue(redis, "SKU-1", 10)
    ledger = StockLedger(redis, TOPOLOGY)
    await ledger.reserve("order-1", one("SKU-1", 3))
    first = await ledger.commit("order-1", one("SKU-1", 3))
    again = await ledger.commit("order-1", one("SKU-1", 3))
    assert first["SKU-1"].entry_id is not None and again["SKU-1"].entry_id is None
    assert await stock(redis, "SKU-1") == (7, 0)
    # A release after the commit finds nothing held: the units have left.
    await ledger.release("order-1", one("SKU-1", 3))
    assert await stock(redis, "SKU-1") == (7, 0)
    assert [e.data for e in await stock_events(redis, "SKU-1")] == [
        StockReserved(sku="SKU-1", quantity=3, order_id="order-1"),
        StockCommitted(sku="SKU-1", quantity=3, order_id="order-1"),
    ]


async def test_a_release_gives_the_units_back_once(redis: aioredis.Redis) -> None:
    await catalogue(redis, "SKU-1", 4)
    ledger = StockLedger(redis, TOPOLOGY)
    await ledger.reserve("order-1", one("SKU-1", 4))
    assert not (await ledger.reserve("order-2", one("SKU-1"))).reserved
    await ledger.release("order-1", one("SKU-1", 4))
    await ledger.release("order-1", one("SKU-1", 4))
    assert await stock(redis, "SKU-1") == (4, 0)
    # The released order cannot take them again; another order can.
    assert not (await ledger.reserve("order-1", one("SKU-1", 4))).reserved
    assert (await ledger.reserve("order-3", one("SKU-1", 4))).reserved
    assert await stock(redis, "SKU-1") == (4, 4)


async def test_an_order_with_a_short_sku_holds_nothing_and_names_it(
    redis: aioredis.Redis,
) -> None:
    for sku, on_hand in (("SKU-A", 5), ("SKU-B", 1), ("SKU-C", 5)):
        await catalogue(redis, sku, on_hand)
    ledger = StockLedger(redis, TOPOLOGY)
    items = [*one("SKU-C", 1), *one("SKU-B", 2), *one("SKU-A", 2)]
    rejected = await ledger.reserve("order-1", items)
    assert rejected == Reservation(
        reserved=False, short_skus=("SKU-B",), reason="not enough stock of SKU-B"
    )
    for sku, on_hand in (("SKU-A", 5), ("SKU-B", 1), ("SKU-C", 5)):
        assert await stock(redis, sku) == (on_hand, 0)
    assert [type(e.data) for e in await stock_events(redis, "SKU-A")] == [
        StockReserved,
        StockReleased,
    ]
    # Redelivered (a crash before the answer went out): the same answer, nothing held.
    await catalogue(redis, "SKU-B", 10)
    assert await ledger.reserve("order-1", items) == rejected
    assert await stock(redis, "SKU-A") == (5, 0)
    assert await stock(redis, "SKU-B") == (10, 0)


async def test_a_commit_after_a_count_below_the_reservation_stops_at_zero(
    redis: aioredis.Redis,
) -> None:
    await catalogue(redis, "SKU-1", 5)
    ledger = StockLedger(redis, TOPOLOGY)
    await ledger.reserve("order-1", one("SKU-1", 4))
    await catalogue(redis, "SKU-1", 2)  # a stock count found fewer units than reserved
    await ledger.commit("order-1", one("SKU-1", 4))
    assert await stock(redis, "SKU-1") == (0, 0)


async def test_a_commit_of_units_the_order_does_not_hold_moves_nothing(
    redis: aioredis.Redis,
) -> None:
    await catalogue(redis, "SKU-1", 5)
    await catalogue(redis, "SKU-2", 5)
    ledger = StockLedger(redis, TOPOLOGY)
    await ledger.reserve("order-1", one("SKU-1", 1))
    with pytest.raises(NothingToCommit) as refused:
        await ledger.commit("order-1", [*one("SKU-1", 1), *one("SKU-2", 1)])
    assert refused.value.states == {"SKU-2": HoldState.NONE}
    assert await stock(redis, "SKU-2") == (5, 0)


async def test_a_quantity_other_than_the_one_held_is_refused(redis: aioredis.Redis) -> None:
    await catalogue(redis, "SKU-1", 5)
    ledger = StockLedger(redis, TOPOLOGY)
    await ledger.reserve("order-1", one("SKU-1", 2))
    with pytest.raises(StockMoveRefused, match="holds 2"):
        await ledger.release("order-1", one("SKU-1", 3))
    assert await stock(redis, "SKU-1") == (5, 2)


async def test_a_sku_the_catalog_does_not_know_is_short(redis: aioredis.Redis) -> None:
    ledger = StockLedger(redis, TOPOLOGY)
    outcome = await ledger.reserve("order-1", one("SKU-NEVER"))
    assert outcome.short_skus == ("SKU-NEVER",)
    assert not await redis.exists(catalog_item_key(TOPOLOGY, "SKU-NEVER"))
