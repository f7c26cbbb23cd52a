"""Real servers for the cross-package tests, started through the embedded stack."""

import socket
from collections.abc import Iterator

import pytest

from orderly_platform.testing import (
    flushed_redis_client,
    postgres_server,
    redis_server,
    temporal_server,
)

__all__ = [
    "flushed_redis_client",
    "postgres_server",
    "redis_server",
    "refusing_port",
    "temporal_server",
]


@pytest.fixture(scope="module")
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
