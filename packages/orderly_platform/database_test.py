import pytest

from orderly_platform.database import create_engine, sqlalchemy_url


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_any_postgres_scheme_becomes_the_asyncpg_dialect(scheme: str) -> None:
    url = f"{scheme}://user:pw@db:5432/orderly"
    assert sqlalchemy_url(url) == "postgresql+asyncpg://user:pw@db:5432/orderly"


@pytest.mark.parametrize("url", ["mysql://db/orderly", "db:5432/orderly"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        sqlalchemy_url(url)


async def test_engines_ping_a_pooled_connection_before_use_unless_told_not_to() -> None:
    # A pooled connection is dead after a Postgres restart: the ping replaces it unseen.
    url = "postgresql://user:pw@db:5432/orderly"  # nothing connects: no server needed
    pinging, trusting = create_engine(url), create_engine(url, pool_pre_ping=False)
    try:
        assert pinging.sync_engine.pool._pre_ping
        assert not trusting.sync_engine.pool._pre_ping
    finally:
        await pinging.dispose()
        await trusting.dispose()
