from orderly_platform.testing import flushed_redis_client, redis_server

__all__ = ["flushed_redis_client", "redis_server"]
