"""The wall's server-built figure: one per symbol, from the columnar ``data`` of a history frame.

``build_symbol_figure`` returns the figure as JSON plus what the JS client needs to keep it
live: ``trace_map`` (which trace index holds what) and ``live`` (the styling rules and
empty trace templates, so appended points and traces look like the backfill). The
contract is in docs/charts.md. The traces come from the same builders as the seed-API
layers (:mod:`server.charts.traces`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from server.analytics import performance as perf
from server.analytics.payloads import json_value
from server.charts import styles, traces
from server.charts.frames import candle_frame, signal_frame, status_frame, trade_frame

DEFAULT_MAX_POINTS: Final = 2000
#: Share of the plot height taken by the equity strip (bottom), and the gap above it.
EQUITY_HEIGHT: Final = 0.2
EQUITY_GAP: Final = 0.05
DAY_MS: Final = 86_400_000


def downsample_candles(candles: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most ``max_points`` OHLCV candles: time buckets (so gaps stay gaps), open first, close last."""
    if len(candles) <= max_points or max_points < 1:
        return candles
    span = int(candles["ts"].iloc[-1] - candles["ts"].iloc[0])
    step = int(np.median(np.diff(candles["ts"].to_numpy()))) or 1
    bucket_ms = max(step, math.ceil((span + step) / max_points / step) * step)
    bucket = (candles["ts"] - candles["ts"].iloc[0]) // bucket_ms
    out = candles.groupby(bucket, sort=True).agg(
        ts=("ts", "first"),
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
    )
    return out.reset_index(drop=True)


def _candle_trace(candles: pd.DataFrame, symbol: str) -> dict[str, Any]:
    return {
        "type": "candlestick",
        "name": symbol,
        "x": candles["ts"].astype("int64").tolist(),
        "open": traces.floats(candles["open"]),
        "high": traces.floats(candles["high"]),
        "low": traces.floats(candles["low"]),
        "close": traces.floats(candles["close"]),
        "increasing": {"line": {"color": styles.CANDLE_UP}, "fillcolor": styles.CANDLE_UP},
        "decreasing": {"line": {"color": styles.CANDLE_DOWN}, "fillcolor": styles.CANDLE_DOWN},
        "showlegend": False,
        "hoverinfo": "x+y",
        "meta": {"layer": "market", "key": "candle"},
    }


def price_template(symbol: str, theme: styles.Theme) -> dict[str, Any]:
    """The price line (no points) of a chart without candles."""
    return {
        "type": "scatter",
        "mode": "lines",
        "name": f"{symbol} price",
        "x": [],
        "y": [],
        "connectgaps": False,
        "line": {"color": theme.text, "width": 2},
        "showlegend": False,
        "hovertemplate": "price: %{y:,.2f}<br>%{x|%Y-%m-%d %H:%M:%S} UTC<extra></extra>",
        "meta": {"layer": "market", "key": "price"},
    }


def _price_trace(
    signals: pd.DataFrame, trades: pd.DataFrame, symbol: str, theme: styles.Theme, max_points: int
) -> dict[str, Any]:
    points = pd.concat([signals[["ts", "price"]], trades[["ts", "price"]]], ignore_index=True)
    points = points.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
    if len(points) > max_points > 0:
        points = points.iloc[np.linspace(0, len(points) - 1, max_points).round().astype(int)]
    ts = points["ts"].to_numpy(dtype="int64")
    trace = price_template(symbol, theme)
    trace["x"], trace["y"] = traces.with_gaps(
        ts, traces.floats(points["price"]), traces.gap_threshold(ts, factor=10.0)
    )
    return trace


def equity_template(bot: str, index: int, theme: styles.Theme) -> dict[str, Any]:
    """An empty equity line for ``bot`` (``index`` picks its colour) on the strip's axis ``y2``."""
    return {
        "type": "scatter",
        "mode": "lines",
        "name": bot,
        "legendgroup": "equity",
        "x": [],
        "y": [],
        "connectgaps": False,
        "yaxis": "y2",
        "xaxis": "x",
        "showlegend": False,
        "line": {"color": styles.equity_color(index), "width": theme.equity_line_width},
        "hovertemplate": f"<b>{bot}</b> equity: %{{y:,.2f}}<br>%{{x|%Y-%m-%d %H:%M:%S}} UTC<extra></extra>",
        "meta": {"layer": "equity", "key": f"equity:{bot}"},
    }


def _equity_traces(status: pd.DataFrame, theme: styles.Theme, max_points: int) -> traces.Keyed:
    out: traces.Keyed = []
    rows = status[status["equity"].notna()]
    for index, bot in enumerate(sorted(rows["bot"].unique())):
        mine = rows[rows["bot"] == bot].drop_duplicates("ts", keep="last")
        if len(mine) > max_points > 0:
            mine = mine.iloc[np.linspace(0, len(mine) - 1, max_points).round().astype(int)]
        ts = mine["ts"].to_numpy(dtype="int64")
        trace = equity_template(bot, index, theme)
        trace["x"], trace["y"] = traces.with_gaps(ts, traces.floats(mine["equity"]), traces.gap_threshold(ts))
        out.append((f"equity:{bot}", trace))
    return out


