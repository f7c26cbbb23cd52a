"""What `orderly load` orders: a catalog of its own and a realistic mix of orders on it.

The mix is a shop's day (contracts.testing's weights): most orders confirm, some ask for an
item that is sold out, some cards are declined, a few customers cancel right after ordering.
Each run stocks fresh SKUs, with enough of each for every order, so earlier runs do not
change its outcomes; the same seed gives the same orders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cli.api import OrderApi
from contracts.testing import CANCELLED, DECLINED, OUT_OF_STOCK, OUTCOMES, WEIGHTS

IN_STOCK_SKUS = 8
MAX_LINES, MAX_QUANTITY = 3, 3
GOOD_CARDS = ("tok_visa", "tok_mastercard", "tok_amex")
DECLINED_CARD = "tok_decline_insufficient_funds"


@dataclass(frozen=True)
class PlannedOrder:
    customer_id: str
    items: list[tuple[str, int]]
    payment_token: str
    # Cancel it as soon as it is accepted (it may still confirm first: the saga decides).
    cancel: bool
    # The outcome the mix meant; the platform's answer is what the report counts.
    intent: str


class Workload:
    def __init__(self, run: str, orders: int, seed: int | None = None) -> None:
        self.run = run
        self._rng = random.Random(seed)
        self.in_stock = [f"load-{run}-item-{n}" for n in range(IN_STOCK_SKUS)]
        self.sold_out = f"load-{run}-sold-out"
        # Enough for every order to take the most of one SKU: stock never runs out by chance.
        self.on_hand = max(1, orders) * MAX_LINES * MAX_QUANTITY
        self._customers = max(1, orders // 4)

    async def stock(self, api: OrderApi) -> None:
        """Put the run's SKUs in the catalog (read-your-writes: orders placed next see them)."""
        for n, sku in enumerate(self.in_stock):
            await api.put_catalog(sku, price=299 + 150 * n, on_hand=self.on_hand)
        await api.put_catalog(self.sold_out, price=99_900, on_hand=0)

    def next_order(self) -> PlannedOrder:
        rng = self._rng
        intent = rng.choices(OUTCOMES, WEIGHTS)[0]
        skus = rng.sample(self.in_stock, rng.randint(1, MAX_LINES))
        items = [(sku, rng.randint(1, MAX_QUANTITY)) for sku in skus]
        if intent == OUT_OF_STOCK:
            items[-1] = (self.sold_out, 1)
        return PlannedOrder(
            customer_id=f"load-{self.run}-customer-{rng.randrange(self._customers)}",
            items=items,
            payment_token=DECLINED_CARD if intent == DECLINED else rng.choice(GOOD_CARDS),
            cancel=intent == CANCELLED,
            intent=intent,
        )
