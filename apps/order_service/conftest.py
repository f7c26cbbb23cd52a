from orderly_platform.testing import redis_server

__all__ = ["redis_server"]
