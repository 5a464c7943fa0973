"""The seed document's bot data services, backed by :mod:`server.analytics.service` and the history store.

``BotDataService`` IS the analytics service (a thin subclass adding the seed's method
names); every figure comes from :mod:`server.analytics.performance`. Database failures: the
service raises :class:`~server.errors.StoreError`; the convenience functions
(``get_active_bot_signals`` ...) degrade instead: an empty DataFrame whose
``attrs["error"]`` says why, or a summary dict with ``success: False`` and ``error``.
Debug logs go to the logger named ``bot_integration``: each fetch with its filter, and each
query with its row count and time (``logging.basicConfig(level=logging.DEBUG)`` or a handler
of your own shows them). Every keyword of docs/seed/bot-integration.md works under the
seed's name (``get_bots(filter_config=...)``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from server.analytics import service as analytics
from server.analytics.payloads import frame_records
from server.analytics.queries import BotFilter
from server.analytics.service import DAY_MS, FilterLike, as_filter, make_filter
from server.analytics.sync_bridge import BackgroundLoop, blocking_twin
from server.errors import StoreError
from server.logs import RateLimitedLog

log = logging.getLogger("bot_integration")
#: A database that stays down is one warning per reason per minute, not one per call.
_warnings = RateLimitedLog(log)


@dataclass
class BotFilterConfig:
    """Which bots to show (the seed's field names); None constrains nothing."""

    bot_ids: list[int] | None = None
    bot_names: list[str] | None = None
    strategies: list[str] | None = None
    symbols: list[str] | None = None
    statuses: list[str] | None = None
    date_range: tuple[datetime | int, datetime | int] | None = None
    active_only: bool = False

    def to_bot_filter(self) -> BotFilter:
        return make_filter(
            bots=self.bot_names,
            bot_ids=self.bot_ids,
            strategies=self.strategies,
            symbols=self.symbols,
            statuses=self.statuses,
            date_range=self.date_range,
            active_only=self.active_only,
        )


def _ids(bot_ids: Sequence[int] | None) -> BotFilter:
    return BotFilter(bot_ids=None if bot_ids is None else tuple(int(i) for i in bot_ids))


class BotDataService(analytics.BotDataService):
    """The analytics service with the seed's methods (each with an ``*_async`` twin)."""

    async def _rows(self, engine: Any, statement: Any) -> tuple[list[Any], list[str]]:
        began = time.perf_counter()
        rows, keys = await super()._rows(engine, statement)
        if log.isEnabledFor(logging.DEBUG):
            took_ms = (time.perf_counter() - began) * 1000
            log.debug("query: %d rows in %.1f ms (%s)", len(rows), took_ms, self.database_url.split(":")[0])
        return rows, keys

    async def get_signals_for_bots_async(
        self,
        bot_ids: Sequence[int] | None = None,
        start_time: object = None,
        end_time: object = None,
        signal_types: Sequence[str] | None = None,
        min_confidence: float = 0.0,
    ) -> pd.DataFrame:
        """Signals of these bots (registry ids; None = all) in [start_time, end_time]."""
        log.debug(
            "signals for bots: bot_ids=%s types=%s min_confidence=%s window=%s..%s",
            bot_ids,
            signal_types,
            min_confidence,
            start_time,
            end_time,
        )
        return await self.get_signals_async(
            _ids(bot_ids), start_time, end_time, signal_types, min_confidence or None
        )

    async def get_trades_for_bots_async(
        self,
        bot_ids: Sequence[int] | None = None,
        start_time: object = None,
        end_time: object = None,
        sides: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Trades of these bots in [start_time, end_time], optionally only these sides."""
        log.debug("trades for bots: bot_ids=%s sides=%s window=%s..%s", bot_ids, sides, start_time, end_time)
        return await self.get_trades_async(_ids(bot_ids), start_time, end_time, sides)

    async def get_bot_performance_async(
        self, bot_ids: Sequence[int] | None = None, start_time: object = None, end_time: object = None
    ) -> pd.DataFrame:
        """Performance per bot (see docs/analytics.md), one row per bot, index ``bot``."""
        return await self.get_performance_async(_ids(bot_ids), start_time, end_time)

    get_signals_for_bots = blocking_twin(get_signals_for_bots_async)
    get_trades_for_bots = blocking_twin(get_trades_for_bots_async)
    get_bot_performance = blocking_twin(get_bot_performance_async)


_default: BotDataService | None = None
_default_lock = threading.Lock()


def configure(database_url: str | None = None) -> BotDataService:
    """(Re)create the service the module-level functions use; None = the configured database."""
    global _default
    with _default_lock:
        old, _default = _default, BotDataService(database_url)
    if old is not None:
        old.close()
    return _default


def configured_url() -> str | None:
    """The database URL of the module-level functions' service, once one exists."""
    with _default_lock:
        return None if _default is None else _default.database_url


def default_service() -> BotDataService:
    """The shared service of the module-level functions (created on first use)."""
    with _default_lock:
        if _default is not None:
            return _default
    return configure()


def _window(time_range: tuple[object, object] | None, days: float) -> tuple[object, object]:
    if time_range is not None:
        return time_range
    end = int(time.time() * 1000)
    return end - int(days * DAY_MS), end


def _for_symbol(bot_filter: FilterLike, symbol: str | None) -> BotFilter:
    flt = as_filter(bot_filter)
    return flt if symbol is None else dataclasses.replace(flt, symbols=(symbol,))


class BotSignalLayerIntegration:
    """Chart-side access to bot data: one symbol, a filter, a time range. Reuse one instance."""

    def __init__(self, service: BotDataService | None = None) -> None:
        self._service = service

    @property
    def service(self) -> BotDataService:
        return self._service or default_service()

    @property
    def background_loop(self) -> BackgroundLoop:
        return self.service.background_loop

    async def get_signals_for_chart_async(
        self,
        symbol: str,
        timeframe: str | None = None,
        bot_filter: FilterLike = None,
        time_range: tuple[object, object] | None = None,
        signal_types: Sequence[str] | None = None,
        min_confidence: float = 0.0,
        *,
        days: float = 7,
    ) -> pd.DataFrame:
        """Signals of ``symbol`` for a chart (``timeframe`` is accepted for compatibility: signals
        are events and are not resampled). ``time_range`` defaults to the last ``days``."""
        start, end = _window(time_range, days)
        flt = _for_symbol(bot_filter, symbol)
        log.debug("signals for chart: symbol=%s filter=%s window=%s..%s", symbol, flt, start, end)
        return await self.service.get_signals_async(flt, start, end, signal_types, min_confidence or None)

    async def get_trades_for_chart_async(
        self,
        symbol: str,
        timeframe: str | None = None,
        bot_filter: FilterLike = None,
        time_range: tuple[object, object] | None = None,
        sides: Sequence[str] | None = None,
        *,
        days: float = 7,
    ) -> pd.DataFrame:
        """Trades of ``symbol`` for a chart; ``time_range`` defaults to the last ``days``."""
        start, end = _window(time_range, days)
        flt = _for_symbol(bot_filter, symbol)
        log.debug("trades for chart: symbol=%s filter=%s window=%s..%s", symbol, flt, start, end)
        return await self.service.get_trades_async(flt, start, end, sides)

    get_signals_for_chart = blocking_twin(get_signals_for_chart_async)
    get_trades_for_chart = blocking_twin(get_trades_for_chart_async)

    def get_bot_summary_stats(
        self, bot_ids: Sequence[int] | None = None, days_back: float = 30
    ) -> dict[str, Any]:
        """Performance summary of these bots (see :func:`get_bot_performance_summary` for the shape)."""
        return _summary(
            lambda flt, s, e: self.service.performance_report(flt, s, e), _ids(bot_ids), days_back
        )


def _summary(fetch: Any, flt: BotFilter, days_back: float) -> dict[str, Any]:
    start, end = _window(None, days_back)
    began = time.perf_counter()
    try:
        report: analytics.PerformanceReport = fetch(flt, start, end)
    except StoreError as exc:
        _warnings.warning(("performance", str(exc)), f"bot performance unavailable: {exc}")
        return {
            "success": False,
            "error": str(exc),
            "days_back": days_back,
            "trade_count": 0,
            "win_rate": 0.0,
            "bot_stats": {"total_pnl": 0.0, "realized_pnl": 0.0, "unrealized_pnl": 0.0},
            "bots": [],
            "strategies": [],
        }
    overall = frame_records(report.overall)
    stats = overall[0] if overall else {}
    log.debug(
        "performance computed: filter=%s bots=%d in %.1f ms",
        flt,
        len(report.by_bot),
        (time.perf_counter() - began) * 1000,
    )
    win_rate = stats.get("win_rate")
    return {
        "success": True,
        "error": None,
        "days_back": days_back,
        "start": start,
        "end": end,
        "trade_count": int(stats.get("trade_count", 0)),
        "win_rate": float(win_rate) if win_rate is not None else 0.0,
        "bot_stats": {key: value for key, value in stats.items() if key not in ("group",)}
        | {key: 0.0 for key in ("total_pnl", "realized_pnl", "unrealized_pnl") if key not in stats},
        "bots": frame_records(report.by_bot, keep_index=True),
        "strategies": frame_records(report.by_strategy, keep_index=True),
    }


def _degraded(columns: Sequence[str], exc: StoreError) -> pd.DataFrame:
    _warnings.warning(("data", str(exc)), f"bot data unavailable: {exc}")
    frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
    frame.attrs["error"] = str(exc)
    return frame


def get_active_bot_signals(
    symbol: str, days_back: float = 7, signal_types: Sequence[str] | None = None, min_confidence: float = 0.0
) -> pd.DataFrame:
    """Signals of active bots on ``symbol`` in the last ``days_back`` days (empty + attrs["error"] if the
    database fails)."""
    try:
        return BotSignalLayerIntegration().get_signals_for_chart(
            symbol, None, BotFilter(active_only=True), None, signal_types, min_confidence, days=days_back
        )
    except StoreError as exc:
        return _degraded(analytics.SIGNAL_COLUMNS, exc)


def get_active_bot_trades(
    symbol: str, days_back: float = 7, sides: Sequence[str] | None = None
) -> pd.DataFrame:
    """Trades of active bots on ``symbol`` in the last ``days_back`` days (degrades like the signals)."""
    try:
        return BotSignalLayerIntegration().get_trades_for_chart(
            symbol, None, BotFilter(active_only=True), None, sides, days=days_back
        )
    except StoreError as exc:
        return _degraded(analytics.TRADE_COLUMNS, exc)


def get_bot_signals_by_strategy(
    strategy_name: str,
    symbol: str | None = None,
    days_back: float = 7,
    signal_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Signals of every bot running ``strategy_name`` (on ``symbol``, if given)."""
    flt = BotFilter(strategies=(strategy_name,), symbols=(symbol,) if symbol else None)
    start, end = _window(None, days_back)
    try:
        return default_service().get_signals(flt, start, end, signal_types)
    except StoreError as exc:
        return _degraded(analytics.SIGNAL_COLUMNS, exc)


def get_bot_performance_summary(bot_id: int | None = None, days_back: float = 30) -> dict[str, Any]:
    """Performance of one bot (registry id) or all, over ``days_back`` days.

    ``{"success", "error", "trade_count", "win_rate" (percent), "bot_stats": {every metric of
    docs/analytics.md: total_pnl, realized_pnl, max_drawdown, sharpe, ...}, "bots": [...],
    "strategies": [...], "days_back", "start", "end"}``; on a database failure ``success``
    is False, ``error`` says why and the figures are zeros.
    """
    flt = _ids(None if bot_id is None else [bot_id])
    return _summary(lambda f, s, e: default_service().performance_report(f, s, e), flt, days_back)


__all__ = [
    "BotDataService",
    "BotFilterConfig",
    "BotSignalLayerIntegration",
    "configure",
    "configured_url",
    "default_service",
    "get_active_bot_signals",
    "get_active_bot_trades",
    "get_bot_performance_summary",
    "get_bot_signals_by_strategy",
]
