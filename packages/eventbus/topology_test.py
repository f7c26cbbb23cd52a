import pytest
from redis.crc import key_slot

from eventbus.topology import CATALOG, ORDERS, Partition, category_of, partition_of


def test_catalog_events_and_order_events_go_to_their_categories() -> None:
    assert category_of("orderly.StockReceived.v1") == CATALOG
    assert category_of("orderly.CatalogItemUpdated.v1") == CATALOG
    for stock_move in ("StockReserved", "StockCommitted", "StockReleased"):
        assert category_of(f"orderly.{stock_move}.v1") == CATALOG
    assert category_of("orderly.OrderPlaced.v2") == ORDERS
    assert category_of("orderly.PaymentCaptured.v1") == ORDERS


def test_partition_is_stable_and_spreads_aggregates() -> None:
    assert partition_of("order-42", 8) == partition_of("order-42", 8)
    used = {partition_of(f"order-{n}", 8) for n in range(1000)}
    assert used == set(range(8))


def test_every_key_of_a_partition_is_in_one_cluster_hash_slot() -> None:
    partition = Partition(ORDERS, 3)
    keys = [
        partition.stream,
        partition.dead_letters,
        partition.errors,
        partition.dedupe_key("7:/orders:abc"),
        partition.version_key("order-1"),
        partition.idempotency_key("9f86d081884c7d65"),
    ]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    catalog = Partition(CATALOG, 3)
    item = catalog.catalog_item_key("SKU-1")
    reservation = catalog.reservation_key("order-{7}:x", "SKU-1")  # braces in an id change nothing
    assert key_slot(item.encode()) == key_slot(catalog.stream.encode())
    assert key_slot(reservation.encode()) == key_slot(catalog.stream.encode())


def test_a_partition_holds_the_keys_tagged_with_its_own_hash_tag_only() -> None:
    partition = Partition(ORDERS, 3)
    assert partition.holds(partition.version_key("order-1"))
    assert partition.holds("anything:{orders:3}:{orders:4}")  # the first tag counts
    assert not partition.holds(Partition(ORDERS, 13).stream)
    assert not partition.holds(Partition(CATALOG, 3).stream)
    assert not partition.holds("orderly:{}:{orders:3}")  # an empty tag: the whole key hashes
    assert not partition.holds("orders:3")


def test_catalog_items_and_idempotency_records_live_in_their_own_categories() -> None:
    with pytest.raises(ValueError):
        Partition(ORDERS, 0).catalog_item_key("SKU-1")
    with pytest.raises(ValueError):
        Partition(CATALOG, 0).idempotency_key("abc")
    with pytest.raises(ValueError):
        Partition(ORDERS, 0).reservation_key("order-1", "SKU-1")
