"""Base chart layers that draw data they are given: trading signals and trade executions.

``layer.render(fig, market_data, signals=df)`` adds the layer's traces to a plotly figure
and returns it. Times are drawn as naive UTC (tz-aware inputs are converted to UTC, naive
ones are drawn as they are), so a base chart of UTC candles lines up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from server.charts import styles, traces
from server.charts.frames import signal_frame, trade_frame

log = logging.getLogger("bot_enhanced_layers")

FrameLike = pd.DataFrame | Mapping[str, Sequence[Any]] | None


@dataclass
class SignalLayerConfig:
    """What a signal layer draws: which types, from which confidence, grouped how."""

    name: str = "Trading Signals"
    enabled: bool = True
    signal_types: list[str] | None = None
    confidence_threshold: float = 0.0
    include_bot_info: bool = True
    group_by_strategy: bool = False
    theme: str = "light"


@dataclass
class TradeLayerConfig:
    """What a trade layer draws: entry/exit markers, P&L, entry→exit lines."""

    name: str = "Trades"
    enabled: bool = True
    show_pnl: bool = True
    show_trade_lines: bool = True
    include_bot_info: bool = True
    group_by_strategy: bool = False
    sides: list[str] | None = None
    theme: str = "light"


def add_traces(
    fig: go.Figure, keyed: traces.Keyed, *, row: int | None = None, col: int | None = None
) -> go.Figure:
    """Add ``keyed`` traces to ``fig`` (into subplot ``row``/``col`` when given); returns ``fig``."""
    for _key, trace in keyed:
        if row is not None and col is not None:
            fig.add_trace(trace, row=row, col=col)
        else:
            fig.add_trace(trace)
    return fig


class TradingSignalLayer:
    """Buy/sell/hold markers sized and faded by confidence, from a signals DataFrame.

    Columns: a time (``timestamp``/``ts``/...), ``signal_type`` (or ``type``), ``price``
    (else the market close at that time), and optionally ``confidence`` (1.0),
    ``bot``/``bot_name`` and ``strategy``.
    """

    def __init__(self, config: SignalLayerConfig | None = None) -> None:
        self.config = config or SignalLayerConfig()

    def filter_signals(self, signals: pd.DataFrame) -> pd.DataFrame:
        """Apply the config's signal types and confidence threshold."""
        config = self.config
        if config.signal_types is not None:
            signals = signals[signals["type"].isin([t.lower() for t in config.signal_types])]
        if config.confidence_threshold:
            signals = signals[signals["confidence"] >= config.confidence_threshold]
        return signals

    def traces(self, market_data: FrameLike = None, signals: FrameLike = None) -> traces.Keyed:
        """The layer's traces as ``[(key, trace dict)]`` (keys as in the wall's trace_map)."""
        if not self.config.enabled:
            return []
        market = market_data if isinstance(market_data, pd.DataFrame) else None
        frame = self.filter_signals(signal_frame(signals, market))
        log.debug("rendering signals: layer=%r signals=%d", self.config.name, len(frame))
        return traces.signal_traces(
            frame,
            styles.theme(self.config.theme),
            unit="datetime",
            group_by_strategy=self.config.group_by_strategy,
            include_bot_info=self.config.include_bot_info,
            layer=self.config.name,
        )

    def render(
        self,
        fig: go.Figure,
        market_data: FrameLike = None,
        signals: FrameLike = None,
        *,
        row: int | None = None,
        col: int | None = None,
        **_ignored: Any,
    ) -> go.Figure:
        """Add the signal traces to ``fig`` and return it (no signals: ``fig`` unchanged)."""
        return add_traces(fig, self.traces(market_data, signals), row=row, col=col)


class TradeExecutionLayer:
    """Entry and exit markers and entry→exit lines coloured by P&L, from a trades DataFrame.

    Columns: a time, ``side``, ``action`` (entry/exit), ``price``, and optionally ``qty``,
    ``pnl``, ``fee``, ``position`` (else each exit pairs with the previous entry), ``bot``,
    ``strategy``.
    """

    def __init__(self, config: TradeLayerConfig | None = None) -> None:
        self.config = config or TradeLayerConfig()

    def traces(self, market_data: FrameLike = None, trades: FrameLike = None) -> traces.Keyed:
        if not self.config.enabled:
            return []
        frame = trade_frame(trades)
        if self.config.sides is not None:
            frame = frame[frame["side"].isin(self.config.sides)]
        log.debug("rendering trades: layer=%r trades=%d", self.config.name, len(frame))
        return traces.trade_traces(
            frame,
            styles.theme(self.config.theme),
            unit="datetime",
            show_pnl=self.config.show_pnl,
            show_trade_lines=self.config.show_trade_lines,
            include_bot_info=self.config.include_bot_info,
            group_by_strategy=self.config.group_by_strategy,
            layer=self.config.name,
        )

    def render(
        self,
        fig: go.Figure,
        market_data: FrameLike = None,
        trades: FrameLike = None,
        *,
        row: int | None = None,
        col: int | None = None,
        **_ignored: Any,
    ) -> go.Figure:
        """Add the trade traces to ``fig`` and return it."""
        return add_traces(fig, self.traces(market_data, trades), row=row, col=col)
