"""Signal quality as frames, a terminal table, CSV and a self-contained HTML report.

:class:`SignalQuality` is what ``BotDataService.get_signal_quality`` returns and what
``GET /api/signal-quality`` and ``signalpush stats --quality`` show; the HTML report draws a
reliability diagram per strategy (hit rate by confidence bucket with its 95 % interval,
beside the diagonal a calibrated confidence would follow).
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from server.analytics.quality import QualityRules
from server.analytics.tables import format_table

#: (key, heading) of the terminal table and the CSV.
KPI_COLUMNS: Final = (
    ("bot", "bot"),
    ("strategy", "strategy"),
    ("signals", "signals"),
    ("linked", "linked"),
    ("unlinked", "unlinked"),
    ("resolved", "resolved"),
    ("hit_rate", "hit rate"),
    ("latency_mean_ms", "latency ms"),
    ("slippage_mean_bps", "slip bps"),
    ("trades", "trades"),
    ("expectancy", "expectancy"),
    ("profit_factor", "PF"),
    ("realised_pnl", "realised"),
    ("unrealised_pnl", "unrealised"),
    ("max_drawdown_pct", "DD %"),
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
)


@dataclass
class SignalQuality:
    """Signal quality of every (bot, strategy) over a window (rules in server/analytics/quality.py)."""

    start_ms: int
    end_ms: int
    rules: QualityRules
    #: One JSON-safe dict per (bot, strategy), with its ``calibration`` rows.
    rows: list[dict[str, Any]] = field(default_factory=list)
    timing_ms: dict[str, float] = field(default_factory=dict)

    @property
    def kpis(self) -> pd.DataFrame:
        """One row per (bot, strategy), indexed by both: every KPI but the calibration."""
        frame = pd.DataFrame([{k: v for k, v in r.items() if k != "calibration"} for r in self.rows])
        return frame.set_index(["bot", "strategy"]) if len(frame) else frame

    @property
    def calibration(self) -> pd.DataFrame:
        """One row per (bot, strategy, confidence bucket)."""
        records = [
            {"bot": r["bot"], "strategy": r["strategy"], **b} for r in self.rows for b in r["calibration"]
        ]
        return pd.DataFrame(records)

    def payload(self) -> dict[str, Any]:
        """The JSON body of ``GET /api/signal-quality``."""
        return {
            "window": {"start": self.start_ms, "end": self.end_ms},
            "rules": {
                "horizon_ms": self.rules.horizon_ms,
                "buckets": self.rules.buckets,
                "capital": self.rules.capital,
                "window_days": self.rules.window_days,
            },
            "groups": self.rows,
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }


def _cell(value: Any) -> Any:
    return "-" if value is None else value


def terminal_text(quality: SignalQuality) -> str:
    """The KPI table, then each group's calibration table."""
    if not quality.rows:
        return "(no signals or trades in the window)"
    out = [format_table([{h: _cell(r.get(k)) for k, h in KPI_COLUMNS} for r in quality.rows])]
    for row in quality.rows:
        buckets = [b for b in row["calibration"] if b["signals"]]
        if not buckets:
            continue
        out.append(f"\n{row['bot']} / {row['strategy']}: calibration")
        out.append(
            format_table(
                [
                    {
                        "confidence": f"{b['confidence_low']:.2f}-{b['confidence_high']:.2f}",
                        "signals": b["signals"],
                        "resolved": b["resolved"],
                        "hit rate": _cell(b["hit_rate"]),
                        "95% low": _cell(b["hit_rate_low"]),
                        "95% high": _cell(b["hit_rate_high"]),
                        "mean P&L": _cell(b["mean_pnl"]),
                    }
                    for b in buckets
                ]
            )
        )
    return "\n".join(out)


def csv_text(quality: SignalQuality, *, calibration: bool = False) -> str:
    """The KPIs (or, with ``calibration``, the buckets) as CSV."""
    frame = quality.calibration if calibration else quality.kpis.reset_index()
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def reliability_figure(quality: SignalQuality, strategy: str) -> Any:
    """Hit rate by confidence bucket (95 % Wilson bars) for each bot of ``strategy``, and the diagonal."""
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot"}))
    for row in quality.rows:
        if row["strategy"] != strategy:
            continue
        points = [b for b in row["calibration"] if b["resolved"]]
        figure.add_trace(
            go.Scatter(
                x=[(b["confidence_low"] + b["confidence_high"]) / 2 for b in points],
                y=[b["hit_rate"] for b in points],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [b["hit_rate_high"] - b["hit_rate"] for b in points],
                    "arrayminus": [b["hit_rate"] - b["hit_rate_low"] for b in points],
                },
                text=[f"{b['resolved']} resolved" for b in points],
                mode="lines+markers",
                name=row["bot"],
            )
        )
    figure.update_layout(
        title=f"{strategy}: reliability",
        xaxis={"title": "confidence", "range": [0, 1]},
        yaxis={"title": "hit rate", "range": [0, 1]},
        height=380,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return figure


def html_report(quality: SignalQuality, title: str = "signalpush signal quality") -> str:
    """A single HTML file (plotly.js inlined): the KPI table and a reliability diagram per strategy."""
    strategies = sorted({r["strategy"] for r in quality.rows})
    figures = [
        reliability_figure(quality, s).to_html(full_html=False, include_plotlyjs=index == 0)
        for index, s in enumerate(strategies)
    ]
    rows = [{h: _cell(r.get(k)) for k, h in KPI_COLUMNS} for r in quality.rows]
    table = "<p>no signals or trades in the window</p>"
    if rows:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row.values()) + "</tr>"
            for row in rows
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    start = pd.Timestamp(quality.start_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    end = pd.Timestamp(quality.end_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin-bottom: 24px; }}
th, td {{ padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{start} .. {end} UTC; entries link to signals within {quality.rules.horizon_ms / 1000:g} s</p>
{table}
<h2>Reliability per strategy</h2>
{"".join(figures) or "<p>no strategies</p>"}
</body></html>
"""


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)