def _equity_axis(symbol: str, theme: styles.Theme) -> dict[str, Any]:
    return {
        **theme.axis(),
        "domain": [0.0, EQUITY_HEIGHT],
        "side": "right",
        "uirevision": symbol,
        "automargin": True,
        "nticks": 3,
    }


def _equity_annotation(theme: styles.Theme) -> dict[str, Any]:
    return {
        "text": "equity",
        "xref": "paper",
        "yref": "paper",
        "x": 0.0,
        "y": EQUITY_HEIGHT,
        "xanchor": "left",
        "yanchor": "top",
        "showarrow": False,
        "font": {"size": theme.font_size - 4, "color": theme.text},
    }


def equity_axes(symbol: str, theme: styles.Theme) -> dict[str, Any]:
    """The ``Plotly.relayout`` update that makes room for the equity strip in a figure without one."""
    return {
        "yaxis.domain": [EQUITY_HEIGHT + EQUITY_GAP, 1.0],
        "yaxis2": _equity_axis(symbol, theme),
        "xaxis.anchor": "y2",
        "annotations": [_equity_annotation(theme)],
    }


def _layout(symbol: str, theme: styles.Theme, has_equity: bool) -> dict[str, Any]:
    layout = theme.layout()
    axis = theme.axis()
    main_bottom = EQUITY_HEIGHT + EQUITY_GAP if has_equity else 0.0
    layout.update(
        title={
            "text": symbol,
            "font": {"size": theme.font_size + 8},
            "x": 0.01,
            "xanchor": "left",
            "yref": "container",
            "y": 0.985,
            "yanchor": "top",
        },
        uirevision=symbol,
        margin={"l": 20, "r": 20, "t": 130, "b": 50},
        xaxis={
            **axis,
            "type": "date",
            "anchor": "y2" if has_equity else "y",
            "rangeslider": {"visible": False},
            "uirevision": symbol,
            "showspikes": True,
            "spikecolor": theme.grid,
        },
        yaxis={
            **axis,
            "domain": [main_bottom, 1.0],
            "side": "right",
            "uirevision": symbol,
            "automargin": True,
        },
    )
    if has_equity:
        layout["yaxis2"] = _equity_axis(symbol, theme)
        layout["annotations"] = [_equity_annotation(theme)]
    return layout


def _on_wall(key: str, trace: dict[str, Any]) -> dict[str, Any]:
    """Wall styling of the shared trade traces: the entry→exit lines stay out of the legend (their
    colour says win or loss, the exit marker's hover the P&L), so the legend fits a tile."""
    if key.startswith("trade_line:"):
        trace["showlegend"] = False
    return trace


def build_symbol_figure(
    symbol: str,
    data: Mapping[str, Mapping[str, Any]],
    *,
    theme: str = "dark",
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, Any]:
    """The wall figure of ``symbol``: candles (or a price line), signals, trades, equity strip.

    ``data`` is a history frame's ``data`` object (keys ``candle``, ``signal``, ``trade``,
    ``bot``; columnar; ts in ms); missing keys are empty. Returns ``{"figure", "trace_map",
    "live"}``, all JSON-safe (no NaN/inf).
    """
    style = styles.theme(theme)
    candles = downsample_candles(candle_frame(data.get("candle")), max_points)
    signals = signal_frame(data.get("signal"))
    trades = trade_frame(data.get("trade"))
    status = status_frame(data.get("bot"))
    keyed: traces.Keyed = []
    if len(candles):
        keyed.append(("candle", _candle_trace(candles, symbol)))
    else:
        keyed.append(("price", _price_trace(signals, trades, symbol, style, max_points)))
    keyed += traces.signal_traces(signals, style, unit="ms", group_by_strategy=True, layer="signals")
    keyed += [(key, _on_wall(key, trace)) for key, trace in traces.trade_traces(trades, style, unit="ms")]
    equity = _equity_traces(status, style, max_points)
    keyed += equity
    gaps = _gap_thresholds(signals, trades, status)
    figure = {
        "data": [trace for _, trace in keyed],
        "layout": _layout(symbol, style, bool(equity)),
    }
    trace_map = {key: index for index, (key, _) in enumerate(keyed)}
    equity_bots = [key.split(":", 1)[1] for key, _ in equity]
    live = live_spec(symbol, style, max_points, equity_bots)
    live["gap_ms"] = gaps
    return {"figure": figure, "trace_map": trace_map, "live": live}


