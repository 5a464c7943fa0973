"""``get_session()`` for the seed document's "custom queries" and troubleshooting snippets
(``from database.connection import get_session`` becomes ``from server.charts.database import get_session``).

The store is async (aiosqlite / asyncpg); this blocking session runs each statement on the
charts' private background loop, so it works in scripts and Dash callbacks::

    with get_session() as session:
        rows = session.execute(select(BotRow).where(BotRow.status == "active"))

Entering checks the connection and raises :class:`~server.errors.StoreError` if the
database is down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Executable

from server.charts.layers.bot_integration import BotDataService, default_service
from server.errors import StoreError


class BlockingSession:
    """Runs statements on a service's engine and returns plain rows."""

    def __init__(self, service: BotDataService) -> None:
        self._service = service

    def execute(self, statement: Executable | str) -> list[Any]:
        """All rows of ``statement`` (a SQLAlchemy statement or SQL text)."""
        query = text(statement) if isinstance(statement, str) else statement
        return self._service._call_sync(_all_rows, self._service, query)

    def scalar(self, statement: Executable | str) -> Any:
        """The first column of the first row, or None."""
        rows = self.execute(statement)
        return rows[0][0] if rows else None


async def _all_rows(engine: Any, service: BotDataService, statement: Executable) -> list[Any]:
    rows, _keys = await service._rows(engine, statement)
    return rows


@contextlib.contextmanager
def get_session(database_url: str | None = None) -> Iterator[BlockingSession]:
    """A blocking session on the charts' database (or ``database_url``); checks it answers first."""
    service = BotDataService(database_url) if database_url else default_service()
    try:
        session = BlockingSession(service)
        try:
            session.execute("SELECT 1")
        except SQLAlchemyError as exc:  # pragma: no cover - _rows maps these already
            raise StoreError(f"database query failed: {exc}") from exc
        yield session
    finally:
        if database_url:
            service.close()
