"""DataFrames from analytics query rows, and the performance report built from them (CPU only)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from server.analytics import performance as perf
from server.analytics.columns import (
    NUMBER_COLUMNS,
    PERFORMANCE_COLUMNS,
    SIGNAL_COLUMNS,
    TEXT_COLUMNS,
    TRADE_COLUMNS,
)
from server.analytics.queries import PART_CAPITAL, PART_PRICE, PART_TRADE

BOT_COLUMNS: Final = (
    "id",
    "name",
    "strategy",
    "status",
    "equity",
    "first_seen",
    "last_seen",
    "last_status_at",
)
__all__ = [
    "BOT_COLUMNS",
    "SIGNAL_COLUMNS",
    "TRADE_COLUMNS",
    "PerformanceReport",
    "bots_frame",
    "build_report",
    "events_frame",
]


def _utc(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(ms.astype("int64"), unit="ms", utc=True)


def _frame(rows: list[Any], columns: Sequence[str]) -> pd.DataFrame:
    # Column by column with the dtype decided once per column: pandas builds frames from
    # SQLAlchemy rows ~10x slower, and inferring a string dtype per value costs more than the query.
    if not rows:
        return pd.DataFrame({name: pd.Series([], dtype=object) for name in columns})
    data: dict[str, Any] = {}
    for name, values in zip(columns, zip(*rows, strict=True), strict=True):
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, str) or sample is None:
            data[name] = pd.Series(values, dtype=object)
        else:
            data[name] = pd.Series(values)
    return pd.DataFrame(data)


def bots_frame(rows: list[Any], keys: list[str]) -> pd.DataFrame:
    raw = _frame(rows, keys)
    out = pd.DataFrame(
        {
            "id": raw["id"].astype("int64"),
            "name": raw["name"].astype(str),
            "strategy": raw["strategy"].astype(str),
            "status": raw["status"].astype(object),
            "equity": raw["equity"].astype("float64"),
            "first_seen": _utc(raw["first_seen"]),
            "last_seen": _utc(raw["last_seen"]),
            "last_status_at": pd.to_datetime(raw["last_status_ts"].astype("Int64"), unit="ms", utc=True),
        }
    )
    return out.reset_index(drop=True)


def events_frame(rows: list[Any], keys: list[str], columns: Sequence[str]) -> pd.DataFrame:
    raw = _frame(rows, keys)
    raw["ts"] = raw["ts"].astype("int64")
    raw["timestamp"] = _utc(raw["ts"])
    raw["bot_id"] = raw["bot_id"].astype("Int64")
    raw["seq"] = raw["seq"].astype("int64")
    for name in columns:
        if name in NUMBER_COLUMNS:
            raw[name] = pd.to_numeric(raw[name]).astype("float64")
        elif name in TEXT_COLUMNS:
            raw[name] = raw[name].astype(str)
    return raw.loc[:, list(columns)].reset_index(drop=True)


@dataclass
class PerformanceReport:
    """Performance of a set of bots over a window, from one query.

    ``by_bot``, ``by_strategy`` (ranked, see :func:`server.analytics.performance.strategy_comparison`)
    and ``overall`` (one row) hold the metrics of :data:`server.analytics.performance.METRIC_COLUMNS`;
    ``equity`` is the equity/drawdown curve per bot (long format, computed on first use);
    ``book`` the paired trades behind it all.
    """

    start_ms: int
    end_ms: int
    by_bot: pd.DataFrame
    by_strategy: pd.DataFrame
    overall: pd.DataFrame
    book: perf.Book
    last_prices: dict[str, float] = field(default_factory=dict)
    capital: dict[str, float] = field(default_factory=dict)
    query_ms: float = 0.0
    compute_ms: float = 0.0
    _equity: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def trades(self) -> pd.DataFrame:
        return self.book.trades

    @property
    def equity(self) -> pd.DataFrame:
        if self._equity is None:
            self._equity = perf.equity_curves(self.book, capital=self.capital, start_ms=self.start_ms)
        return self._equity


def _decode_trades(rows: pd.DataFrame) -> pd.DataFrame:
    sell = rows["sell"].to_numpy() == 1
    exits = rows["exit"].to_numpy() == 1
    return rows.assign(side=np.where(sell, "sell", "buy"), action=np.where(exits, "exit", "entry"))


def build_report(rows: list[Any], start_ms: int, end_ms: int, query_ms: float = 0.0) -> PerformanceReport:
    """Split the rows of :func:`performance_query` and compute every table (pure, CPU only)."""
    began = time.perf_counter()
    frame = _frame(rows, PERFORMANCE_COLUMNS)
    part = frame["part"].to_numpy()
    trades = _decode_trades(frame[part == PART_TRADE])
    prices = frame[(part == PART_PRICE) & frame["price"].notna().to_numpy()]
    capitals = frame[(part == PART_CAPITAL) & frame["price"].notna().to_numpy()]
    last_prices = {str(s): float(p) for s, p in zip(prices["symbol"], prices["price"], strict=True)}
    capital = {str(b): float(e) for b, e in zip(capitals["bot"], capitals["price"], strict=True) if e > 0}
    trades = perf.drop_unexited_before(trades, start_ms) if len(trades) else perf.empty_trades()
    book = perf.prepare(trades, last_prices)
    common: dict[str, Any] = {"capital": capital, "start_ms": start_ms, "end_ms": end_ms}
    report = PerformanceReport(
        start_ms=start_ms,
        end_ms=end_ms,
        by_bot=perf.performance_table(book, by="bot", **common),
        by_strategy=perf.strategy_comparison(book, **common),
        overall=perf.performance_table(book, by="all", **common),
        book=book,
        last_prices=last_prices,
        capital=capital,
        query_ms=query_ms,
    )
    report.compute_ms = (time.perf_counter() - began) * 1000
    return report
