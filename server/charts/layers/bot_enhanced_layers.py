"""Chart layers that fetch their bot data themselves (the seed document's enhanced layers).

``layer.render(fig, market_data, symbol="BTCUSDT")`` fetches signals (or trades) of the
configured bots for the last ``time_window_days`` and draws them; ``signals=``/``trades=``
draws given data instead (also when ``auto_fetch_data`` is off). If the database fails,
the layer draws nothing, logs a warning on the ``bot_enhanced_layers`` logger and keeps
the reason in ``layer.last_error``; ``render`` still returns the figure. Every fetching
call has an ``*_async`` twin.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from server.analytics.queries import BotFilter
from server.analytics.service import as_filter
from server.analytics.sync_bridge import BackgroundLoop, blocking_twin
from server.charts.layers.bot_integration import (
    BotFilterConfig,
    BotSignalLayerIntegration,
    default_service,
)
from server.charts.layers.signals import (
    FrameLike,
    SignalLayerConfig,
    TradeExecutionLayer,
    TradeLayerConfig,
    TradingSignalLayer,
    add_traces,
)
from server.errors import StoreError
from server.logs import RateLimitedLog

log = logging.getLogger("bot_enhanced_layers")
#: A database that stays down is one warning per reason per minute, not one per render.
_warnings = RateLimitedLog(log)


@dataclass
class BotSignalLayerConfig(SignalLayerConfig):
    """A signal layer that fetches from the bot store."""

    name: str = "Bot Signals"
    auto_fetch_data: bool = True
    time_window_days: float = 7
    active_bots_only: bool = True
    bot_filter: BotFilterConfig | BotFilter | None = None
    symbol: str | None = None


@dataclass
class BotTradeLayerConfig(TradeLayerConfig):
    """A trade layer that fetches from the bot store."""

    name: str = "Bot Trades"
    auto_fetch_data: bool = True
    time_window_days: float = 7
    active_bots_only: bool = True
    bot_filter: BotFilterConfig | BotFilter | None = None
    symbol: str | None = None


def _layer_filter(bot_filter: BotFilterConfig | BotFilter | None, active_only: bool) -> BotFilter:
    flt = as_filter(bot_filter)
    return dataclasses.replace(flt, active_only=True) if active_only else flt


class _Fetching:
    """What both bot layers share: the integration, the last fetch's error."""

    def __init__(self, integration: BotSignalLayerIntegration | None) -> None:
        self.integration = integration or BotSignalLayerIntegration()
        self.last_error: str | None = None

    @property
    def background_loop(self) -> BackgroundLoop:
        return self.integration.background_loop

    def _failed(self, what: str, exc: StoreError) -> pd.DataFrame:
        self.last_error = str(exc)
        _warnings.warning((what, str(exc)), f"bot {what} unavailable, drawing none: {exc}")
        return pd.DataFrame()


class BotIntegratedSignalLayer(TradingSignalLayer, _Fetching):
    """Signals of the configured bots, fetched on render (see the module doc)."""

    config: BotSignalLayerConfig

    def __init__(
        self, config: BotSignalLayerConfig | None = None, integration: BotSignalLayerIntegration | None = None
    ) -> None:
        TradingSignalLayer.__init__(self, config or BotSignalLayerConfig())
        _Fetching.__init__(self, integration)

    def _query(self, symbol: str) -> dict[str, Any]:
        config = self.config
        return {
            "symbol": symbol,
            "bot_filter": _layer_filter(config.bot_filter, config.active_bots_only),
            "signal_types": config.signal_types,
            "min_confidence": config.confidence_threshold,
            "days": config.time_window_days,
        }

    async def fetch_async(self, symbol: str) -> pd.DataFrame:
        """The signals this layer would draw for ``symbol`` (empty on a database failure)."""
        self.last_error = None
        query = self._query(symbol)
        log.debug("fetching signals: layer=%r %s", self.config.name, query)
        try:
            return await self.integration.get_signals_for_chart_async(**query)
        except StoreError as exc:
            return self._failed("signals", exc)

    fetch = blocking_twin(fetch_async)

    def _source(self, symbol: str | None, signals: FrameLike) -> tuple[bool, str | None]:
        symbol = symbol or self.config.symbol
        return signals is None and self.config.auto_fetch_data and symbol is not None, symbol

    def render(
        self,
        fig: go.Figure,
        market_data: FrameLike = None,
        signals: FrameLike = None,
        *,
        symbol: str | None = None,
        row: int | None = None,
        col: int | None = None,
        **_ignored: Any,
    ) -> go.Figure:
        """Fetch (when auto_fetch_data and no ``signals`` given) and draw; returns ``fig``."""
        fetch, symbol = self._source(symbol, signals)
        if fetch and symbol is not None:
            signals = self.fetch(symbol)
        return add_traces(fig, self.traces(market_data, signals), row=row, col=col)

    async def render_async(
        self,
        fig: go.Figure,
        market_data: FrameLike = None,
        signals: FrameLike = None,
        *,
        symbol: str | None = None,
        row: int | None = None,
        col: int | None = None,
        **_ignored: Any,
    ) -> go.Figure:
        fetch, symbol = self._source(symbol, signals)
        if fetch and symbol is not None:
            signals = await self.fetch_async(symbol)
        return add_traces(fig, self.traces(market_data, signals), row=row, col=col)


