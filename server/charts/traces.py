"""Plotly traces as plain JSON dicts, built from DataFrames: the one drawing code of every chart.

Each builder returns ``[(key, trace), ...]``; keys are the wall's ``trace_map`` names
("signal:<strategy>:<type>", "trade:entry", "trade_line:win", "equity:<bot>", ...). The
``x`` of every trace comes from :func:`x_values`: ms since the epoch for the wall (a
``date`` axis; what live events carry) or naive UTC datetimes for the seed-API layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from server.analytics import performance as perf
from server.charts import styles
from server.charts.styles import Theme

XUnit = Literal["ms", "datetime"]
Keyed = list[tuple[str, dict[str, Any]]]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def x_values(ts_ms: pd.Series | np.ndarray, unit: XUnit) -> list[Any]:
    """Trace x values: ints (ms) or ``YYYY-MM-DD HH:MM:SS.ffffff`` strings (UTC)."""
    values = np.asarray(ts_ms, dtype="int64")
    if unit == "ms":
        as_ints: list[Any] = values.tolist()
        return as_ints
    stamps = pd.to_datetime(values, unit="ms")
    return [stamp.isoformat(sep=" ") for stamp in stamps]


def floats(values: pd.Series | np.ndarray | Sequence[float]) -> list[float | None]:
    """Numbers as a JSON-safe list: NaN and ±inf become None."""
    array = np.asarray(values, dtype="float64")
    out: list[float | None] = array.tolist()
    if not np.isfinite(array).all():
        out = [v if v is not None and math.isfinite(v) else None for v in out]
    return out


def pnl_label(value: float | None) -> str:
    """How a P&L is shown in hovers: ``+12.34`` / ``-0.50``; ``n/a`` when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+,.2f}"


def _hover_time(unit: XUnit) -> str:
    return f"%{{x|{TIME_FORMAT}}}" + (" UTC" if unit == "ms" else "")


def signal_traces(
    signals: pd.DataFrame,
    style: Theme,
    *,
    unit: XUnit,
    group_by_strategy: bool = True,
    include_bot_info: bool = True,
    layer: str = "signals",
) -> Keyed:
    """Markers per (strategy, type) — or per type — sized and faded by confidence.

    ``signals`` has the columns of :func:`server.charts.frames.signal_frame`. customdata
    per point: ``[bot, strategy, confidence]``.
    """
    out: Keyed = []
    if signals.empty:
        return out
    scale = style.confidence
    groups: list[tuple[str | None, str]] = []
    strategies = sorted(signals["strategy"].unique()) if group_by_strategy else [None]
    for strategy in strategies:
        for signal_type in ("buy", "sell", "hold"):
            groups.append((strategy, signal_type))
    for strategy, signal_type in groups:
        mask = signals["type"] == signal_type
        if strategy is not None:
            mask &= signals["strategy"] == strategy
        rows = signals[mask]
        if rows.empty:
            continue
        confidence = rows["confidence"].to_numpy(dtype="float64")
        key = f"signal:{strategy}:{signal_type}" if strategy is not None else f"signal:{signal_type}"
        trace = signal_template(
            signal_type, strategy, style, unit=unit, include_bot_info=include_bot_info, layer=layer
        )
        trace["x"] = x_values(rows["ts"], unit)
        trace["y"] = floats(rows["price"])
        trace["customdata"] = [
            [bot, strat, float(conf)]
            for bot, strat, conf in zip(rows["bot"], rows["strategy"], confidence, strict=True)
        ]
        trace["marker"]["size"] = scale.sizes(confidence)
        trace["marker"]["opacity"] = scale.opacities(confidence)
        trace["meta"] = {"layer": layer, "key": key}
        out.append((key, trace))
    return out


def signal_template(
    signal_type: str,
    strategy: str | None,
    style: Theme,
    *,
    unit: XUnit = "ms",
    include_bot_info: bool = True,
    layer: str = "signals",
) -> dict[str, Any]:
    """The trace of one (strategy, type) with no points: what the client adds for a new strategy."""
    label = signal_type.upper()
    if include_bot_info:
        hover = (
            f"<b>%{{customdata[1]}}</b> · {label}<br>bot: %{{customdata[0]}}<br>"
            "confidence: %{customdata[2]:.2f}<br>price: %{y:,.2f}<br>"
        )
    else:
        hover = f"<b>{label}</b><br>confidence: %{{customdata[2]:.2f}}<br>price: %{{y:,.2f}}<br>"
    name = f"{strategy} {signal_type}" if strategy is not None else f"{signal_type} signals"
    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "legendgroup": strategy if strategy is not None else "signals",
        "x": [],
        "y": [],
        "customdata": [],
        "marker": {
            "symbol": styles.SIGNAL_SYMBOLS[signal_type],
            "color": styles.SIGNAL_COLORS[signal_type],
            "size": [],
            "opacity": [],
            "line": {"width": 1, "color": style.marker_line},
        },
        "hovertemplate": hover + _hover_time(unit) + "<extra></extra>",
        "meta": {
            "layer": layer,
            "key": f"signal:{strategy}:{signal_type}" if strategy else f"signal:{signal_type}",
        },
    }


