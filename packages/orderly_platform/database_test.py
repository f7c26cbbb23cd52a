import pytest

from orderly_platform.database import sqlalchemy_url


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
def test_any_postgres_scheme_becomes_the_asyncpg_dialect(scheme: str) -> None:
    url = f"{scheme}://user:pw@db:5432/orderly"
    assert sqlalchemy_url(url) == "postgresql+asyncpg://user:pw@db:5432/orderly"


@pytest.mark.parametrize("url", ["mysql://db/orderly", "db:5432/orderly"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        sqlalchemy_url(url)
