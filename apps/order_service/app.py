"""The order service's aiohttp application: routes, middleware, resources."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import sqlalchemy as sa
from aiohttp import web

from eventbus.appender import EventAppender
from eventbus.coalescing import CoalescingAppender
from eventbus.topology import Topology
from order_service.cancel_order_endpoint import post_cancel
from order_service.catalog_endpoint import put_catalog_item
from order_service.dashboard import add_dashboard
from order_service.events_endpoint import post_events
from order_service.inventory_endpoint import get_inventory
from order_service.keys import APPENDER, ENGINE, REDIS, SETTINGS, TOPOLOGY
from order_service.orders_endpoint import get_order, list_orders
from order_service.place_order_endpoint import post_order
from orderly_platform.database import create_engine
from orderly_platform.http import add_health_routes, json_errors, request_context
from orderly_platform.settings import Settings


def create_app(settings: Settings) -> web.Application:
    if not settings.api_token:
        raise ValueError("the order service needs ORDERLY_API_TOKEN for its write endpoints")
    if not settings.redis_url:
        raise ValueError("the order service needs ORDERLY_REDIS_URL")
    app = web.Application(
        middlewares=[request_context, json_errors], client_max_size=settings.max_request_bytes
    )
    app[SETTINGS] = settings
    app[TOPOLOGY] = Topology(partitions=settings.stream_partitions)
    app.cleanup_ctx.append(_redis)
    app.router.add_post("/events", post_events)
    app.router.add_put("/catalog/{sku}", put_catalog_item)
    app.router.add_get("/inventory/{sku}", get_inventory)
    app.router.add_get("/orders/{order_id}", get_order)
    app.router.add_get("/orders", list_orders)
    app.router.add_post("/orders", post_order)
    app.router.add_post("/orders/{order_id}/cancel", post_cancel)

    async def redis_answers() -> None:
        await app[REDIS].ping()

    checks = {"redis": redis_answers}
    if settings.postgres_url:
        app.cleanup_ctx.append(_postgres)

        async def postgres_answers() -> None:
            async with app[ENGINE].connect() as connection:
                await connection.execute(sa.text("SELECT 1"))

        checks["postgres"] = postgres_answers
    add_dashboard(app)  # after the Redis and Postgres resources: its feed reads both
    add_health_routes(app, checks, service="order-service")
    return app


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.redis_url is not None
    # A Redis that stops answering must turn into 503s, not requests that hang forever.
    client = aioredis.Redis.from_url(
        settings.redis_url, max_connections=256, socket_connect_timeout=5, socket_timeout=5
    )
    app[REDIS] = client
    app[APPENDER] = CoalescingAppender(EventAppender(client, app[TOPOLOGY]))
    yield
    await client.aclose()


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.postgres_url is not None
    app[ENGINE] = create_engine(settings.postgres_url, pool_size=10)
    yield
    await app[ENGINE].dispose()
