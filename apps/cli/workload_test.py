import re
from collections import Counter

from cli.workload import DECLINED_CARD, Workload
from contracts.testing import CANCELLED, CONFIRMED, DECLINED, OUT_OF_STOCK
from contracts.values import SKU_PATTERN


def test_the_mix_is_mostly_orders_that_can_confirm_and_follows_its_intent() -> None:
    workload = Workload("run1", orders=2_000, seed=3)
    orders = [workload.next_order() for _ in range(2_000)]

    shares = Counter(order.intent for order in orders)
    assert shares[CONFIRMED] > 1_400 and min(shares.values()) > 40
    for order in orders:
        skus = [sku for sku, _ in order.items]
        assert len(set(skus)) == len(skus) and all(1 <= q <= 3 for _, q in order.items)
        assert (workload.sold_out in skus) == (order.intent == OUT_OF_STOCK)
        assert (order.payment_token == DECLINED_CARD) == (order.intent == DECLINED)
        assert order.cancel == (order.intent == CANCELLED)
        assert order.customer_id.startswith("load-run1-customer-")
    # Every SKU is one the catalog accepts, and there is stock for every order to take most.
    assert all(re.match(SKU_PATTERN, sku) for sku in [*workload.in_stock, workload.sold_out])
    assert workload.on_hand >= 2_000 * 3 * 3


def test_the_same_seed_places_the_same_orders() -> None:
    def orders(seed: int) -> list[object]:
        workload = Workload("run1", orders=50, seed=seed)
        return [workload.next_order() for _ in range(50)]

    assert orders(5) == orders(5)
    assert orders(5) != orders(6)
