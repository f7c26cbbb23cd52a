"""The catalog copy against a real Redis, kept by the appends of catalog events."""

import redis.asyncio as aioredis

from contracts import CatalogItemUpdated, EventEnvelope, OrderConfirmed, new_envelope
from eventbus.appender import EventAppender, PendingAppend
from eventbus.testing import stock_received
from eventbus.topology import Topology
from inventory.catalog_copy import CatalogItem, catalog_side_writes, read_catalog_items

TOPOLOGY = Topology(partitions=4)


def catalog_update(sku: str, price: int, on_hand: int, currency: str = "EUR") -> EventEnvelope:
    event = CatalogItemUpdated(sku=sku, price=price, currency=currency, on_hand=on_hand)
    return new_envelope(event, source="/tests", subject=sku)


async def append(redis: aioredis.Redis, *envelopes: EventEnvelope) -> None:
    await EventAppender(redis, TOPOLOGY).append_batch(
        [PendingAppend(e, side_writes=catalog_side_writes(e, TOPOLOGY)) for e in envelopes]
    )


async def test_the_copy_folds_updates_and_deliveries_in_stream_order(
    redis: aioredis.Redis,
) -> None:
    await append(redis, catalog_update("SKU-1", 1299, 40), stock_received("SKU-1", 5))
    await append(redis, stock_received("SKU-1", 2), catalog_update("SKU-2", 350, 0, "USD"))
    items = await read_catalog_items(redis, TOPOLOGY, ["SKU-1", "SKU-2", "SKU-1"])
    assert items == {
        "SKU-1": CatalogItem(sku="SKU-1", price=1299, currency="EUR", on_hand=47),
        "SKU-2": CatalogItem(sku="SKU-2", price=350, currency="USD", on_hand=0),
    }
    # A catalog update sets stock, as the inventory projection does: deliveries before it
    # are already counted in the level it sets.
    await append(redis, catalog_update("SKU-1", 1399, 10))
    [item] = (await read_catalog_items(redis, TOPOLOGY, ["SKU-1"])).values()
    assert (item.price, item.on_hand) == (1399, 10)


async def test_a_retried_delivery_raises_stock_once(redis: aioredis.Redis) -> None:
    delivery = stock_received("SKU-1", 5)
    await append(redis, catalog_update("SKU-1", 100, 1), delivery)
    await append(redis, delivery)
    [item] = (await read_catalog_items(redis, TOPOLOGY, ["SKU-1"])).values()
    assert item.on_hand == 6


async def test_skus_the_catalog_does_not_list_are_absent(redis: aioredis.Redis) -> None:
    await append(redis, stock_received("SKU-STOCK-ONLY", 3))
    assert await read_catalog_items(redis, TOPOLOGY, ["SKU-STOCK-ONLY", "SKU-NEVER"]) == {}


def test_other_events_leave_the_copy_alone() -> None:
    envelope = new_envelope(OrderConfirmed(order_id="o-1"), source="/tests", subject="o-1")
    assert catalog_side_writes(envelope, TOPOLOGY) == ()
