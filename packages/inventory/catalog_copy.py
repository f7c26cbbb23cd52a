"""The live catalog copy: each SKU's price, currency and units on hand, in Redis.

The Postgres inventory read model trails the streams by the projection lag, so it cannot
say what a SKU costs right after ``PUT /catalog/{sku}`` returned. This copy can. It is one
hash per SKU, in the hash slot of the SKU's catalog stream partition, and only the appends
of catalog events change it, as side writes in the same atomic script call as the event's
XADD: ``CatalogItemUpdated`` sets price, currency and on_hand, ``StockReceived`` adds its
quantity to on_hand. So the copy is what the SKU's stream folds to (the values the inventory
projection arrives at later), a retried event never moves it twice, and a reader sees a
catalog change as soon as the request that made it has been answered. It is the stock level
the inventory service reserves against: that service keeps a ``reserved`` field in the same
hash, moved together with ``on_hand`` by its per-SKU stock events (``inventory.stock``), which
it appends to the same stream in the same atomic step, so the rule above holds for them too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis

from contracts import CatalogItemUpdated, EventEnvelope, StockReceived
from eventbus.appender import SideWrite
from eventbus.topology import CATALOG, Topology

PRICE, CURRENCY, ON_HAND, RESERVED = "price", "currency", "on_hand", "reserved"


class CatalogItem(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    price: int
    currency: str
    on_hand: int


@functools.lru_cache(maxsize=65_536)
def catalog_item_key(topology: Topology, sku: str) -> str:
    # Cached: every StockReceived appended needs it, and a catalog has few SKUs that matter.
    return topology.partition(CATALOG, sku).catalog_item_key(sku)


def catalog_side_writes(envelope: EventEnvelope, topology: Topology) -> tuple[SideWrite, ...]:
    """What appending ``envelope`` does to the copy (nothing, for non-catalog events)."""
    event = envelope.data
    if isinstance(event, CatalogItemUpdated):
        fields: dict[str, str | int | bytes] = {
            PRICE: event.price,
            CURRENCY: event.currency,
            ON_HAND: event.on_hand,
        }
        return (SideWrite.hset(catalog_item_key(topology, event.sku), fields),)
    if isinstance(event, StockReceived):
        key = catalog_item_key(topology, event.sku)
        return (SideWrite.hincrby(key, ON_HAND, event.quantity),)
    return ()


@dataclass(frozen=True)
class CatalogLookup:
    """Reads of some SKUs' entries, queued on a pipeline that other reads may share."""

    skus: tuple[str, ...]

    @classmethod
    def queue(cls, pipe: Any, topology: Topology, skus: Iterable[str]) -> CatalogLookup:
        lookup = cls(tuple(dict.fromkeys(skus)))  # each SKU once, in first-seen order
        for sku in lookup.skus:
            pipe.hmget(catalog_item_key(topology, sku), PRICE, CURRENCY, ON_HAND)
        return lookup

    def items(self, replies: Sequence[Any]) -> dict[str, CatalogItem]:
        """The catalogued SKUs among those read, from the replies to the queued reads."""
        items = {}
        for sku, (price, currency, on_hand) in zip(self.skus, replies, strict=True):
            # Stock may arrive for a SKU before the catalog lists it: it has no price yet.
            if price is not None and currency is not None:
                items[sku] = CatalogItem(
                    sku=sku,
                    price=int(price),
                    currency=currency.decode(),
                    on_hand=int(on_hand or 0),
                )
        return items


async def read_catalog_items(
    redis: aioredis.Redis, topology: Topology, skus: Iterable[str]
) -> dict[str, CatalogItem]:
    """The catalogued SKUs among ``skus``, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        lookup = CatalogLookup.queue(pipe, topology, skus)
        replies = await pipe.execute()
    return lookup.items(replies)
