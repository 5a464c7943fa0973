"""The JSON API on the gateway's port: history, figures, bots, performance (all behind the same tokens)."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.datastructures import Headers
from websockets.http11 import Response

from publishers.events import SYMBOL_PATTERN
from server.core.filters import parse_filter_query
from server.errors import ProtocolError
from server.gateway import build_worker as history_worker
from server.gateway.auth import Principal
from server.gateway.http import Handler, Query, json_response
from server.gateway.metrics import sample
from server.history.reads import history_payload
from server.history.source import Window

if TYPE_CHECKING:
    from server.gateway.access import Access
    from server.gateway.ports import FigureSource
    from server.gateway.server import Gateway
    from server.history.recorder_state import RecorderView


#: Fields of a bot that describe the whole bot (its account, its activity on every symbol).
BOT_WIDE_FIELDS: Final = ("equity", "status", "first_seen", "last_seen", "last_status_at")


def scope_bots(bots: list[dict[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    """What ``principal`` may see of ``bots`` (each with its ``symbols``) on ``/api/bots``.

    * A principal with the ``*`` pattern sees every bot whole.
    * Otherwise only bots seen on a symbol it may read, each with ``symbols`` cut to those.
    * Bot-wide fields (account equity, status, first/last seen) are there only when it may read
      every symbol of the bot; else they are null and ``partial`` is true: they would tell
      about the symbols it may not read.
    """
    unrestricted = "*" in principal.patterns
    visible: list[dict[str, Any]] = []
    for bot in bots:
        symbols = [s for s in bot.get("symbols") or [] if isinstance(s, str)]
        if unrestricted:
            visible.append({**bot, "partial": False})
            continue
        readable = [s for s in symbols if principal.can_read(s)]
        if not readable:
            continue
        partial = len(readable) < len(symbols)
        scoped = {**bot, "symbols": readable, "partial": partial}
        if partial:
            scoped.update(dict.fromkeys(BOT_WIDE_FIELDS))
        visible.append(scoped)
    return visible


async def loaded(module: str) -> ModuleType:
    """``module``, imported in a thread the first time (pandas and Plotly take ~0.4 s to import).

    ``serve`` starts without them; imported on the event loop, the first analytics request would
    hold up every live client for that long.
    """
    found = sys.modules.get(module)
    if found is not None:
        return found
    return await asyncio.to_thread(importlib.import_module, module)


def _symbol(query: Query) -> str:
    symbol = query.params.get("symbol", "")
    if not SYMBOL_PATTERN.match(symbol):
        raise ProtocolError("bad_request", f"symbol: {symbol[:40]!r} is not a symbol")
    return symbol


def _int(query: Query, key: str, default: int, low: int, high: int) -> int:
    raw = query.params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError("bad_request", f"{key}: {raw[:40]!r} is not a whole number") from None
    if not low <= value <= high:
        raise ProtocolError("bad_request", f"{key}: must be between {low} and {high}, got {value}")
    return value


class StoreFigures:
    """Figures of history windows (the FigureSource port when there is a history store)."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points

    def __repr__(self) -> str:
        return f"StoreFigures(max_points={self.max_points})"

    async def figure_for(self, symbol: str, window: Window) -> dict[str, Any] | None:
        return await asyncio.to_thread(history_worker.symbol_figure, symbol, window.data, self.max_points)


class EngineProbe:
    """The history store's health for /healthz: one ``SELECT 1`` within 2 s."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def state(self) -> str:
        try:
            async with asyncio.timeout(2.0), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure of the database means "down" for /healthz
            return "down"
        return "up"


def recorder_metrics(recorder: RecorderView) -> list[str]:
    """The in-process recorder's /metrics lines."""
    stats = recorder.stats()
    lines = [
        "# HELP signalpush_recorder_events_total Events the recorder committed to SQL",
        "# TYPE signalpush_recorder_events_total counter",
        f"signalpush_recorder_events_total {stats.get('events_recorded', 0)}",
        "# HELP signalpush_recorder_lag_events Events published but not yet committed, per symbol",
        "# TYPE signalpush_recorder_lag_events gauge",
    ]
    lines += [
        sample("signalpush_recorder_lag_events", {"symbol": s}, lag) for s, lag in recorder.lag().items()
    ]
    lines += [
        "# HELP signalpush_recorder_unrecordable_symbols Symbols whose keys cannot be recorded now"
        " (retried with backoff; their lag keeps growing)",
        "# TYPE signalpush_recorder_unrecordable_symbols gauge",
        f"signalpush_recorder_unrecordable_symbols {stats.get('unrecordable', 0)}",
        "# HELP signalpush_recorder_invalid_names Registry names that are not symbols (skipped)",
        "# TYPE signalpush_recorder_invalid_names gauge",
        f"signalpush_recorder_invalid_names {stats.get('invalid_names', 0)}",
    ]
    last = stats.get("last_commit_ms") or 0
    age = (time.time() * 1000 - last) / 1000 if last else -1
    lines += [
        "# HELP signalpush_recorder_last_commit_age_seconds Seconds since the recorder last committed",
        "# TYPE signalpush_recorder_last_commit_age_seconds gauge",
        f"signalpush_recorder_last_commit_age_seconds {age:.3f}",
    ]
    return lines


