"""Real Redis, Postgres and Temporal servers run as child processes under one data dir.

`orderly up` and the test fixtures both use this, so what the tests exercise is what users run.
"""

from orderly_platform.embedded.postgres_server import PostgresServer
from orderly_platform.embedded.process import ServerFailedToStart
from orderly_platform.embedded.redis_server import RedisServer
from orderly_platform.embedded.service import PythonService
from orderly_platform.embedded.stack import EmbeddedServer, EmbeddedStack, first_to_exit
from orderly_platform.embedded.temporal_server import TemporalServer

__all__ = [
    "EmbeddedServer",
    "EmbeddedStack",
    "PostgresServer",
    "PythonService",
    "RedisServer",
    "ServerFailedToStart",
    "TemporalServer",
    "first_to_exit",
]
