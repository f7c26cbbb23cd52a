"""Where an event lives in Redis: its category, partition, stream and companion keys.

Every key of one partition shares the hash tag ``{<category>:<partition>}``, so every Lua
script touches one hash slot and the layout works unchanged on Redis Cluster. The partition
of an aggregate is a stable hash of its id, so all events of one order stay in one stream,
in order. The partition count is fixed for a deployment: changing it would move aggregates.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

ORDERS = "orders"
CATALOG = "catalog"
CATEGORIES = (ORDERS, CATALOG)

# Events about a SKU; every other event is about an order (its subject is the order id).
# The inventory service's per-SKU stock moves are among them: they must be ordered with the
# catalog updates and deliveries of their SKU.
_CATALOG_EVENTS = frozenset(
    {"CatalogItemUpdated", "StockReceived", "StockReserved", "StockCommitted", "StockReleased"}
)


def category_of(event_type: str) -> str:
    """``orderly.StockReceived.v1`` -> ``catalog``; order saga events -> ``orders``."""
    name = event_type.split(".")[-2] if event_type.count(".") >= 2 else event_type
    return CATALOG if name in _CATALOG_EVENTS else ORDERS


def partition_of(aggregate_id: str, partitions: int) -> int:
    return zlib.crc32(aggregate_id.encode()) % partitions


@dataclass(frozen=True)
class Partition:
    category: str
    index: int

    @property
    def tag(self) -> str:
        return f"{{{self.category}:{self.index}}}"

    @property
    def stream(self) -> str:
        return f"orderly:stream:{self.tag}"

    @property
    def dead_letters(self) -> str:
        return f"orderly:dlq:{self.tag}"

    @property
    def errors(self) -> str:
        """Hash of the last handler error per pending entry, read when it is dead-lettered."""
        return f"orderly:errors:{self.tag}"

    def lease_key(self, group: str) -> str:
        """Who in ``group`` owns this partition now: the one consumer allowed to read it."""
        return f"orderly:lease:{self.tag}:{group}"

    def dedupe_key(self, dedupe_key: str) -> str:
        return f"orderly:seen:{self.tag}:{dedupe_key}"

    def version_key(self, aggregate_id: str) -> str:
        return f"orderly:version:{self.tag}:{aggregate_id}"

    def catalog_item_key(self, sku: str) -> str:
        """Hash of a SKU's live catalog entry, kept by the appends to this (catalog) partition."""
        if self.category != CATALOG:
            raise ValueError(f"a catalog item lives in a catalog partition, not {self.tag}")
        return f"orderly:catalog-item:{self.tag}:{sku}"

    def reservation_key(self, order_id: str, sku: str) -> str:
        """What an order holds of a SKU (or was refused), kept beside the SKU's catalog entry
        in this (catalog) partition so that one script moves both. The SKU comes last: it
        has no ':' (its pattern forbids it), so the key names one (order, SKU) pair."""
        if self.category != CATALOG:
            raise ValueError(f"a reservation lives in a catalog partition, not {self.tag}")
        return f"orderly:reservation:{self.tag}:{order_id}:{sku}"

    def idempotency_key(self, digest: str) -> str:
        """A request's idempotency record, by the digest of its client's key (orders only)."""
        if self.category != ORDERS:
            raise ValueError(f"idempotency records live in order partitions, not {self.tag}")
        return f"orderly:idem:{self.tag}:{digest}"

    def holds(self, key: str) -> bool:
        """Whether ``key`` hashes by this partition's tag, as Redis Cluster reads hash tags.

        Only such keys may be touched by a script that runs on this partition.
        """
        start = key.find("{")
        end = key.find("}", start + 1)
        return start >= 0 and end > start + 1 and key[start : end + 1] == self.tag


@dataclass(frozen=True)
class Topology:
    partitions: int = 4

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("a category needs at least one partition")

    def partition(self, category: str, aggregate_id: str) -> Partition:
        return Partition(category, partition_of(aggregate_id, self.partitions))

    def partitions_of(self, category: str) -> list[Partition]:
        return [Partition(category, index) for index in range(self.partitions)]

    def all_partitions(self) -> list[Partition]:
        return [p for category in CATEGORIES for p in self.partitions_of(category)]