class BotIntegratedTradeLayer(TradeExecutionLayer, _Fetching):
    """Trades of the configured bots, fetched on render: entries, exits, P&L, entry→exit lines."""

    config: BotTradeLayerConfig

    def __init__(
        self, config: BotTradeLayerConfig | None = None, integration: BotSignalLayerIntegration | None = None
    ) -> None:
        TradeExecutionLayer.__init__(self, config or BotTradeLayerConfig())
        _Fetching.__init__(self, integration)

    def _query(self, symbol: str) -> dict[str, Any]:
        config = self.config
        return {
            "symbol": symbol,
            "bot_filter": _layer_filter(config.bot_filter, config.active_bots_only),
            "sides": config.sides,
            "days": config.time_window_days,
        }

    async def fetch_async(self, symbol: str) -> pd.DataFrame:
        """The trades this layer would draw for ``symbol`` (empty on a database failure)."""
        self.last_error = None
        query = self._query(symbol)
        log.debug("fetching trades: layer=%r %s", self.config.name, query)
        try:
            return await self.integration.get_trades_for_chart_async(**query)
        except StoreError as exc:
            return self._failed("trades", exc)

    fetch = blocking_twin(fetch_async)

    def render(
        self,
        fig: go.Figure,
        market_data: FrameLike = None,
        trades: FrameLike = None,
        *,
        symbol: str | None = None,
        row: int | None = None,
        col: int | None = None,
        **_ignored: Any,
    ) -> go.Figure:
        """Fetch (when auto_fetch_data and no ``trades`` given) and draw; returns ``fig``."""
        symbol = symbol or self.config.symbol
        if trades is None and self.config.auto_fetch_data and symbol is not None:
            trades = self.fetch(symbol)
        return add_traces(fig, self.traces(market_data, trades), row=row, col=col)

    async def render_async(
        self,
        fig: go.Figure,
        market_data: FrameLike = None,
        trades: FrameLike = None,
        *,
        symbol: str | None = None,
        row: int | None = None,
        col: int | None = None,
        **_ignored: Any,
    ) -> go.Figure:
        symbol = symbol or self.config.symbol
        if trades is None and self.config.auto_fetch_data and symbol is not None:
            trades = await self.fetch_async(symbol)
        return add_traces(fig, self.traces(market_data, trades), row=row, col=col)


def create_bot_signal_layer(
    symbol: str,
    active_only: bool = True,
    confidence_threshold: float = 0.3,
    time_window_days: float = 7,
    **options: Any,
) -> BotIntegratedSignalLayer:
    """A signal layer for ``symbol`` (``render(fig, market_data)`` needs no symbol then).

    ``options`` are other :class:`BotSignalLayerConfig` fields (``signal_types``,
    ``group_by_strategy``, ``bot_filter``, ``name`` ...).
    """
    config = BotSignalLayerConfig(
        name=options.pop("name", f"{symbol} Bot Signals"),
        symbol=symbol,
        active_bots_only=active_only,
        confidence_threshold=confidence_threshold,
        time_window_days=time_window_days,
        **options,
    )
    return BotIntegratedSignalLayer(config)


