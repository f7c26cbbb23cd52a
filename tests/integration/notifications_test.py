"""The notification service's handler on real Redis and Postgres: each notification logged and
published once, also when its events are delivered again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest_asyncio
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import OrderConfirmed, OrderLine, OrderPlaced, StockReceived, new_envelope
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer
from eventbus.topology import ORDERS, Topology
from notification_service.log import notification_log
from notification_service.notifier import FEED, Notifier, customer_channel
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer
from tests.databases import fresh_database

TOPOLOGY = Topology(partitions=2)


@pytest_asyncio.fixture
async def engine(postgres_server: PostgresServer) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(await fresh_database(postgres_server, "notifications"))
    yield engine
    await engine.dispose()


def placed(order_id: str, customer_id: str) -> OrderPlaced:
    line = OrderLine(sku="SKU-1", quantity=1, unit_price=1999, line_total=1999)
    return OrderPlaced(
        order_id=order_id,
        customer_id=customer_id,
        items=(line,),
        total=1999,
        currency="EUR",
        payment_token="tok",
    )


async def drain(consumer: StreamConsumer) -> None:
    await consumer.ensure_groups()
    while await consumer.run_once():
        pass


async def received(pubsub: Any, count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                messages.append(msgspec.json.decode(message["data"]))
    return messages


async def test_each_notification_is_logged_and_published_once(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    await EventAppender(redis, TOPOLOGY).append_batch(
        [
            PendingAppend(new_envelope(placed("o-1", "alice"), source="/t", subject="o-1")),
            PendingAppend(new_envelope(OrderConfirmed(order_id="o-1"), source="/t", subject="o-1")),
        ]
    )
    pubsub = redis.pubsub()
    await pubsub.subscribe(customer_channel("alice"))
    feed = redis.pubsub()
    await feed.subscribe(FEED)
    partitions = TOPOLOGY.partitions_of(ORDERS)

    def notifier(group: str) -> StreamConsumer:
        config = ConsumerConfig(group=group, consumer="n", block_ms=10)
        return StreamConsumer(redis, partitions, Notifier(redis, engine), config)

    await drain(notifier("notifications"))
    to_alice = await received(pubsub, 2)
    assert [(m["order_id"], m["kind"]) for m in to_alice] == [
        ("o-1", "placed"),
        ("o-1", "confirmed"),
    ]
    assert "19.99 EUR" in to_alice[0]["message"]
    assert await received(feed, 2) == to_alice

    # Every entry delivered once more (a second group stands in for a redelivery): nothing
    # new is logged or published.
    await drain(notifier("redelivery"))
    async with engine.connect() as connection:
        count = await connection.scalar(sa.select(sa.func.count()).select_from(notification_log))
    assert count == 2
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
    await pubsub.aclose()
    await feed.aclose()


async def test_events_customers_do_not_hear_about_are_skipped(
    redis: aioredis.Redis, engine: AsyncEngine
) -> None:
    notifier = Notifier(redis, engine)
    await EventAppender(redis, TOPOLOGY).append(
        new_envelope(StockReceived(sku="S", quantity=1, warehouse="w"), source="/t", subject="S")
    )
    # A confirmation for an order whose placement this service never saw is not logged.
    await EventAppender(redis, TOPOLOGY).append(
        new_envelope(OrderConfirmed(order_id="o-9"), source="/t", subject="o-9")
    )
    consumer = StreamConsumer(
        redis,
        TOPOLOGY.partitions_of(ORDERS),
        notifier,
        ConsumerConfig(group="notifications", consumer="n", block_ms=10),
    )
    await drain(consumer)
    async with engine.connect() as connection:
        count = await connection.scalar(sa.select(sa.func.count()).select_from(notification_log))
    assert count == 0
    assert consumer.stats.processed == 1
