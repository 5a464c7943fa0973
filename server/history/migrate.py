"""Schema migrations (Alembic, configured in code so they work from an installed wheel).

``upgrade_database(url)`` brings a SQLite file or a PostgreSQL database to the newest
revision; it is idempotent and safe to run from several processes at once (PostgreSQL
serialises them with an advisory lock; SQLite retries once the other one is done).
A database whose tables were made by ``Base.metadata.create_all`` (no ``alembic_version``)
is stamped with the first revision instead of being re-created.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from publishers.backoff import Backoff, Retries
from publishers.options import redact_url
from server.errors import StoreError
from server.history.engine import create_engine
from server.history.models import Base

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: The newest revision shipped (tests/server/history/test_migrate.py checks it is Alembic's head).
#: A database already there is opened without loading Alembic (~0.1 s of every start).
SHIPPED_HEAD: Final = "0004"
#: The revision that creates the tables of ``models.py`` as they were first shipped.
INITIAL_REVISION: Final = "0001"
#: The tables of the first revision (a database that has them all is stamped with it).
INITIAL_TABLES: Final = frozenset({"candles", "signals", "trades", "bot_status", "bots"})
# Any constant: PostgreSQL advisory lock taken while migrating.
_PG_LOCK_KEY: Final = 0x5349474E  # "SIGN"
_ATTEMPTS: Final = 3
#: Waits between tries when another process migrates the same SQLite file at once.
_RACE_BACKOFF: Final = Backoff(first_s=0.2, max_s=1.0)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration pointing at the shipped migrations (optionally bound to a connection)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of signalpush."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> str | None:
    from alembic import command

    config = alembic_config(connection)
    before = _current(connection)
    if before is None:
        existing = set(inspect(connection).get_table_names())
        ours = set(Base.metadata.tables)
        if existing >= INITIAL_TABLES:
            # Made by create_all before migrations existed: same schema as the first revision.
            command.stamp(config, INITIAL_REVISION)
        elif ours & existing:
            raise StoreError(
                f"the database has some signalpush tables ({', '.join(sorted(ours & existing))}) "
                "but no migration history; move them away or finish creating them"
            )
    command.upgrade(config, "head")
    return before


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _in_process_lock() -> asyncio.Lock:
    # Alembic keeps its running context in module globals: one migration at a time per process.
    loop = asyncio.get_running_loop()
    if loop not in _LOCKS:
        _LOCKS[loop] = asyncio.Lock()
    return _LOCKS[loop]


async def upgrade_database(url: str) -> None:
    """Create or upgrade the history schema at ``url`` to the newest revision (idempotent)."""
    async with _in_process_lock():
        await _upgrade_database(url)


async def _at_shipped_head(url: str) -> bool:
    """The database is already at :data:`SHIPPED_HEAD` (read without Alembic)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    except (SQLAlchemyError, OSError):  # no such table yet, or unreachable: the full path says which
        return False
    finally:
        await engine.dispose()
    return version == SHIPPED_HEAD


async def _upgrade_database(url: str) -> None:
    if await _at_shipped_head(url):
        return
    engine = create_engine(url)
    retries = Retries(_RACE_BACKOFF)
    try:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        await connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                        )
                    before = await connection.run_sync(_upgrade)
                    after = await connection.run_sync(_current)
                if before != after:
                    log.info("database schema upgraded", extra={"from": before, "to": after})
                return
            except SQLAlchemyError as exc:
                # Another process creating the same SQLite tables at this moment: look again.
                if attempt == _ATTEMPTS:
                    raise StoreError(f"cannot migrate the database at {redact_url(url)}: {exc}") from exc
                await retries.wait()
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None: not migrated yet)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the database at {redact_url(url)}: {exc}") from exc
    finally:
        await engine.dispose()
