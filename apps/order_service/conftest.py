from orderly_platform.testing import flushed_redis_client, postgres_server, redis_server

__all__ = ["flushed_redis_client", "postgres_server", "redis_server"]
