"""Async engines for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

#: Parameter types the sqlite3 driver binds as they are (no SQLAlchemy type processing needed).
_PLAIN: tuple[type, ...] = (int, float, str, type(None))


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine for ``url``; SQLite gets WAL mode (readers never block the recorder)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


async def fetch_rows(connection: AsyncConnection, statement: Executable) -> Sequence[Sequence[Any]]:
    """All rows of a SELECT, in the connection's current transaction.

    On SQLite with plain parameters the statement runs on the driver (aiosqlite) and the rows
    are its tuples: no SQLAlchemy Row per row, which cost a fifth of a big read. Otherwise (and
    on PostgreSQL) SQLAlchemy runs it; its Rows are sequences too.
    """
    if connection.dialect.name == "sqlite" and isinstance(statement, ClauseElement):
        compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        given = compiled.construct_params() or {}
        names = compiled.positiontup if isinstance(compiled, SQLCompiler) else None
        values = [given[name] for name in names or ()]
        if names is not None and all(type(value) in _PLAIN for value in values):
            driver = (await connection.get_raw_connection()).driver_connection
            if driver is not None and hasattr(driver, "execute_fetchall"):
                try:
                    return list(await driver.execute_fetchall(compiled.string, values))
                except sqlite3.Error as exc:  # as SQLAlchemy would raise it
                    raise OperationalError(compiled.string, values, exc) from exc
    return list((await connection.execute(statement)).all())
