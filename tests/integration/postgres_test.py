"""The embedded Postgres takes the Alembic migrations and answers SQLAlchemy queries."""

import asyncio

import asyncpg
import sqlalchemy as sa

import migrations
from orderly_platform.database import create_engine
from orderly_platform.embedded import PostgresServer


async def test_migrations_upgrade_idempotently_and_downgrade(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.url
    head = migrations.head_revision()
    assert head is not None
    assert await migrations.current_revision(url) is None

    await migrations.upgrade_async(url)
    assert await migrations.current_revision(url) == head
    await migrations.upgrade_async(url)  # a second run changes nothing
    assert await migrations.current_revision(url) == head

    await asyncio.to_thread(migrations.downgrade, url, "base")
    assert await migrations.current_revision(url) is None
    await migrations.upgrade_async(url)


async def test_sqlalchemy_core_round_trip_through_asyncpg(postgres_server: PostgresServer) -> None:
    engine = create_engine(postgres_server.url)
    metadata = sa.MetaData()
    probe = sa.Table(
        "probe",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("note", sa.Text, nullable=False),
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.execute(sa.insert(probe), [{"note": "a"}, {"note": "b"}])
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.select(probe.c.note).order_by(probe.c.id))).all()
        assert [row.note for row in rows] == ["a", "b"]
    finally:
        await engine.dispose()

    connection = await asyncpg.connect(postgres_server.url)
    try:
        assert await connection.fetchval("SELECT current_database()") == "orderly"
        assert int(await connection.fetchval("SHOW server_version_num")) >= 180000
    finally:
        await connection.close()
