"""`orderly demo`: a few orders through every path of the saga, and how each ended."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import aiohttp
import click

from cli.api import OrderApi, order_api, unreachable
from cli.options import emit, stack_options
from cli.table import table
from orderly_platform.settings import Settings


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: str
    sku: str
    payment_token: str
    cancel: bool = False


@click.command("demo")
@click.option(
    "--timeout", type=click.FloatRange(1), default=60.0, show_default=True,
    help="Seconds to wait for each order to end.",
)  # fmt: skip
@stack_options
def demo_command(settings: Settings, as_json: bool, timeout: float) -> None:
    """Place orders that end confirmed, out of stock, declined and cancelled; print each."""
    run = uuid.uuid4().hex[:8]  # fresh SKUs each run: earlier demos hold no stock of them
    in_stock, sold_out = f"demo-mug-{run}", f"demo-rare-{run}"
    scenarios = [
        Scenario("confirmed", "CONFIRMED", in_stock, "tok_visa"),
        Scenario("out of stock", "REJECTED", sold_out, "tok_visa"),
        Scenario("declined", "REJECTED", in_stock, "tok_decline_insufficient_funds"),
        Scenario("cancelled", "CANCELLED", in_stock, "tok_visa", cancel=True),
    ]

    async def demo() -> list[dict[str, object]]:
        async with order_api(settings) as api:
            await api.put_catalog(in_stock, price=1250, on_hand=100)
            await api.put_catalog(sold_out, price=99_900, on_hand=0)
            return list(await asyncio.gather(*(_play(api, s, run, timeout) for s in scenarios)))

    try:
        results = asyncio.run(demo())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(settings, exc) from None
    lines = table(
        ("SCENARIO", "ORDER", "STATUS", "REASON"),
        [
            [str(r["scenario"]), str(r["order_id"]), str(r["status"]), str(r["reason"] or "-")]
            for r in results
        ],
    )
    emit(as_json, results, lines)
    unexpected = [r for r in results if r["status"] != r["expected"]]
    if unexpected:
        raise click.ClickException(
            "; ".join(
                f"{r['scenario']} ended {r['status']}, not {r['expected']}" for r in unexpected
            )
        )


async def _play(api: OrderApi, scenario: Scenario, run: str, timeout: float) -> dict[str, object]:
    order_id = await api.place_order(f"demo-{run}", [(scenario.sku, 1)], scenario.payment_token)
    if scenario.cancel:
        await api.cancel(order_id, "changed my mind (demo)")
    order = await api.until_terminal(order_id, timeout)
    return {
        "scenario": scenario.name,
        "order_id": order_id,
        "status": order["status"],
        "reason": order["reason"],
        "expected": scenario.expected,
    }