def _gap_thresholds(
    signals: pd.DataFrame, trades: pd.DataFrame, status: pd.DataFrame
) -> dict[str, float | None]:
    """The gap rules the figure used: a line breaks where consecutive points are further apart."""
    points = np.sort(
        np.concatenate([signals["ts"].to_numpy(dtype="int64"), trades["ts"].to_numpy(dtype="int64")])
    )
    price = traces.gap_threshold(points, factor=10.0)
    per_bot = [
        traces.gap_threshold(np.unique(rows["ts"].to_numpy(dtype="int64")))
        for _, rows in status[status["equity"].notna()].groupby("bot")
    ]
    equity = min(per_bot) if per_bot else math.inf
    return {
        "price": price if math.isfinite(price) else None,
        "equity": equity if math.isfinite(equity) else None,
    }


async def build_symbol_figure_async(
    symbol: str,
    data: Mapping[str, Mapping[str, Any]],
    *,
    theme: str = "dark",
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, Any]:
    """:func:`build_symbol_figure` on a worker thread (it is CPU work: keep it off the gateway's loop)."""
    return await asyncio.to_thread(build_symbol_figure, symbol, data, theme=theme, max_points=max_points)


def live_spec(symbol: str, style: styles.Theme, max_points: int, equity_bots: list[str]) -> dict[str, Any]:
    """What a client needs to append live events with the figure's styling (docs/charts.md)."""
    trade_templates = {
        key: _on_wall(key, trace) for key, trace in traces.trade_templates(style, unit="ms").items()
    }
    return {
        "symbol": symbol,
        "x": "ms",
        "max_points": max_points,
        "confidence": style.confidence.to_json(),
        "colors": {
            "signal": dict(styles.SIGNAL_COLORS),
            "side": dict(styles.SIDE_COLORS),
            "pnl": dict(styles.PNL_COLORS),
            "equity": list(styles.EQUITY_PALETTE),
        },
        "symbols": {
            "signal": dict(styles.SIGNAL_SYMBOLS),
            "entry": styles.ENTRY_SYMBOL,
            "exit": styles.EXIT_SYMBOL,
        },
        "customdata": {
            "signal": ["bot", "strategy", "confidence"],
            "trade:entry": ["bot", "strategy", "side", "qty", "position"],
            "trade:exit": ["bot", "strategy", "side", "qty", "position", "pnl", "pnl_label"],
            "trade_line": ["bot", "pnl_label"],
        },
        "pnl_label": {"decimals": 2, "sign": True, "thousands": ",", "unknown": "n/a"},
        "equity_bots": equity_bots,
        "templates": {
            "signal": {
                t: traces.signal_template(t, "{strategy}", style, unit="ms") for t in ("buy", "sell", "hold")
            },
            "equity": equity_template("{bot}", 0, style),
            "candle": _candle_trace(candle_frame(None), symbol),
            "price": price_template(symbol, style),
            **trade_templates,
        },
        "equity_axes": equity_axes(symbol, style),
        "naming": {
            "signal": "{strategy} {type}",
            "signal_key": "signal:{strategy}:{type}",
            "equity": "{bot}",
            "equity_key": "equity:{bot}",
            "equity_color_index": "position of the bot in equity_bots",
        },
    }


def kpis(data: Mapping[str, Mapping[str, Any]], *, now_ms: int | None = None) -> dict[str, Any]:
    """Tiles of a wall chart from its ``data``: last price, today's P&L (UTC day), win rate,
    open positions, active bots, plus realized P&L and trade count over the data."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    candles = candle_frame(data.get("candle"))
    signals = signal_frame(data.get("signal"))
    trades = trade_frame(data.get("trade"))
    status = status_frame(data.get("bot"))
    last_price = None
    if len(candles):
        last_price = float(candles["close"].iloc[-1])
    else:
        points = pd.concat([signals[["ts", "price"]], trades[["ts", "price"]]]).sort_values(
            "ts", kind="stable"
        )
        last_price = float(points["price"].iloc[-1]) if len(points) else None
    book = perf.prepare(
        trades, {str(s): last_price for s in trades["symbol"].unique()} if last_price else None
    )
    today = now - now % DAY_MS
    exits = book.exits
    today_pnl = float(exits.loc[(exits["ts"] >= today) & (exits["ts"] <= now), "realized"].sum())
    overall = perf.performance_table(book, by="all")
    row = overall.iloc[0] if len(overall) else None
    active = None
    if len(status):
        latest = status.drop_duplicates("bot", keep="last")
        active = int((latest["status"] == "active").sum())
    return {
        "last_price": last_price,
        "today_pnl": round(today_pnl, 6),
        "win_rate": json_value(row["win_rate"]) if row is not None else None,
        "open_positions": int((book.positions["open_qty"] > 0).sum()),
        "active_bots": active,
        "realized_pnl": json_value(row["realized_pnl"]) if row is not None else 0.0,
        "unrealized_pnl": json_value(row["unrealized_pnl"]) if row is not None else 0.0,
        "trades": int(row["trade_count"]) if row is not None else 0,
        "day_start": today,
    }
