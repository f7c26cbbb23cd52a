"""/metrics of every service of one `orderly up`, after real orders: the series exist and
their values add up to what the orders did.

Counters are compared with a scrape taken before the orders (the stack's own start-up made
requests and events already), so each assertion is about exactly what this test did.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from orderly_platform.scraped import Sample, samples, total
from tests.orderly_client import until
from tests.orderly_stack import Stack, orderly_up

SERVICES = (
    "order-service",
    "payment-provider",
    "projector",
    "saga-worker",
    "inventory-service",
    "payment-service",
    "notification-service",
)
# The consumer groups each service runs, whose lag it reports.
GROUPS = {
    "saga-worker": ["saga-bridge"],
    "inventory-service": ["inventory-service"],
    "notification-service": ["notifications"],
    "projector": ["archive", "orders", "inventory"],
}
HTTP_COUNT = "orderly_http_request_duration_seconds_count"


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    data_dir = tmp_path_factory.mktemp("metrics") / "stack"
    async with orderly_up(data_dir, name="metrics_test", partitions=2) as up:
        yield up


async def scrape(stack: Stack, service: str) -> list[Sample]:
    async with stack.api.session.get(f"{stack.endpoints[service]}/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        return samples(await response.text())


async def scrape_all(stack: Stack) -> dict[str, list[Sample]]:
    return {service: await scrape(stack, service) for service in SERVICES}


def on_streams(scraped: list[Sample], name: str, category: str) -> float:
    """The sum of ``name`` over the streams of ``category`` (orders, catalog)."""
    return sum(
        s.value
        for s in scraped
        if s.name == name and s.labels.get("stream", "").startswith(f"orderly:stream:{{{category}:")
    )


def grew(before: list[Sample], after: list[Sample], name: str, /, **labels: str) -> float:
    return (total(after, name, **labels) or 0) - (total(before, name, **labels) or 0)


async def test_every_service_exports_what_the_orders_did(stack: Stack) -> None:
    api = stack.api
    before = await scrape_all(stack)
    sku = f"mug-{uuid.uuid4().hex[:8]}"
    await api.put_catalog(sku, on_hand=10)
    customer = f"metrics-{uuid.uuid4().hex[:8]}"
    confirmed = [await api.place(customer, [(sku, 1)]) for _ in range(3)]
    declined = await api.place(customer, [(sku, 1)], payment_token="tok_decline_insufficient")
    out_of_stock = await api.place(customer, [(sku, 50)])
    ended = {
        order_id: await api.until_terminal(order_id)
        for order_id in [*confirmed, declined, out_of_stock]
    }
    assert [ended[o]["status"] for o in confirmed] == ["CONFIRMED"] * 3
    assert ended[declined]["status"] == ended[out_of_stock]["status"] == "REJECTED"

    # The saga worker records an outcome right after appending its terminal event: wait
    # for it there, then take every service's scrape.
    async def outcomes_recorded() -> bool:
        now = await scrape(stack, "saga-worker")
        return grew(before["saga-worker"], now, "orderly_saga_outcomes_total") >= 5

    await until(outcomes_recorded, 30, "the saga worker's outcomes")
    after = await scrape_all(stack)

    # Order service: HTTP latency per route template; its appends are its only writes.
    order_service = (before["order-service"], after["order-service"])
    post_orders = {"service": "order-service", "route": "/orders", "method": "POST"}
    assert grew(*order_service, HTTP_COUNT, **post_orders, status="202") == 5
    put_catalog = {"route": "/catalog/{sku}", "method": "PUT", "status": "202"}
    assert grew(*order_service, HTTP_COUNT, **put_catalog) == 1
    assert grew(*order_service, HTTP_COUNT, route="/orders/{order_id}", method="GET") >= 5
    assert not [s for s in after["order-service"] if sku in s.labels.get("route", "")]
    appended = "orderly_events_appended_total"
    assert (
        on_streams(after["order-service"], appended, "orders")
        - on_streams(before["order-service"], appended, "orders")
        == 5
    )  # one OrderPlaced each
    assert (
        on_streams(after["order-service"], appended, "catalog")
        - on_streams(before["order-service"], appended, "catalog")
        == 1
    )

    # Saga worker: outcomes and durations, and Temporal's own series.
    saga = (before["saga-worker"], after["saga-worker"])
    assert grew(*saga, "orderly_saga_outcomes_total", outcome="CONFIRMED") == 3
    assert grew(*saga, "orderly_saga_outcomes_total", outcome="REJECTED") == 2
    assert grew(*saga, "orderly_saga_duration_seconds_count", outcome="CONFIRMED") == 3
    assert grew(*saga, "orderly_saga_duration_seconds_sum", outcome="CONFIRMED") > 0
    assert grew(*saga, "temporal_workflow_completed_total", workflow_type="OrderSaga") >= 5
    assert grew(*saga, "orderly_events_consumed_total", group="saga-bridge") >= 5

    # Payment service: one payment event per charge attempt that got an answer (3 captures,
    # 1 decline; the out-of-stock order never reached payment), and Temporal's series.
    payments = (before["payment-service"], after["payment-service"])
    assert (
        on_streams(payments[1], appended, "orders") - on_streams(payments[0], appended, "orders")
        == 4
    )
    capture = {"activity_type": "capture_payment"}
    assert grew(*payments, "temporal_activity_execution_latency_seconds_count", **capture) >= 4

    # The provider's own HTTP API: 3 captures and 1 decline at least (retries would add).
    provider = (before["payment-provider"], after["payment-provider"])
    charges = {"service": "payment-provider", "route": "/charges", "method": "POST"}
    assert grew(*provider, HTTP_COUNT, **charges, status="201") >= 3
    assert grew(*provider, HTTP_COUNT, **charges, status="402") >= 1

    # Consumers: what each group handled, and the projector's lag from append to commit.
    for service, groups in GROUPS.items():
        for group in groups:
            consumed = grew(
                before[service], after[service], "orderly_events_consumed_total", group=group
            )
            assert consumed >= 5, (service, group)
    projector = (before["projector"], after["projector"])
    # Nothing failed: every partition's dead-letter stream (orders and catalog) is empty.
    dead_letters = [s.value for s in after["projector"] if s.name == "orderly_dead_letters"]
    assert dead_letters == [0] * 2 * stack.partitions
    assert grew(*projector, "orderly_projection_lag_seconds_count", projection="orders") >= 5
    assert grew(*projector, "orderly_projection_lag_seconds_sum", projection="orders") > 0


async def test_each_consumer_reports_its_groups_lag_until_it_has_caught_up(stack: Stack) -> None:
    def caught_up(scraped: list[Sample], group: str) -> Callable[[str], bool]:
        def zero(name: str) -> bool:
            # One series per stream the group reads (that exists: has had an event).
            values = [s.value for s in scraped if s.name == name and s.labels["group"] == group]
            return bool(values) and not any(values)

        return zero

    for service, groups in GROUPS.items():
        for group in groups:

            async def settled(service: str = service, group: str = group) -> bool:
                zero = caught_up(await scrape(stack, service), group)
                return zero("orderly_consumer_group_lag") and zero("orderly_consumer_group_pending")

            await until(settled, 60, f"{service} reporting {group} caught up on every stream")
