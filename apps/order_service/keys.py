"""Typed keys for what the order service keeps on its aiohttp Application."""

from aiohttp import web
from redis.asyncio import Redis

from eventbus.appender import EventAppender
from orderly_platform.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
APPENDER = web.AppKey("appender", EventAppender)
