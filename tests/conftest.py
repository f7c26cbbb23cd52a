"""Real servers for the cross-package tests, started through the embedded stack."""

from orderly_platform.testing import (
    flushed_redis_client,
    postgres_server,
    redis_server,
    temporal_server,
)

__all__ = ["flushed_redis_client", "postgres_server", "redis_server", "temporal_server"]
