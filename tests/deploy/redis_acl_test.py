"""The Redis ACL users that the dev overlay renders, on a real redis-server: each app's own Redis
code runs as its user (its Lua scripts included, whose commands Redis checks against the caller
too), and each user is refused what its code never does.

The ACL file is made as the Redis pod makes it: the overlay's render-acl.sh over its users.acl
with the overlay's passwords. A test-only admin user sets up and inspects.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
import redis.exceptions
from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

import projections.trimming
from contracts import (
    CatalogItemUpdated,
    EventEnvelope,
    InventoryReservationRequested,
    OrderItem,
    PaymentCaptured,
    decode_envelope,
    encode_envelope,
    new_envelope,
)
from eventbus.appender import EventAppender, PendingAppend
from eventbus.consumer import ConsumerConfig, StreamConsumer, StreamEntry
from eventbus.testing import stock_received
from eventbus.topology import CATALOG, ORDERS, Topology
from inventory.catalog_copy import catalog_side_writes
from inventory.stock import INVENTORY_SOURCE
from orderly_platform.embedded.process import free_port
from orderly_platform.embedded.redis_server import find_redis_server
from orderly_platform.settings import Settings
from projections.positions import StreamPosition
from tests.deploy.manifests import Rendered, main_container
from tests.deploy.policy_test import consumer_groups

TOPOLOGY = Topology(partitions=2)
ADMIN = "user admin on >admin-password ~* &* +@all"
TOKEN = "test-token"


def dev_passwords() -> dict[str, str]:
    secret = Rendered.of("dev").get("Secret", "orderly-redis-users")
    return {user: base64.b64decode(value).decode() for user, value in secret["data"].items()}


@pytest.fixture(scope="module")
def acl_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rendered = Rendered.of("dev")
    redis = rendered.get("StatefulSet", "orderly-redis")
    config = next(v for v in redis["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    files = rendered.config_map_data(config["configMap"]["name"])
    work = tmp_path_factory.mktemp("acl")
    (work / "secrets").mkdir()
    for user, password in dev_passwords().items():
        (work / "secrets" / user).write_text(password)
    (work / "users.acl").write_text(files["users.acl"])
    (work / "render-acl.sh").write_text(files["render-acl.sh"])
    output = work / "rendered.acl"
    subprocess.run(
        ["sh", work / "render-acl.sh", work / "users.acl", work / "secrets", output], check=True
    )
    rendered_acl = output.read_text()
    assert ">@password@" not in rendered_acl
    for password in dev_passwords().values():
        assert password not in rendered_acl  # only hashes
    output.write_text(rendered_acl + ADMIN + "\n")
    return output


@pytest.fixture(scope="module")
def redis_port(acl_file: Path) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [
            find_redis_server(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--aclfile", str(acl_file),
            "--save", "",
            "--appendonly", "no",
            "--logfile", "",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            assert process.poll() is None, "redis-server exited: is the ACL file valid?"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)  # polling a server that is starting
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        client.ping()
    except AuthenticationError:
        return True  # up, and refusing the default user
    except redis.exceptions.ConnectionError:
        return False
    finally:
        client.close()
    return True


def url(port: int, user: str) -> str:
    return f"redis://{user}:{dev_passwords()[user]}@127.0.0.1:{port}/0"


@pytest_asyncio.fixture
async def admin(redis_port: int) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"redis://admin:admin-password@127.0.0.1:{redis_port}/0")
    await client.flushall()
    await client.script_flush()  # so that each user's first call loads its scripts itself
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def as_user(redis_port: int) -> AsyncIterator[Any]:
    clients: list[aioredis.Redis] = []

    def connect(user: str) -> aioredis.Redis:
        client = aioredis.Redis.from_url(url(redis_port, user))
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()


def test_every_app_connects_as_the_user_its_manifest_names() -> None:
    rendered = Rendered.of("dev")
    for deployment in rendered.app_deployments().values():
        env = {e["name"]: e for e in main_container(deployment).get("env", [])}
        if "ORDERLY_REDIS_URL" in env:
            user = deployment["metadata"]["name"]
            assert env["ORDERLY_REDIS_URL"]["value"].startswith(
                f"redis://{user}:$(REDIS_PASSWORD)@"
            )
            assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == user


async def test_the_order_service_runs_as_its_user(redis_port: int, admin: aioredis.Redis) -> None:
    settings = Settings(
        redis_url=url(redis_port, "order-service"), api_token=TOKEN, stream_partitions=2
    )
    from order_service.app import create_app

    headers = {"Authorization": f"Bearer {TOKEN}"}
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(settings))) as client:
        assert (await client.get("/readyz")).status == 200
        item = {"price": 1250, "currency": "EUR", "on_hand": 5}
        response = await client.put("/catalog/SKU-1", json=item, headers=headers)
        assert response.status == 202, await response.text()
        stock = {
            "specversion": "1.0",
            "id": "delivery-1",
            "source": "/warehouse/berlin",
            "type": "orderly.StockReceived.v1",
            "subject": "SKU-1",
            "time": "2026-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "data": {"sku": "SKU-1", "quantity": 3, "warehouse": "berlin"},
        }
        events_headers = {**headers, "Content-Type": "application/cloudevents+json"}
        response = await client.post("/events", json=stock, headers=events_headers)
        assert response.status == 202, await response.text()
        order = {
            "customer_id": "c-1",
            "items": [{"sku": "SKU-1", "quantity": 2}],
            "payment_token": "tok_visa",
        }
        keyed = {**headers, "Idempotency-Key": "k-1"}
        first = await client.post("/orders", json=order, headers=keyed)
        assert first.status == 202, await first.text()
        again = await client.post("/orders", json=order, headers=keyed)
        order_id = (await first.json())["order_id"]
        assert (await again.json())["order_id"] == order_id
        cancel = await client.post(f"/orders/{order_id}/cancel", headers=headers)
        assert cancel.status == 202, await cancel.text()
    assert await admin.hget(catalog_item(TOPOLOGY, "SKU-1"), "on_hand") == b"8"


def catalog_item(topology: Topology, sku: str) -> str:
    return topology.partition(CATALOG, sku).catalog_item_key(sku)


async def test_the_inventory_service_runs_as_its_user(
    redis_port: int, admin: aioredis.Redis, as_user: Any
) -> None:
    from inventory_service.app import create_app

    catalogued = new_envelope(
        CatalogItemUpdated(sku="SKU-1", price=100, currency="EUR", on_hand=10),
        source="/tests",
        subject="SKU-1",
    )
    await EventAppender(as_user("order-service"), TOPOLOGY).append_batch(
        [PendingAppend(catalogued, side_writes=catalog_side_writes(catalogued, TOPOLOGY))]
    )
    settings = Settings(redis_url=url(redis_port, "inventory-service"), stream_partitions=2)
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(settings))) as client:
        request = InventoryReservationRequested(
            order_id="o-1", items=(OrderItem(sku="SKU-1", quantity=2),)
        )
        # The saga worker asks (its user appends the request).
        await EventAppender(as_user("saga-worker"), TOPOLOGY).append(
            new_envelope(request, source="/orderly/saga", subject="o-1")
        )
        stream = TOPOLOGY.partition(ORDERS, "o-1").stream
        async with asyncio.timeout(10):
            while not [e for e in await envelopes(admin, stream) if e.source == INVENTORY_SOURCE]:
                await asyncio.sleep(0.02)
        ready = await client.get("/readyz")
        assert ready.status == 200, await ready.text()
    assert await admin.hget(catalog_item(TOPOLOGY, "SKU-1"), "reserved") == b"2"


async def envelopes(redis: aioredis.Redis, stream: str) -> list[EventEnvelope]:
    return [decode_envelope(fields[b"event"]) for _, fields in await redis.xrange(stream)]


class FailsOne:
    """Handles every entry but one, which it fails until it is dead-lettered."""

    def __init__(self, poison: tuple[str, str]) -> None:
        self.poison = poison
        self.handled: list[tuple[str, str]] = []

    async def __call__(self, entries: Sequence[StreamEntry]) -> None:
        found = [(entry.partition.stream, entry.entry_id) for entry in entries]
        if self.poison in found:
            raise ValueError("poison")
        self.handled += found


@pytest.mark.parametrize(
    ("user", "group", "categories"),
    [
        (user, group, categories)
        for user, groups in consumer_groups().items()
        for group, categories in groups.items()
    ],
)
async def test_each_consumer_group_runs_as_its_apps_user(
    admin: aioredis.Redis, as_user: Any, user: str, group: str, categories: list[str]
) -> None:
    """The whole runtime: groups, leases, fenced reads and claims, retries, dead letters, acks,
    members, and handing the leases back on stop."""
    partitions = [p for category in categories for p in TOPOLOGY.partitions_of(category)]
    entries = []
    for partition in partitions:
        envelope = stock_received(f"SKU-{partition.tag}")
        entries.append(await admin.xadd(partition.stream, {"event": encode_envelope(envelope)}))
    handler = FailsOne((partitions[0].stream, entries[0].decode()))
    config = ConsumerConfig(
        group=group, consumer="c-1", block_ms=10, retry_backoff_s=0.0, max_deliveries=2
    )
    consumer = StreamConsumer(as_user(user), partitions, handler, config)
    task = asyncio.create_task(consumer.run())
    async with asyncio.timeout(10):
        while len(handler.handled) < len(entries) - 1 or not await admin.xlen(
            partitions[0].dead_letters
        ):
            await asyncio.sleep(0.02)
    consumer.stop()
    await task
    assert consumer.failure is None
    assert consumer.stats.dead_lettered == 1
    assert not await admin.exists(*(p.lease_key(group) for p in partitions))


async def test_appenders_append_where_their_code_does_only(as_user: Any) -> None:
    captured = new_envelope(
        PaymentCaptured(
            order_id="o-1", amount=100, currency="EUR", idempotency_key="k", charge_id="ch-1"
        ),
        source="/orderly/payments",
        subject="o-1",
    )
    for user in ("payment-service", "saga-worker", "inventory-service", "order-service"):
        appended = await EventAppender(as_user(user), TOPOLOGY).append(captured)
        assert appended.entry_id
    # Catalog events are the order service's (and the inventory service's stock moves).
    for user in ("payment-service", "saga-worker"):
        with pytest.raises(NoPermissionError):
            await EventAppender(as_user(user), TOPOLOGY).append(stock_received("SKU-9"))


async def test_the_projector_trims_as_its_user(
    admin: aioredis.Redis, as_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition = TOPOLOGY.partition(ORDERS, "o-1")
    ids = [await admin.xadd(partition.stream, {"event": b"x"}) for _ in range(3)]
    await admin.xgroup_create(partition.stream, "archive", id="$")
    archived = StreamPosition.parse(ids[-1].decode())

    async def checkpoint_of(*_: object) -> StreamPosition:
        return archived

    monkeypatch.setattr(projections.trimming, "checkpoint_of", checkpoint_of)
    removed = await projections.trimming.trim_streams(
        as_user("projector"), None, [partition], approximate=False  # type: ignore[arg-type]
    )
    assert removed == 3


async def test_the_notification_service_publishes_on_its_channels_only(as_user: Any) -> None:
    from notification_service.notifier import FEED, customer_channel

    notifications = as_user("notification-service")
    await notifications.publish(FEED, b"{}")
    await notifications.publish(customer_channel("c-1"), b"{}")
    with pytest.raises(NoPermissionError):
        await notifications.publish("other-channel", b"{}")


@pytest.mark.parametrize("user", sorted(set(dev_passwords()) - {"operator"}))
async def test_no_app_can_do_what_its_code_never_does(as_user: Any, user: str) -> None:
    client = as_user(user)
    stream = TOPOLOGY.partition(ORDERS, "o-1").stream
    for command in (
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
        ("CLIENT", "KILL", "ID", "999999"),
        ("SET", stream, "x"),  # overwrite a stream
        ("DEL", stream),
        ("GET", "some-other-application:key"),
    ):
        with pytest.raises(NoPermissionError):
            await client.execute_command(*command)


async def test_keda_and_the_probe_read_and_ping_only(admin: aioredis.Redis, as_user: Any) -> None:
    stream = TOPOLOGY.partition(ORDERS, "o-1").stream
    await admin.xgroup_create(stream, "g", id="$", mkstream=True)
    keda = as_user("keda")
    assert await keda.xinfo_groups(stream)
    with pytest.raises(NoPermissionError):
        await keda.xadd(stream, {"event": b"x"})
    probe = as_user("healthcheck")
    assert await probe.ping()
    with pytest.raises(NoPermissionError):
        await probe.xlen(stream)


async def test_the_default_user_is_off(redis_port: int) -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("passwords", "error"),
    [
        ({"order-service": "ok"}, "no password for Redis user projector"),
        ({user: "p@ss/word" for user in dev_passwords()}, "letters, digits"),
    ],
)
def test_the_acl_is_not_rendered_with_a_missing_or_unsafe_password(
    tmp_path: Path, passwords: dict[str, str], error: str
) -> None:
    rendered = Rendered.of("dev")
    files = rendered.config_map_data("orderly-redis-config")
    (tmp_path / "secrets").mkdir()
    for user, password in passwords.items():
        (tmp_path / "secrets" / user).write_text(password)
    for name in ("users.acl", "render-acl.sh"):
        (tmp_path / name).write_text(files[name])
    result = subprocess.run(
        [
            "sh",
            tmp_path / "render-acl.sh",
            tmp_path / "users.acl",
            tmp_path / "secrets",
            tmp_path / "out.acl",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert error in result.stderr
    assert not (tmp_path / "out.acl").exists()
