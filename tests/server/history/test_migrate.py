from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.engine import Connection

from server.history.engine import create_engine
from server.history.migrate import current_revision, head_revision, upgrade_database
from server.history.models import Base, BotRow
from tests.support.fixtures_store import reset_schema


async def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_creates_exactly_the_model_tables_and_is_idempotent(database_url: str) -> None:
    await reset_schema(database_url)
    assert await current_revision(database_url) is None
    await upgrade_database(database_url)
    assert await _table_names(database_url) >= {*Base.metadata.tables, "alembic_version"}
    assert await current_revision(database_url) == head_revision()
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(insert(BotRow).values(name="b", strategy="s", first_seen=1, last_seen=2))
    await upgrade_database(database_url)  # a no-op: the data stays
    async with engine.connect() as connection:
        assert (await connection.execute(select(BotRow.name))).scalars().all() == ["b"]
    await engine.dispose()
    assert await current_revision(database_url) == head_revision()


async def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    """The Alembic head, on an empty SQLite and PostgreSQL, is the metadata made from the event schema
    (publishers/events.py SCHEMA -> server/history/models.py): types, lengths, nullability, indexes."""
    await reset_schema(database_url)
    await upgrade_database(database_url)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(database_url)
    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []
    await engine.dispose()


async def test_a_database_made_by_create_all_is_stamped_not_recreated(database_url: str) -> None:
    await reset_schema(database_url)
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
        await connection.execute(insert(BotRow).values(name="kept", strategy="s", first_seen=1, last_seen=2))
    await upgrade_database(database_url)
    assert await current_revision(database_url) == head_revision()
    async with engine.connect() as connection:
        assert (await connection.execute(select(BotRow.name))).scalars().all() == ["kept"]
    await engine.dispose()


async def test_concurrent_upgrades_all_succeed(database_url: str) -> None:
    await reset_schema(database_url)
    await asyncio.gather(*(upgrade_database(database_url) for _ in range(3)))
    assert await current_revision(database_url) == head_revision()


@pytest.mark.slow  # out of `make quicktest` (under 60 s); `make test` runs it
def test_db_upgrade_and_current_from_the_command_line(database_url: str) -> None:
    asyncio.run(reset_schema(database_url))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server.cli.main", *args, "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=60,
        )

    before = cli("db", "current")
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("none (not migrated yet")
    upgraded = cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"revision {head_revision()} (upgraded from nothing)" in upgraded.stdout
    again = cli("db", "upgrade")
    assert "already up to date" in again.stdout
    assert cli("db", "current").stdout.strip() == f"{head_revision()} (head)"


def test_the_shipped_head_constant_is_alembics_head() -> None:
    """serve opens a database at SHIPPED_HEAD without loading Alembic: it must name the real head."""
    from server.history.migrate import SHIPPED_HEAD

    assert head_revision() == SHIPPED_HEAD
