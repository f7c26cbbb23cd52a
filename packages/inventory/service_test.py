"""The inventory service's handler end to end through real streams: requests appended to the
order streams, answers on them, stock moves on the catalog streams, each once."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from contracts import (
    CatalogItemUpdated,
    EventEnvelope,
    InventoryCommitRequested,
    InventoryCommitted,
    InventoryReleased,
    InventoryReleaseRequested,
    InventoryReservationRejected,
    InventoryReservationRequested,
    InventoryReserved,
    OrderConfirmed,
    OrderItem,
    StockCommitted,
    StockReleased,
    StockReserved,
    decode_envelope,
    encode_envelope,
    new_envelope,
)
from eventbus.appender import Appended, EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.topology import CATALOG, ORDERS, Topology
from inventory.catalog_copy import ON_HAND, RESERVED, catalog_item_key, catalog_side_writes
from inventory.service import INVENTORY_GROUP, InventoryService
from inventory.stock import INVENTORY_SOURCE, NothingToCommit, StockLedger, answer_id

TOPOLOGY = Topology(partitions=2)
SAGA = "/orderly/saga"


def consumer(redis: aioredis.Redis, appender: EventAppender) -> StreamConsumer:
    service = InventoryService(StockLedger(redis, TOPOLOGY), appender)
    config = ConsumerConfig(
        group=INVENTORY_GROUP, consumer="inv-1", block_ms=10, retry_backoff_s=0.01
    )
    return StreamConsumer(redis, TOPOLOGY.partitions_of(ORDERS), service, config)


async def drain(runner: StreamConsumer) -> None:
    """Run until every request is handled, retries (after their backoff) included."""
    await runner.ensure_groups()
    async with asyncio.timeout(10):
        while await runner.run_once() or await pending(runner):
            pass


async def pending(runner: StreamConsumer) -> int:
    group = runner.config.group
    return sum(
        [(await runner.redis.xpending(p.stream, group))["pending"] for p in runner.partitions]
    )


async def catalogue(appender: EventAppender, sku: str, on_hand: int) -> None:
    envelope = new_envelope(
        CatalogItemUpdated(sku=sku, price=250, currency="EUR", on_hand=on_hand),
        source="/tests",
        subject=sku,
    )
    await appender.append_batch(
        [PendingAppend(envelope, side_writes=catalog_side_writes(envelope, TOPOLOGY))]
    )


Request = (
    InventoryReservationRequested
    | InventoryCommitRequested
    | InventoryReleaseRequested
    | OrderConfirmed
)


async def request(appender: EventAppender, event: Request) -> EventEnvelope:
    """Append ``event`` as the saga would (its emit activity)."""
    envelope = new_envelope(event, source=SAGA, subject=event.order_id)
    await appender.append(envelope)
    return envelope


async def events_of(redis: aioredis.Redis, category: str, subject: str) -> list[EventEnvelope]:
    stream = TOPOLOGY.partition(category, subject).stream
    envelopes = [decode_envelope(fields[b"event"]) for _, fields in await redis.xrange(stream)]
    return [e for e in envelopes if e.subject == subject]


async def answers(redis: aioredis.Redis, order_id: str) -> list[EventEnvelope]:
    return [e for e in await events_of(redis, ORDERS, order_id) if e.source == INVENTORY_SOURCE]


async def stock(redis: aioredis.Redis, sku: str) -> tuple[int, int]:
    on_hand, reserved = await redis.hmget(catalog_item_key(TOPOLOGY, sku), ON_HAND, RESERVED)
    return int(on_hand or 0), int(reserved or 0)


async def test_requests_on_the_order_streams_are_answered_there_and_move_stock(
    redis: aioredis.Redis,
) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    await catalogue(appender, "SKU-1", 5)
    await catalogue(appender, "SKU-2", 1)
    both = (OrderItem(sku="SKU-1", quantity=2), OrderItem(sku="SKU-2", quantity=1))
    runner = consumer(redis, appender)

    asked = await request(appender, InventoryReservationRequested(order_id="o-1", items=both))
    await request(appender, InventoryReservationRequested(order_id="o-2", items=both))
    await request(appender, OrderConfirmed(order_id="o-3"))  # not a request: passed over
    await drain(runner)

    [reserved] = await answers(redis, "o-1")
    assert reserved.data == InventoryReserved(order_id="o-1", items=both)
    assert (reserved.id, reserved.causationid) == (answer_id("o-1", "reservation"), asked.id)
    assert reserved.correlationid == asked.correlationid
    [rejected] = await answers(redis, "o-2")
    assert rejected.data == InventoryReservationRejected(
        order_id="o-2", reason="not enough stock of SKU-2", short_skus=("SKU-2",)
    )
    assert await answers(redis, "o-3") == []
    assert await stock(redis, "SKU-1") == (5, 2) and await stock(redis, "SKU-2") == (1, 1)

    await request(appender, InventoryCommitRequested(order_id="o-1", items=both))
    await request(appender, InventoryReleaseRequested(order_id="o-2", items=both))
    await drain(runner)
    assert [e.data for e in await answers(redis, "o-1")][1:] == [
        InventoryCommitted(order_id="o-1", items=both)
    ]
    assert [e.data for e in await answers(redis, "o-2")][1:] == [
        InventoryReleased(order_id="o-2", items=both)
    ]
    assert await stock(redis, "SKU-1") == (3, 0) and await stock(redis, "SKU-2") == (0, 0)

    # The per-SKU moves, on the SKUs' catalog streams after their catalog updates; o-2's
    # reservation of SKU-1 was given back when SKU-2 turned out short.
    sku1 = [e.data for e in await events_of(redis, CATALOG, "SKU-1")][1:]
    assert sku1 == [
        StockReserved(sku="SKU-1", quantity=2, order_id="o-1"),
        StockReserved(sku="SKU-1", quantity=2, order_id="o-2"),
        StockReleased(sku="SKU-1", quantity=2, order_id="o-2"),
        StockCommitted(sku="SKU-1", quantity=2, order_id="o-1"),
    ]
    sku2 = await events_of(redis, CATALOG, "SKU-2")
    [held] = [e for e in sku2 if isinstance(e.data, StockReserved)]
    assert (held.causationid, held.correlationid) == (asked.id, asked.correlationid)


class CrashingAppender(EventAppender):
    """Fails the first answer it is asked to append: a service that dies after moving the
    stock and before answering."""

    crashes = 1

    async def append(
        self, envelope: EventEnvelope, *, expected_version: int | None = None
    ) -> Appended:
        if self.crashes and envelope.source == INVENTORY_SOURCE:
            self.crashes -= 1
            raise ConnectionError("the service died before its answer went out")
        return await super().append(envelope, expected_version=expected_version)


async def test_a_redelivered_request_is_answered_once(redis: aioredis.Redis) -> None:
    appender = CrashingAppender(redis, TOPOLOGY)
    await catalogue(appender, "SKU-1", 5)
    await catalogue(appender, "SKU-2", 5)
    items = (OrderItem(sku="SKU-1", quantity=2), OrderItem(sku="SKU-2", quantity=3))
    await request(appender, InventoryReservationRequested(order_id="o-1", items=items))
    runner = consumer(redis, appender)

    await drain(runner)  # fails once after the stock moved, then is retried from pending
    assert runner.stats.failed_batches == 1 and runner.stats.retried == 1
    [answer] = await answers(redis, "o-1")
    assert answer.data == InventoryReserved(order_id="o-1", items=items)
    assert await stock(redis, "SKU-1") == (5, 2) and await stock(redis, "SKU-2") == (5, 3)

    # Delivered yet again (a dead letter requeued, a takeover after a lost ack): same answer.
    [(_, [(_, fields)])] = await redis.xread(
        {TOPOLOGY.partition(ORDERS, "o-1").stream: "0-0"}, count=1
    )
    again = await InventoryService(StockLedger(redis, TOPOLOGY), appender).handle(fields[b"event"])
    assert again is not None and again.duplicate
    assert len(await answers(redis, "o-1")) == 1
    assert await stock(redis, "SKU-1") == (5, 2) and await stock(redis, "SKU-2") == (5, 3)
    assert len(await events_of(redis, CATALOG, "SKU-1")) == 2  # the update, one reservation


async def test_a_commit_of_nothing_held_fails_and_moves_nothing(redis: aioredis.Redis) -> None:
    appender = EventAppender(redis, TOPOLOGY)
    await catalogue(appender, "SKU-1", 5)
    service = InventoryService(StockLedger(redis, TOPOLOGY), appender)
    items = (OrderItem(sku="SKU-1", quantity=1),)
    envelope = new_envelope(
        InventoryCommitRequested(order_id="o-9", items=items), source=SAGA, subject="o-9"
    )
    # Failing, the request stays pending and ends in the dead letters with this error.
    with pytest.raises(NothingToCommit, match="SKU-1: no reservation"):
        await service.handle(encode_envelope(envelope))
    assert await answers(redis, "o-9") == [] and await stock(redis, "SKU-1") == (5, 0)
