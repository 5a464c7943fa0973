"""Human output of a :class:`~server.analytics.service.PerformanceReport`: terminal tables, CSV and a
self-contained HTML report (plotly.js inlined: it opens with no internet)."""

from __future__ import annotations

import html
import io
import math
from typing import Any, Final

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from server.analytics.service import PerformanceReport
from server.analytics.tables import format_table

#: (column, heading, format) of the terminal and HTML tables.
_COLUMNS: Final = (
    ("trade_count", "trades", "{:,.0f}"),
    ("win_rate", "win %", "{:.1f}"),
    ("realized_pnl", "realized", "{:+,.2f}"),
    ("unrealized_pnl", "unrealized", "{:+,.2f}"),
    ("total_pnl", "total P&L", "{:+,.2f}"),
    ("max_drawdown", "max DD", "{:,.2f}"),
    ("max_drawdown_pct", "DD %", "{:.2f}"),
    ("profit_factor", "PF", "{:.2f}"),
    ("expectancy", "expectancy", "{:+,.2f}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("avg_holding_s", "avg hold", "hold"),
    ("best_trade", "best", "{:+,.2f}"),
    ("worst_trade", "worst", "{:+,.2f}"),
    ("open_positions", "open", "{:,.0f}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if fmt == "hold":
        return format_duration(float(value))
    return fmt.format(value)


def format_duration(seconds: float) -> str:
    """``3h05m``, ``12m30s``, ``45s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def table_rows(frame: pd.DataFrame, *, lead: tuple[str, ...]) -> list[dict[str, str]]:
    """Formatted rows (strings) for display: the index, the ``lead`` columns, then the metrics."""
    rows = []
    for name, record in frame.iterrows():
        row = {str(frame.index.name or ""): str(name)}
        row.update({column: str(record[column]) for column in lead})
        row.update({heading: _cell(record[column], fmt) for column, heading, fmt in _COLUMNS})
        rows.append(row)
    return rows


def terminal_text(report: PerformanceReport) -> str:
    """Per-bot table, strategy comparison and a one-line summary."""
    start = pd.Timestamp(report.start_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    end = pd.Timestamp(report.end_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    parts = [f"Performance {start} .. {end} UTC", ""]
    if report.by_bot.empty:
        parts.append("no trades in this window")
        return "\n".join(parts)
    parts += ["Per bot", format_table(table_rows(report.by_bot, lead=("strategy",))), ""]
    parts += ["Strategy comparison", format_table(table_rows(report.by_strategy, lead=("rank", "bots"))), ""]
    overall = report.overall.iloc[0]
    parts.append(
        f"{len(report.by_bot)} bots, {int(overall['trade_count'])} trades, "
        f"win rate {_cell(overall['win_rate'], '{:.1f}')}%, "
        f"total P&L {_cell(overall['total_pnl'], '{:+,.2f}')}"
    )
    return "\n".join(parts)


def csv_text(report: PerformanceReport, by: str = "bot") -> str:
    """The per-bot (or per-strategy) table as CSV, raw numbers, timestamps in ISO 8601."""
    frame = report.by_bot if by == "bot" else report.by_strategy
    buffer = io.StringIO()
    frame.to_csv(buffer, float_format="%.10g")
    return buffer.getvalue()


def equity_figure(report: PerformanceReport) -> go.Figure:
    """Equity (top) and drawdown % (bottom) per bot."""
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.65, 0.35],
        vertical_spacing=0.06,
        subplot_titles=("Equity per bot", "Drawdown per bot (%)"),
    )
    for index, (bot, curve) in enumerate(report.equity.groupby("bot", sort=True)):
        color = _PALETTE[index % len(_PALETTE)]
        common = {
            "x": curve["timestamp"],
            "name": str(bot),
            "legendgroup": str(bot),
            "line": {"color": color},
        }
        figure.add_trace(go.Scatter(y=curve["equity"], mode="lines", **common), row=1, col=1)
        figure.add_trace(
            go.Scatter(y=-curve["drawdown_pct"], mode="lines", fill="tozeroy", showlegend=False, **common),
            row=2,
            col=1,
        )
    figure.update_layout(height=640, template="plotly_white", margin={"t": 60, "l": 60, "r": 20, "b": 40})
    return figure


def strategy_figure(report: PerformanceReport) -> go.Figure:
    """Total P&L, win rate and max drawdown per strategy, side by side."""
    table = report.by_strategy
    names = [str(n) for n in table.index]
    figure = make_subplots(rows=1, cols=3, subplot_titles=("Total P&L", "Win rate (%)", "Max drawdown"))
    colors = ["#2e7d32" if v >= 0 else "#c62828" for v in table["total_pnl"].fillna(0.0)]
    figure.add_trace(
        go.Bar(x=names, y=table["total_pnl"], marker_color=colors, name="total P&L"), row=1, col=1
    )
    figure.add_trace(
        go.Bar(x=names, y=table["win_rate"], marker_color="#1565c0", name="win rate"), row=1, col=2
    )
    figure.add_trace(
        go.Bar(x=names, y=table["max_drawdown"], marker_color="#ef6c00", name="max DD"), row=1, col=3
    )
    figure.update_layout(
        height=380, showlegend=False, template="plotly_white", margin={"t": 60, "l": 60, "r": 20, "b": 40}
    )
    return figure


def _html_table(frame: pd.DataFrame, lead: tuple[str, ...]) -> str:
    rows = table_rows(frame, lead=lead)
    if not rows:
        return "<p>no trades</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(report: PerformanceReport, title: str = "signalpush performance") -> str:
    """A single HTML file: equity and drawdown per bot, strategy comparison, both tables."""
    equity = equity_figure(report).to_html(full_html=False, include_plotlyjs=True)
    strategies = strategy_figure(report).to_html(full_html=False, include_plotlyjs=False)
    start = pd.Timestamp(report.start_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    end = pd.Timestamp(report.end_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin-bottom: 24px; }}
th, td {{ padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{start} .. {end} UTC</p>
<h2>Equity and drawdown</h2>
{equity}
<h2>Strategy comparison</h2>
{strategies}
{_html_table(report.by_strategy, ("rank", "bots"))}
<h2>Per bot</h2>
{_html_table(report.by_bot, ("strategy",))}
</body></html>
"""


_PALETTE: Final = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
