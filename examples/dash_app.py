"""The seed document's dashboard callback as a small runnable Dash app.

    pip install 'signalpush[dash]'
    SIGNALPUSH_DATABASE_URL=sqlite+aiosqlite:///./data/signalpush.db python examples/dash_app.py

Open http://127.0.0.1:8050. The callback is a plain (blocking) function: the chart layers
run their queries on signalpush's private background loop, so no asyncio is needed here.
"""

from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
from sqlalchemy import select

from server.charts.database import get_session
from server.charts.layers import create_bot_signal_layer, create_bot_trade_layer
from server.history.models import CandleRow

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT"]


def load_market_data(symbol: str, hours: float = 24) -> pd.DataFrame:
    """The symbol's candles of the last ``hours`` (timestamp in UTC, open/high/low/close/volume)."""
    since = int(time.time() * 1000 - hours * 3_600_000)
    statement = (
        select(CandleRow.ts, CandleRow.open, CandleRow.high, CandleRow.low, CandleRow.close, CandleRow.volume)
        .where(CandleRow.symbol == symbol, CandleRow.ts >= since)
        .order_by(CandleRow.ts)
    )
    with get_session() as session:
        rows = session.execute(statement).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["ts", "open", "high", "low", "close", "volume"])
    frame = frame.drop_duplicates("ts", keep="last")
    frame["timestamp"] = pd.to_datetime(frame["ts"], unit="ms")
    return frame


def create_base_chart(symbol: str, market_data: pd.DataFrame) -> go.Figure:
    """Candlesticks of ``market_data``."""
    fig = go.Figure(
        go.Candlestick(
            x=market_data["timestamp"],
            open=market_data["open"],
            high=market_data["high"],
            low=market_data["low"],
            close=market_data["close"],
            name=symbol,
        )
    )
    fig.update_layout(title=symbol, xaxis_rangeslider_visible=False, height=700, uirevision=symbol)
    return fig


def update_chart_with_bots(symbol: str, show_bot_signals: list[str] | None) -> go.Figure:
    """The seed document's callback body (with its placeholders filled in)."""
    market_data = load_market_data(symbol)
    fig = create_base_chart(symbol, market_data)

    if "bot-signals" in (show_bot_signals or []):
        # Add bot signals
        signal_layer = create_bot_signal_layer(symbol=symbol, active_only=True, confidence_threshold=0.3)
        fig = signal_layer.render(fig, market_data, symbol=symbol)

        # Add bot trades
        trade_layer = create_bot_trade_layer(symbol=symbol, active_only=True, show_pnl=True)
        fig = trade_layer.render(fig, market_data, symbol=symbol)

    return fig


def create_app() -> object:
    """The Dash app: a symbol dropdown, a "show bot signals" switch and the chart."""
    from dash import Dash, Input, Output, dcc, html

    app = Dash(__name__)
    app.layout = html.Div(
        [
            dcc.Dropdown(SYMBOLS, SYMBOLS[0], id="symbol-dropdown", clearable=False),
            dcc.Checklist(
                [{"label": "bot signals and trades", "value": "bot-signals"}],
                ["bot-signals"],
                id="show-bot-signals",
            ),
            dcc.Graph(id="chart"),
            dcc.Interval(id="refresh", interval=10_000),
        ]
    )

    @app.callback(
        Output("chart", "figure"),
        [
            Input("symbol-dropdown", "value"),
            Input("show-bot-signals", "value"),
            Input("refresh", "n_intervals"),
        ],
    )
    def _update(symbol: str, show_bot_signals: list[str], _ticks: int | None) -> go.Figure:
        return update_chart_with_bots(symbol, show_bot_signals)

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=8050, debug=False)  # type: ignore[attr-defined]
