"""Postgres connection URLs as each client library wants them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` (what we print and store) -> SQLAlchemy's asyncpg dialect URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql+asyncpg://{rest}"


def create_engine(url: str, **options: object) -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), **options)