class ApiRoutes:
    """/api/history, /api/figure, /api/bots and /api/performance (see :meth:`handlers`)."""

    def __init__(self, gateway: Gateway, access: Access, engine: AsyncEngine, figures: FigureSource) -> None:
        self.gateway = gateway
        self.access = access
        self.engine = engine
        self.figures = figures
        history = gateway.settings.history
        self.max_minutes = history.max_minutes
        self.default_minutes = history.default_minutes
        self.max_points = history.max_points
        self.max_events = history.max_events

    def __repr__(self) -> str:
        return f"ApiRoutes(max_minutes={self.max_minutes}, max_points={self.max_points})"

    def handlers(self) -> dict[str, Handler]:
        """The routes by path, for :class:`server.gateway.http.HttpRoutes`."""
        return {
            "/api/history": self._history,
            "/api/figure": self._figure,
            "/api/bots": self._bots,
            "/api/performance": self._performance,
            "/api/signal-quality": self._signal_quality,
            "/api/day": self._day,
        }

    def _require(self, query: Query, symbols: list[str] | None = None) -> Principal:
        return self.access.require(query.request, query.params, symbols)

    async def _history(self, query: Query) -> Response:
        symbol = _symbol(query)
        self._require(query, [symbol])
        minutes = _int(query, "minutes", self.default_minutes, 1, self.max_minutes)
        points = _int(query, "max_points", self.max_points, 10, self.max_points * 10)
        flt = parse_filter_query(query.params)

        async def inline() -> Any:
            return await history_payload(
                self.engine, self.gateway.redis, symbol, flt, minutes, points, self.max_events
            )

        return await self._built(history_worker.build_api_history, (symbol, flt, minutes, points), inline)

    async def _figure(self, query: Query) -> Response:
        symbol = _symbol(query)
        self._require(query, [symbol])
        minutes = _int(query, "minutes", self.default_minutes, 1, self.max_minutes)
        points = _int(query, "max_points", self.max_points, 10, self.max_points * 10)
        flt = parse_filter_query(query.params)

        async def inline() -> Any:
            window = await self.gateway.history.window(symbol, flt, minutes=minutes, max_points=points)
            figure = await self.figures.figure_for(symbol, window) or {}
            return {"symbol": symbol, "epoch": window.epoch, "to_seq": window.to_seq, **figure}

        return await self._built(history_worker.build_api_figure, (symbol, flt, minutes, points), inline)

    async def _built(
        self, build: Callable[..., Any], args: tuple[Any, ...], inline: Callable[[], Awaitable[Any]]
    ) -> Response:
        """A history body built within the history budget: in a worker process, or here (no workers)."""
        builds = self.gateway.builds
        builds.budget.admit()
        if builds.pool is not None:
            body: bytes = await builds.call(build, *args)
        else:
            async with builds.budget.slot():
                body = history_worker.encode(await inline())
        headers = Headers({"Content-Type": "application/json", "Cache-Control": "no-store"})
        return Response(200, "OK", headers, body)

    async def _day(self, query: Query) -> Response:
        """The wall's day book of a symbol (server/charts/daybook.py)."""
        symbol = _symbol(query)
        self._require(query, [symbol])
        flt = parse_filter_query(query.params)
        daybook = await loaded("server.charts.daybook")
        self.gateway.builds.budget.admit()
        async with self.gateway.builds.budget.slot():
            tz_name = query.params.get("tz")
            book = await daybook.day_book_payload(self.gateway.history, symbol, flt, tz_name=tz_name)
        return json_response(book)

    async def _bots(self, query: Query) -> Response:
        principal = self._require(query)
        # The symbols a bot was seen on within the longest history window a wall may ask for.
        since = int(time.time() * 1000) - self.max_minutes * 60_000
        payloads = await loaded("server.analytics.payloads")
        payload = await payloads.bots_payload(self.engine, since_ms=since)
        payload["bots"] = scope_bots(payload.get("bots", []), principal)
        return json_response(payload)

    def _scoped_params(self, query: Query) -> dict[str, str]:
        principal = self._require(query)
        params = dict(query.params)
        if principal.patterns != ("*",):
            # A token limited to some symbols sees analytics on those symbols only.
            asked = [s for s in params.get("symbols", "").split(",") if s]
            if not asked:
                raise ProtocolError("forbidden", "symbols: this token must name the symbols it may read")
            self._require(query, asked)
        return params

    async def _performance(self, query: Query) -> Response:
        params = self._scoped_params(query)
        payloads = await loaded("server.analytics.payloads")
        return json_response(await payloads.performance_payload(self.engine, params))

    async def _signal_quality(self, query: Query) -> Response:
        """Signal quality per bot and strategy (server/analytics/quality.py), under the history budget."""
        params = self._scoped_params(query)
        payloads = await loaded("server.analytics.payloads")
        self.gateway.builds.budget.admit()
        async with self.gateway.builds.budget.slot():
            return json_response(await payloads.signal_quality_payload(self.engine, params))
