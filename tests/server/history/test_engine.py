"""history.engine.fetch_rows: SQLite rows straight from the driver, as SQLAlchemy would read them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from server.history.engine import create_engine, fetch_rows
from server.history.models import SIGNALS
from tests.support.analytics_data import DAY0, fresh_store, signal


def _read(url: str, statement: Any) -> tuple[list[Any], list[tuple[Any, ...]]]:
    async def read() -> tuple[list[Any], list[tuple[Any, ...]]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                fast = list(await fetch_rows(connection, statement))
                plain = [tuple(row) for row in (await connection.execute(statement)).all()]
        finally:
            await engine.dispose()
        return fast, plain

    return asyncio.run(read())


def test_rows_equal_sqlalchemys_with_expanding_parameters(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}"
    bots = ("a", "b", "c")
    asyncio.run(fresh_store(url, [signal(DAY0 + i, bots[i % 3], "buy", 1.0 + i, 0.5) for i in range(9)]))
    s = SIGNALS.c
    statement = select(s.bot, s.ts, s.price).where(s.bot.in_(["a", "c"]), s.ts >= DAY0 + 2).order_by(s.ts)
    fast, plain = _read(url, statement)
    assert fast == plain and len(fast) == 5
    assert all(type(row) is tuple for row in fast)  # the driver's rows, no SQLAlchemy Row


def test_a_failing_statement_raises_as_sqlalchemy_would(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}"
    asyncio.run(fresh_store(url))
    with pytest.raises(SQLAlchemyError):
        _read(url, text("SELECT * FROM no_such_table"))
