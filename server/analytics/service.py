"""Bot analytics as pandas DataFrames: bots, signals, trades and performance from the history store.

:class:`BotDataService` runs ONE SQL statement per call with every filter pushed down
(:mod:`server.analytics.queries`), on SQLite or PostgreSQL, and turns the rows into
DataFrames; the metrics are the pure functions of :mod:`server.analytics.performance`. Every
method has an async form (``*_async``) and a blocking twin that works anywhere, also
in a plain Dash callback or a notebook (it runs on a private background loop).

Times given to the service may be ``int`` ms since the epoch, ``datetime`` or pandas
``Timestamp``; naive datetimes are local time, as ``datetime.now()`` makes them.
Database failures raise :class:`~server.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from server.analytics.frames import (
    BOT_COLUMNS,
    SIGNAL_COLUMNS,
    TRADE_COLUMNS,
    PerformanceReport,
    bots_frame,
    build_report,
    events_frame,
)
from server.analytics.quality import QualityRules
from server.analytics.quality_report import SignalQuality
from server.analytics.queries import (
    BotFilter,
    bot_symbols_query,
    bots_query,
    performance_query,
    signals_query,
    trades_query,
)
from server.analytics.sync_bridge import BackgroundLoop, blocking_twin, shared_loop
from server.errors import StoreError
from server.history.engine import create_engine, fetch_rows

__all__ = [
    "BOT_COLUMNS",
    "DEFAULT_DAYS",
    "SIGNAL_COLUMNS",
    "TRADE_COLUMNS",
    "BotDataService",
    "BotFilter",
    "PerformanceReport",
    "as_filter",
    "build_report",
    "make_filter",
    "to_epoch_ms",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_DAYS: Final = 30
DAY_MS: Final = 86_400_000
#: Any one query gives up after this long (a database that hangs is reported as down); the
#: configured ``database.query_timeout_s`` when the service reads the settings.
QUERY_TIMEOUT_S: Final = 3.0


def to_epoch_ms(value: object, name: str = "time") -> int | None:
    """int ms, datetime or pandas Timestamp -> ms since the epoch; None stays None.

    A naive ``datetime`` is local time (``datetime.now()``); a naive pandas ``Timestamp`` is UTC
    (pandas' meaning, and what the returned DataFrames hold): each as its ``.timestamp()`` says.
    """
    if value is None:
        return None
    if isinstance(value, datetime):  # pandas Timestamp included
        return round(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected ms since the epoch or a datetime, got {value!r}")
    return int(value)


class SupportsBotFilter(Protocol):
    """Anything that converts itself to a :class:`BotFilter` (e.g. the seed's ``BotFilterConfig``)."""

    def to_bot_filter(self) -> BotFilter: ...


FilterLike = BotFilter | SupportsBotFilter | None


def as_filter(flt: FilterLike) -> BotFilter:
    """``flt`` as a :class:`BotFilter` (None = everything)."""
    if flt is None:
        return BotFilter()
    if isinstance(flt, BotFilter):
        return flt
    return flt.to_bot_filter()


def _names(value: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def make_filter(
    *,
    bots: Sequence[str] | str | None = None,
    bot_ids: Sequence[int] | int | None = None,
    strategies: Sequence[str] | str | None = None,
    symbols: Sequence[str] | str | None = None,
    statuses: Sequence[str] | str | None = None,
    date_range: tuple[object, object] | None = None,
    active_only: bool = False,
) -> BotFilter:
    """A :class:`BotFilter` from friendly arguments (single names, lists, datetimes)."""
    ids = None if bot_ids is None else ((bot_ids,) if isinstance(bot_ids, int) else tuple(bot_ids))
    window = None
    if date_range is not None:
        start, end = to_epoch_ms(date_range[0], "date_range"), to_epoch_ms(date_range[1], "date_range")
        window = (start if start is not None else 0, end if end is not None else 2**62)
    return BotFilter(
        bots=_names(bots),
        bot_ids=ids,
        strategies=_names(strategies),
        symbols=_names(symbols),
        statuses=_names(statuses),
        date_range=window,
        active_only=active_only,
    )


def _window(
    flt: BotFilter, start: object, end: object, default_days: float | None
) -> tuple[int | None, int | None]:
    start_ms, end_ms = to_epoch_ms(start, "start"), to_epoch_ms(end, "end")
    if flt.date_range is not None:
        low, high = flt.date_range
        start_ms = low if start_ms is None else max(start_ms, low)
        end_ms = high if end_ms is None else min(end_ms, high)
    if start_ms is None and default_days is not None:
        end_ms = end_ms if end_ms is not None else int(time.time() * 1000)
        start_ms = end_ms - int(default_days * DAY_MS)
    return start_ms, end_ms


class BotDataService:
    """DataFrames of bots, signals, trades and performance; one SQL statement per call.

    ``BotDataService()`` uses the configured database (``load_settings().database.url``);
    ``BotDataService(url)`` another one; ``BotDataService(engine=engine)`` runs its async
    methods on the caller's engine (the gateway's) and its sync methods on a private engine
    to the same URL. Engines the service makes live on a private background loop; call
    :meth:`close` (or use it as a context manager) when done.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        timeout_s: float | None = None,
        loop: BackgroundLoop | None = None,
    ) -> None:
        if engine is not None:
            url = engine.url.render_as_string(hide_password=False)
        elif database_url is None:
            from server.settings import load_settings

            database = load_settings().database
            url = database.url
            timeout_s = database.query_timeout_s if timeout_s is None else timeout_s
        else:
            url = database_url
        self.database_url = url
        self.timeout_s = QUERY_TIMEOUT_S if timeout_s is None else timeout_s
        self._given_engine = engine
        self._own: AsyncEngine | None = None
        self._loop = loop or shared_loop()

    @property
    def background_loop(self) -> BackgroundLoop:
        """The loop the blocking methods run on (and the engines this service makes live on)."""
        return self._loop

    # -- plumbing -------------------------------------------------------------------------

    def _own_engine(self) -> AsyncEngine:
        if self._own is None:
            try:
                self._own = create_engine(self.database_url)
            except (OSError, ValueError) as exc:  # e.g. a SQLite folder that cannot be created
                raise StoreError(f"database unavailable: {_short(exc)}") from exc
            self._loop.on_shutdown(self._own.dispose)
        return self._own

    async def _call_async(self, impl: Callable[..., Awaitable[T]], *args: Any) -> T:
        # A blocking twin runs this on the background loop, where the caller's engine (bound to
        # the caller's loop) cannot be used: it takes this service's own engine, on that loop.
        if self._given_engine is not None and not self._loop.in_loop_thread():
            return await impl(self._given_engine, *args)
        return await self._loop.run_async(_as_coroutine(impl(self._own_engine(), *args)))

    def _call_sync(self, impl: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._loop.run(_as_coroutine(impl(self._own_engine(), *args)))

    async def _rows(self, engine: AsyncEngine, statement: Executable) -> tuple[list[Any], list[str]]:
        try:
            async with asyncio.timeout(self.timeout_s), engine.connect() as connection:
                result = await connection.execute(statement)
                return list(result.all()), list(result.keys())
        except TimeoutError:
            raise StoreError(f"database query timed out after {self.timeout_s:g}s") from None
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database query failed: {_short(exc)}") from exc

    async def _snapshot(
        self, engine: AsyncEngine, statements: Mapping[str, Executable]
    ) -> dict[str, list[Any]]:
        """The rows of each statement, read in one transaction that sees one state of the store (no
        trade without the signal the recorder committed beside it): PostgreSQL in REPEATABLE READ,
        SQLite in an explicit BEGIN (its driver begins a transaction only before a write)."""
        try:
            async with asyncio.timeout(self.timeout_s), engine.connect() as connection:
                if engine.dialect.name == "postgresql":
                    await connection.execution_options(isolation_level="REPEATABLE READ")
                elif engine.dialect.name == "sqlite":
                    await connection.exec_driver_sql("BEGIN")
                rows = {name: list(await fetch_rows(connection, q)) for name, q in statements.items()}
                await connection.rollback()
                return rows
        except TimeoutError:
            raise StoreError(f"database query timed out after {self.timeout_s:g}s") from None
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database query failed: {_short(exc)}") from exc

    def close(self) -> None:
        """Dispose the engine this service made (a given engine is the caller's to dispose)."""
        own, self._own = self._own, None
        if own is not None:
            self._loop.forget(own.dispose)
            self._loop.run(own.dispose())

    async def aclose(self) -> None:
        own, self._own = self._own, None
        if own is not None:
            self._loop.forget(own.dispose)
            await self._loop.run_async(own.dispose())

    def __enter__(self) -> BotDataService:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    async def __aenter__(self) -> BotDataService:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # -- queries --------------------------------------------------------------------------

    async def _bots(self, engine: AsyncEngine, flt: BotFilter) -> pd.DataFrame:
        rows, keys = await self._rows(engine, bots_query(flt))
        return bots_frame(rows, keys)

    async def _bot_symbols(self, engine: AsyncEngine, since_ms: int | None) -> dict[str, list[str]]:
        rows, _keys = await self._rows(engine, bot_symbols_query(since_ms))
        symbols: dict[str, list[str]] = {}
        for bot, symbol in sorted(rows):
            symbols.setdefault(bot, []).append(symbol)
        return symbols

    async def _signals(
        self, engine: AsyncEngine, flt: BotFilter, start: object, end: object, types: Any, min_conf: Any
    ) -> pd.DataFrame:
        start_ms, end_ms = _window(flt, start, end, DEFAULT_DAYS)
        statement = signals_query(flt, start_ms, end_ms, _names(types), min_conf)
        rows, keys = await self._rows(engine, statement)
        return events_frame(rows, keys, SIGNAL_COLUMNS)

    async def _trades(
        self, engine: AsyncEngine, flt: BotFilter, start: object, end: object, sides: Any
    ) -> pd.DataFrame:
        start_ms, end_ms = _window(flt, start, end, DEFAULT_DAYS)
        rows, keys = await self._rows(engine, trades_query(flt, start_ms, end_ms, _names(sides)))
        return events_frame(rows, keys, TRADE_COLUMNS)

    async def _report(
        self, engine: AsyncEngine, flt: BotFilter, start: object, end: object
    ) -> PerformanceReport:
        start_ms, end_ms = _window(flt, start, end, DEFAULT_DAYS)
        assert start_ms is not None and end_ms is not None
        began = time.perf_counter()
        with collector_paused():
            rows, _keys = await self._rows(engine, performance_query(flt, start_ms, end_ms))
            query_ms = (time.perf_counter() - began) * 1000
            if engine is self._given_engine:  # the caller's loop (the gateway): keep pandas off it
                return await asyncio.to_thread(build_report, rows, start_ms, end_ms, query_ms)
            return build_report(rows, start_ms, end_ms, query_ms)

    async def _quality(
        self, engine: AsyncEngine, flt: BotFilter, start: object, end: object, rules: QualityRules | None
    ) -> SignalQuality:
        from server.analytics.quality_queries import batch_queries, build_quality

        start_ms, end_ms = _window(flt, start, end, DEFAULT_DAYS)
        assert start_ms is not None and end_ms is not None
        began = time.perf_counter()
        coded = engine.dialect.name == "sqlite"  # few-valued names as codes (quality_rows.CODED)
        with collector_paused():
            parts = await self._snapshot(engine, batch_queries(flt, start_ms, end_ms, coded=coded))
            query_ms = (time.perf_counter() - began) * 1000
            args = (parts, rules or QualityRules(), start_ms, end_ms, query_ms)
            del parts
            if engine is self._given_engine:  # the caller's loop (the gateway): keep pandas off it
                quality = await asyncio.to_thread(functools.partial(build_quality, *args, coded=coded))
            else:
                quality = build_quality(*args, coded=coded)
            # The rows go while the collector still sleeps: alive when it wakes, its first pass
            # walked every row (40 ms on the bench).
            del args
        return quality

    # -- public API: async ----------------------------------------------------------------

    async def get_bots_async(self, filter_config: FilterLike = None) -> pd.DataFrame:
        """Registry rows of the bots ``filter_config`` selects (a BotFilter, the seed's BotFilterConfig
        or None = all): ``id, name, strategy, status, equity, first_seen, ...``."""
        log.debug("bots: filter=%s", filter_config)
        return await self._call_async(self._bots, as_filter(filter_config))

    async def get_bot_symbols_async(self, since_ms: int | None = None) -> dict[str, list[str]]:
        """Bot name -> the symbols it reported status, traded or signalled on (since ``since_ms``), sorted."""
        return await self._call_async(self._bot_symbols, since_ms)

    async def get_signals_async(
        self,
        flt: FilterLike = None,
        start: object = None,
        end: object = None,
        signal_types: Sequence[str] | None = None,
        min_confidence: float | None = None,
    ) -> pd.DataFrame:
        """Signals in [start, end] (default: the last 30 days), oldest first (:data:`SIGNAL_COLUMNS`)."""
        return await self._call_async(self._signals, as_filter(flt), start, end, signal_types, min_confidence)

    async def get_trades_async(
        self,
        flt: FilterLike = None,
        start: object = None,
        end: object = None,
        sides: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Trades in [start, end] (default: the last 30 days), oldest first; columns :data:`TRADE_COLUMNS`."""
        return await self._call_async(self._trades, as_filter(flt), start, end, sides)

    async def performance_report_async(
        self, flt: FilterLike = None, start: object = None, end: object = None
    ) -> PerformanceReport:
        """Per-bot, per-strategy and overall performance plus equity curves, from one query."""
        return await self._call_async(self._report, as_filter(flt), start, end)

    async def get_performance_async(
        self, flt: FilterLike = None, start: object = None, end: object = None
    ) -> pd.DataFrame:
        """Performance per bot (index ``bot``), see :func:`server.analytics.performance.performance_table`."""
        return (await self.performance_report_async(flt, start, end)).by_bot

    async def get_signal_quality_async(
        self,
        flt: FilterLike = None,
        start: object = None,
        end: object = None,
        rules: QualityRules | None = None,
    ) -> SignalQuality:
        """Signal quality per bot and strategy in [start, end] (default: the last 30 days):
        attribution, calibration by confidence, latency, slippage, expectancy and equity
        metrics (server/analytics/quality.py has the rules; ``.kpis`` and ``.calibration`` are
        DataFrames)."""
        return await self._call_async(self._quality, as_filter(flt), start, end, rules)

    # -- public API: blocking twins (the async methods, run on the background loop) -------

    get_bots = blocking_twin(get_bots_async)
    get_signals = blocking_twin(get_signals_async)
    get_trades = blocking_twin(get_trades_async)
    performance_report = blocking_twin(performance_report_async)
    get_performance = blocking_twin(get_performance_async)
    get_signal_quality = blocking_twin(get_signal_quality_async)


_pause_lock = threading.Lock()
_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while a report's rows are turned into frames.

    Every object made there lives until the report is built, so collecting only costs: a full
    collection in the middle took as long as the query itself. Nested and concurrent uses share
    one pause; the collector runs again when the last one ends.
    """
    global _pauses, _collector_was_enabled
    with _pause_lock:
        if _pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _collector_was_enabled:
                gc.enable()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