def create_bot_trade_layer(
    symbol: str,
    active_only: bool = True,
    show_pnl: bool = True,
    time_window_days: float = 7,
    **options: Any,
) -> BotIntegratedTradeLayer:
    """A trade layer for ``symbol``; ``options`` are other :class:`BotTradeLayerConfig` fields."""
    config = BotTradeLayerConfig(
        name=options.pop("name", f"{symbol} Bot Trades"),
        symbol=symbol,
        active_bots_only=active_only,
        show_pnl=show_pnl,
        time_window_days=time_window_days,
        **options,
    )
    return BotIntegratedTradeLayer(config)


def _failure(exc: StoreError, **extra: Any) -> dict[str, Any]:
    _warnings.warning(("layers", str(exc)), f"bot layers unavailable: {exc}")
    return {"success": False, "layers": {}, "error": str(exc), **extra}


def create_complete_bot_layers(
    symbol: str, timeframe: str = "1h", active_only: bool = True, time_window_days: float = 7, **options: Any
) -> dict[str, Any]:
    """Signal and trade layers for ``symbol``, after checking the store answers.

    ``{"success": True, "layers": {"signals": ..., "trades": ...}, "symbol", "timeframe",
    "bots": <number of matching bots>, "error": None}``; if the database fails
    ``{"success": False, "layers": {}, "error": "<why>", ...}``.
    """
    flt = BotFilter(symbols=(symbol,), active_only=active_only)
    try:
        bots = default_service().get_bots(flt)
    except StoreError as exc:
        return _failure(exc, symbol=symbol, timeframe=timeframe)
    layers = {
        "signals": create_bot_signal_layer(symbol, active_only, time_window_days=time_window_days, **options),
        "trades": create_bot_trade_layer(symbol, active_only, time_window_days=time_window_days),
    }
    log.debug("bot layers created: symbol=%s bots=%d", symbol, len(bots))
    return {
        "success": True,
        "layers": layers,
        "symbol": symbol,
        "timeframe": timeframe,
        "bots": len(bots),
        "error": None,
    }


class BotMultiLayerIntegration:
    """Layers for several bots or strategies at once."""

    def __init__(self, integration: BotSignalLayerIntegration | None = None) -> None:
        self.integration = integration

    def create_strategy_comparison_layers(
        self,
        symbol: str,
        strategies: Sequence[str],
        timeframe: str = "1h",
        time_window_days: float = 7,
        active_only: bool = False,
    ) -> dict[str, Any]:
        """A signal and a trade layer per strategy (``layers["<strategy>_signals"]`` and
        ``["<strategy>_trades"]``), each grouped under its strategy in the legend.

        Returns ``{"success", "layers", "strategies", "symbol", "error"}`` (``success`` False
        and ``error`` set when the database fails).
        """
        service = self.integration.service if self.integration else default_service()
        try:
            bots = service.get_bots(BotFilter(symbols=(symbol,), strategies=tuple(strategies)))
        except StoreError as exc:
            return _failure(exc, strategies=list(strategies), symbol=symbol)
        layers: dict[str, Any] = {}
        for strategy in strategies:
            flt = BotFilter(strategies=(strategy,))
            layers[f"{strategy}_signals"] = BotIntegratedSignalLayer(
                BotSignalLayerConfig(
                    name=f"{strategy} signals",
                    symbol=symbol,
                    bot_filter=flt,
                    active_bots_only=active_only,
                    group_by_strategy=True,
                    time_window_days=time_window_days,
                ),
                self.integration,
            )
            layers[f"{strategy}_trades"] = BotIntegratedTradeLayer(
                BotTradeLayerConfig(
                    name=f"{strategy} trades",
                    symbol=symbol,
                    bot_filter=flt,
                    active_bots_only=active_only,
                    group_by_strategy=True,
                    time_window_days=time_window_days,
                ),
                self.integration,
            )
        log.debug("strategy layers: symbol=%s strategies=%s bots=%d", symbol, strategies, len(bots))
        return {
            "success": True,
            "layers": layers,
            "strategies": list(strategies),
            "symbol": symbol,
            "timeframe": timeframe,
            "bots": len(bots),
            "error": None,
        }


#: The shared multi-layer helper of the seed document.
bot_multi_layer = BotMultiLayerIntegration()
