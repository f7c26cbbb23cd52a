"""Typed keys for what the order service keeps on its aiohttp Application."""

from aiohttp import web
from redis.asyncio import Redis

from eventbus.coalescing import CoalescingAppender
from orderly_platform.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
# Requests share round trips to Redis (group commit); each keeps its own atomic append.
APPENDER = web.AppKey("appender", CoalescingAppender)
