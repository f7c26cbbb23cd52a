"""Typed keys for what the order service keeps on its aiohttp Application."""

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.coalescing import CoalescingAppender
from eventbus.topology import Topology
from orderly_platform.http import ApiError
from orderly_platform.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
# Where every event and its companion keys (catalog copy, idempotency records) live.
TOPOLOGY = web.AppKey("topology", Topology)
# Requests share round trips to Redis (group commit); each keeps its own atomic append.
APPENDER = web.AppKey("appender", CoalescingAppender)
# The read-model database, present when ORDERLY_POSTGRES_URL is set.
ENGINE = web.AppKey("engine", AsyncEngine)


def read_model_engine(request: web.Request) -> AsyncEngine:
    """The read-model database, or a 503 when this service was started without one."""
    engine = request.app.get(ENGINE)
    if engine is None:
        raise ApiError(503, "unavailable", "this order service has no read-model database")
    return engine
