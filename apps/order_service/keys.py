"""Typed keys for what the order service keeps on its aiohttp Application."""

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from eventbus.coalescing import CoalescingAppender
from orderly_platform.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
# Requests share round trips to Redis (group commit); each keeps its own atomic append.
APPENDER = web.AppKey("appender", CoalescingAppender)
# The read-model database, present when ORDERLY_POSTGRES_URL is set.
ENGINE = web.AppKey("engine", AsyncEngine)