def _entry_hover(include_bot_info: bool, unit: XUnit) -> str:
    bot = (
        "bot: %{customdata[0]} · %{customdata[1]}<br>position: %{customdata[4]}<br>"
        if include_bot_info
        else ""
    )
    return (
        "<b>ENTRY %{customdata[2]}</b> %{customdata[3]} @ %{y:,.2f}<br>"
        + bot
        + _hover_time(unit)
        + "<extra></extra>"
    )


def _exit_hover(include_bot_info: bool, show_pnl: bool, unit: XUnit) -> str:
    bot = (
        "bot: %{customdata[0]} · %{customdata[1]}<br>position: %{customdata[4]}<br>"
        if include_bot_info
        else ""
    )
    pnl = "P&L: %{customdata[6]}<br>" if show_pnl else ""
    head = "<b>EXIT %{customdata[2]}</b> %{customdata[3]} @ %{y:,.2f}<br>"
    return head + pnl + bot + _hover_time(unit) + "<extra></extra>"


def trade_templates(
    style: Theme,
    *,
    unit: XUnit = "ms",
    show_pnl: bool = True,
    include_bot_info: bool = True,
    prefix: str = "",
    layer: str = "trades",
) -> dict[str, dict[str, Any]]:
    """Empty entry/exit/line traces keyed ``trade:entry``, ``trade:exit``, ``trade_line:win|loss``."""
    size = style.trade_marker_size
    names = {"entry": "entries", "exit": "exits", "win": "winning trades", "loss": "losing trades"}
    lead = f"{prefix} " if prefix else ""
    group = prefix or "trades"
    marker_line = {"width": 1.5, "color": style.text}
    templates: dict[str, dict[str, Any]] = {
        "entry": {
            "type": "scatter",
            "mode": "markers",
            "name": lead + names["entry"],
            "legendgroup": group,
            "x": [],
            "y": [],
            "customdata": [],
            "marker": {"symbol": styles.ENTRY_SYMBOL, "size": size, "color": [], "line": marker_line},
            "hovertemplate": _entry_hover(include_bot_info, unit),
        },
        "exit": {
            "type": "scatter",
            "mode": "markers",
            "name": lead + names["exit"],
            "legendgroup": group,
            "x": [],
            "y": [],
            "customdata": [],
            "marker": {"symbol": styles.EXIT_SYMBOL, "size": size, "color": [], "line": {"width": 0}},
            "hovertemplate": _exit_hover(include_bot_info, show_pnl, unit),
        },
    }
    for outcome in ("win", "loss"):
        templates[outcome] = {
            "type": "scatter",
            "mode": "lines",
            "name": lead + names[outcome],
            "legendgroup": group,
            "x": [],
            "y": [],
            "customdata": [],
            "connectgaps": False,
            "line": {"color": styles.PNL_COLORS[outcome], "width": style.trade_line_width},
            "opacity": 0.75,
            "hovertemplate": (
                "<b>%{customdata[0]}</b> P&L: %{customdata[1]}<extra></extra>"
                if show_pnl
                else "<b>%{customdata[0]}</b><extra></extra>"
            ),
        }
    keys = {"entry": "trade:entry", "exit": "trade:exit", "win": "trade_line:win", "loss": "trade_line:loss"}
    out = {}
    for kind, trace in templates.items():
        key = keys[kind] if not prefix else keys[kind].replace(":", f":{prefix}:", 1)
        trace["meta"] = {"layer": layer, "key": key}
        out[key] = trace
    return out


def trade_traces(
    trades: pd.DataFrame,
    style: Theme,
    *,
    unit: XUnit,
    show_pnl: bool = True,
    show_trade_lines: bool = True,
    include_bot_info: bool = True,
    group_by_strategy: bool = False,
    layer: str = "trades",
) -> Keyed:
    """Entry and exit markers, and entry→exit lines coloured by the exit's realized P&L.

    P&L comes from :func:`server.analytics.performance.prepare` (the exit's ``pnl``, else computed).
    customdata: entries ``[bot, strategy, side, qty, position]``; exits add ``pnl`` (number
    or null) and its label; lines ``[bot, pnl label]`` per point (null at the gaps).
    """
    out: Keyed = []
    if trades.empty:
        return out
    groups = sorted(trades["strategy"].unique()) if group_by_strategy else [None]
    for strategy in groups:
        rows = trades if strategy is None else trades[trades["strategy"] == strategy]
        templates = trade_templates(
            style,
            unit=unit,
            show_pnl=show_pnl,
            include_bot_info=include_bot_info,
            prefix=strategy or "",
            layer=layer,
        )
        out.extend(_one_trade_group(rows, templates, unit, show_pnl=show_pnl, show_lines=show_trade_lines))
    return out


