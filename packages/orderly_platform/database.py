"""Postgres connection URLs as each client library wants them."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# SQLSTATEs that say "not now" rather than "not this": serialization failure and deadlock
# (the transaction was fine, its timing was not), too many connections, and the server
# shutting down or starting up. Class 08 (connection exceptions) is matched as a whole.
_TRY_AGAIN = {"40001", "40P01", "53300", "57P01", "57P02", "57P03"}


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` (what we print and store) -> SQLAlchemy's asyncpg dialect URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql+asyncpg://{rest}"


def create_engine(url: str, **options: object) -> AsyncEngine:
    """An engine on ``url``; ``options`` go to SQLAlchemy's ``create_async_engine``.

    ``pool_pre_ping`` is on unless turned off: after a Postgres restart every pooled
    connection is dead, and without the ping the first use of each fails instead of being
    replaced (one cheap round trip per checkout).
    """
    options.setdefault("pool_pre_ping", True)
    return create_async_engine(sqlalchemy_url(url), **options)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable, restarting, or asks for the
    transaction to be tried again: worth waiting out, as opposed to a bug or bad data."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return (
            exc.connection_invalidated
            or isinstance(exc, OperationalError | InterfaceError)
            or sqlstate in _TRY_AGAIN
            or str(sqlstate).startswith("08")
            or isinstance(exc.orig, OSError)
        )
    return False
