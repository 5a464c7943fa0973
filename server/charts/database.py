"""``get_session()`` and the models for the custom queries of docs/seed/bot-integration.md
(``from database.connection import get_session`` becomes ``from server.charts.database import
get_session, Bot``).

The session is a real, synchronous SQLAlchemy :class:`~sqlalchemy.orm.Session`, so the seed's
pattern works as written::

    with get_session() as session:
        result = session.query(Bot).filter(Bot.status == "active").all()

It runs on a blocking engine to the history store's URL (SQLite through the standard
library's ``sqlite3``, PostgreSQL through ``psycopg``), with the configured
``database.query_timeout_s`` as connect and statement timeout. Entering checks that the
database answers and raises :class:`~server.errors.StoreError` when it does not.

Models: :data:`Bot` (one row per bot: its stable id, name, strategy, last status),
:data:`Signal`, :data:`Trade`, :data:`Candle` and :data:`BotStatus` (the event tables).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.errors import StoreError
from server.history.models import BotRow, BotStatusRow, CandleRow, SignalRow, TradeRow

#: The seed's model names.
Bot: Final = BotRow
Signal: Final = SignalRow
Trade: Final = TradeRow
Candle: Final = CandleRow
BotStatus: Final = BotStatusRow

_DRIVERS: Final = {"sqlite": "sqlite+pysqlite", "postgresql": "postgresql+psycopg"}
_engines: dict[tuple[str, float], Engine] = {}
_lock = threading.Lock()


def blocking_url(url: str) -> str:
    """The store's async URL with its blocking driver (``sqlite+aiosqlite`` -> ``sqlite+pysqlite``)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise StoreError(f"database unavailable: no blocking driver for {backend!r}")
    return parsed.set(drivername=_DRIVERS[backend]).render_as_string(hide_password=False)


def _engine(url: str, timeout_s: float) -> Engine:
    with _lock:
        engine = _engines.get((url, timeout_s))
        if engine is not None:
            return engine
        parsed = make_url(blocking_url(url))
        connect_args: dict[str, Any]
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                try:
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"database unavailable: {exc}") from exc
            connect_args = {"timeout": timeout_s}
        else:
            connect_args = {
                "connect_timeout": max(1, round(timeout_s)),
                "options": f"-c statement_timeout={int(timeout_s * 1000)}",
            }
        engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        _engines[(url, timeout_s)] = engine
        return engine


def dispose_engines() -> None:
    """Close every blocking engine ``get_session`` made (tests, shutdown)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextlib.contextmanager
def get_session(database_url: str | None = None) -> Iterator[Session]:
    """A blocking SQLAlchemy session on the history store (or ``database_url``); raises
    :class:`~server.errors.StoreError` if the database does not answer within the query timeout."""
    from server.settings import load_settings

    database = load_settings().database
    engine = _engine(database_url or _configured_url() or database.url, database.query_timeout_s)
    session = Session(engine, expire_on_commit=False)  # objects stay readable after the block
    try:
        try:
            session.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database query failed: {_short(exc)}") from exc
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _configured_url() -> str | None:
    """The URL the chart layers were configured with (``configure(url)``), if any."""
    from server.charts.layers.bot_integration import configured_url

    return configured_url()


def _short(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


__all__ = ["Bot", "BotStatus", "Candle", "Signal", "Trade", "blocking_url", "dispose_engines", "get_session"]