def _one_trade_group(
    trades: pd.DataFrame,
    templates: dict[str, dict[str, Any]],
    unit: XUnit,
    *,
    show_pnl: bool,
    show_lines: bool,
) -> Keyed:
    book = perf.prepare(trades)
    keys = list(templates)
    entry_key, exit_key, win_key, loss_key = keys
    out: Keyed = []
    entries = book.trades[book.trades["action"] == "entry"]
    if len(entries):
        trace = templates[entry_key]
        trace["x"] = x_values(entries["ts"], unit)
        trace["y"] = floats(entries["price"])
        trace["customdata"] = [
            list(r)
            for r in zip(
                entries["bot"],
                entries["strategy"],
                entries["side"],
                floats(entries["qty"]),
                entries["position"],
                strict=True,
            )
        ]
        trace["marker"]["color"] = [
            styles.SIDE_COLORS.get(s, styles.PNL_COLORS["flat"]) for s in entries["side"]
        ]
        out.append((entry_key, trace))
    exits = book.exits
    if len(exits):
        realized = exits["realized"].to_numpy(dtype="float64")
        trace = templates[exit_key]
        trace["x"] = x_values(exits["ts"], unit)
        trace["y"] = floats(exits["price"])
        pnl = [None if math.isnan(v) else round(float(v), 6) for v in realized]
        trace["customdata"] = [
            [bot, strat, side, qty, position, value, pnl_label(value)]
            for bot, strat, side, qty, position, value in zip(
                exits["bot"],
                exits["strategy"],
                exits["side"],
                floats(exits["qty"]),
                exits["position"],
                pnl,
                strict=True,
            )
        ]
        if show_pnl:
            trace["marker"]["color"] = [pnl_color(v) for v in pnl]
        else:
            trace["marker"]["color"] = [
                styles.SIDE_COLORS.get(s, styles.PNL_COLORS["flat"]) for s in exits["side"]
            ]
        out.append((exit_key, trace))
    if show_lines and len(exits):
        out.extend(_trade_lines(book, templates[win_key], templates[loss_key], win_key, loss_key, unit))
    return out


def pnl_color(value: float | None) -> str:
    if value is None or value == 0:
        return styles.PNL_COLORS["flat"]
    return styles.PNL_COLORS["win" if value > 0 else "loss"]


def _trade_lines(
    book: perf.Book, win: dict[str, Any], loss: dict[str, Any], win_key: str, loss_key: str, unit: XUnit
) -> Keyed:
    starts = book.positions[[*perf.KEY, "entry_ts", "avg_entry"]]
    exits = book.exits.merge(starts, on=perf.KEY, how="left", suffixes=("", "_position"))
    finite = np.isfinite(
        exits[["entry_ts", "avg_entry_position", "price", "realized"]].to_numpy(dtype="float64")
    )
    exits = exits[finite.all(axis=1)]
    out: Keyed = []
    for key, trace, mask in ((win_key, win, exits["realized"] > 0), (loss_key, loss, exits["realized"] <= 0)):
        rows = exits[mask]
        if rows.empty:
            continue
        xs: list[Any] = []
        ys: list[Any] = []
        custom: list[Any] = []
        starts_x = x_values(rows["entry_ts"].astype("int64"), unit)
        ends_x = x_values(rows["ts"], unit)
        for x0, x1, y0, y1, bot, value in zip(
            starts_x,
            ends_x,
            rows["avg_entry_position"],
            rows["price"],
            rows["bot"],
            rows["realized"],
            strict=True,
        ):
            label = pnl_label(float(value))
            xs += [x0, x1, None]
            ys += [float(y0), float(y1), None]
            custom += [[bot, label], [bot, label], None]
        trace["x"], trace["y"], trace["customdata"] = xs, ys, custom
        out.append((key, trace))
    return out


def with_gaps(ts: np.ndarray, values: Sequence[Any], gap_ms: float) -> tuple[list[int], list[Any]]:
    """Insert a ``None`` point wherever consecutive times are more than ``gap_ms`` apart."""
    xs: list[int] = []
    ys: list[Any] = []
    previous: int | None = None
    for t, v in zip(ts.tolist(), values, strict=True):
        if previous is not None and t - previous > gap_ms:
            xs.append(previous + 1)
            ys.append(None)
        xs.append(t)
        ys.append(v)
        previous = t
    return xs, ys


def gap_threshold(ts: np.ndarray, *, factor: float = 3.0, floor_ms: float = 60_000.0) -> float:
    """A gap is a step longer than ``factor`` times the usual long step (and at least ``floor_ms``).

    The usual long step is the 75th percentile of the steps between distinct times (numpy's
    linear interpolation), not the median: a bot that reports every 5 minutes and also on
    every status change has many short steps, and its regular 5-minute steps are no gap.
    """
    if len(ts) < 3:
        return math.inf
    steps = np.diff(np.sort(ts))
    steps = steps[steps > 0]
    if not len(steps):
        return math.inf
    return max(float(np.percentile(steps, 75)) * factor, floor_ms)
