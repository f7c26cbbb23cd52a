from redis.crc import key_slot

from eventbus.topology import CATALOG, ORDERS, Partition, category_of, partition_of


def test_catalog_events_and_order_events_go_to_their_categories() -> None:
    assert category_of("orderly.StockReceived.v1") == CATALOG
    assert category_of("orderly.CatalogItemUpdated.v1") == CATALOG
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
    ]
    assert len({key_slot(key.encode()) for key in keys}) == 1
