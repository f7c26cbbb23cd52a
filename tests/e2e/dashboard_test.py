"""The dashboard in a real browser: headless Debian Chromium on one `orderly up`.

The page is opened once; orders are then placed through the API, and the page must show
them (their ids in the live flow, the counts by status) without being reloaded. The
screenshot is kept in $ORDERLY_TEST_ARTIFACTS (CI: dist/test-artifacts), else in the
test's temporary directory.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.orderly_stack import Stack, orderly_up

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that would reach for the network: the machines have none.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a shared 2-core machine; each wait ends as soon as the page shows it.
PAGE_WAIT_MS = 120_000


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data_dir = tmp_path_factory.mktemp("dashboard") / "stack"
    async with orderly_up(
        data_dir, name="dashboard_test", partitions=2, ORDERLY_DASHBOARD_INTERVAL_S="0.5"
    ) as up:
        yield up


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("ORDERLY_TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def count_of(page: Page, status: str) -> int:
    return int(await page.locator(f"#status-{status}").inner_text())


async def test_the_page_shows_orders_placed_after_it_opened_without_a_reload(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        await page.goto(f"{stack.endpoints['order-service']}/dashboard")
        # A mark on this very document: a reload would lose it.
        await page.evaluate("window.openedOnce = true")
        # "live" once the event stream is open; the counts once its first snapshot is in, and
        # from then on whatever is appended reaches the flow.
        await expect(page.locator("#connection")).to_have_text("live", timeout=PAGE_WAIT_MS)
        await expect(page.locator("#status-CONFIRMED")).to_have_text(
            re.compile(r"^\d+$"), timeout=PAGE_WAIT_MS
        )
        before = {s: await count_of(page, s) for s in ("CONFIRMED", "REJECTED", "PENDING")}

        api, sku = stack.api, unique("lamp")
        await api.put_catalog(sku, on_hand=10)
        confirmed = [await api.place(unique("ann"), [(sku, 1)]) for _ in range(2)]
        declined = await api.place(unique("bob"), [(sku, 1)], payment_token="tok_decline")
        for order_id in [*confirmed, declined]:
            await api.until_terminal(order_id)

        for order_id in confirmed:
            row = page.locator(f'#flow tr[data-order-id="{order_id}"][data-event="OrderConfirmed"]')
            await expect(row).to_have_count(1, timeout=PAGE_WAIT_MS)
        placed = page.locator(f'#flow tr[data-order-id="{declined}"][data-event="OrderPlaced"]')
        await expect(placed).to_have_count(1, timeout=PAGE_WAIT_MS)
        rejected = page.locator(f'#flow tr[data-order-id="{declined}"][data-event="OrderRejected"]')
        await expect(rejected).to_have_count(1, timeout=PAGE_WAIT_MS)

        # Counts come from the read model, in a later snapshot than the events' flow.
        await expect(page.locator("#status-CONFIRMED")).to_have_text(
            str(before["CONFIRMED"] + 2), timeout=PAGE_WAIT_MS
        )
        await expect(page.locator("#status-REJECTED")).to_have_text(
            str(before["REJECTED"] + 1), timeout=PAGE_WAIT_MS
        )
        await expect(page.locator("#status-PENDING")).to_have_text(
            str(before["PENDING"]), timeout=PAGE_WAIT_MS
        )
        # The rest of the page is filled from the same snapshots.
        await expect(page.locator('#streams tr[data-group="orders"]').first).to_be_visible()
        await expect(page.locator('#projections tr[data-projection="orders"]')).to_have_count(1)
        await expect(page.locator("#dead-letters")).to_have_text("0")

        assert await page.evaluate("window.openedOnce") is True
        assert problems == []
    finally:
        await page.screenshot(path=artifacts / "dashboard.png", full_page=True)
        await page.close()
