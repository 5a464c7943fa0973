"""Normalise what callers hand the charts (service DataFrames, hand-made frames, the columnar
``data`` of a history frame) into the few column sets the trace builders read.

Times: a ``ts`` column (ms since the epoch), else ``timestamp``/``time``/``datetime``/
``date`` (datetimes; tz-aware ones are converted to UTC, naive ones are taken as they are,
i.e. as UTC), else a DatetimeIndex.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from publishers.events import SCHEMA
from server.analytics import performance as perf
from server.analytics.columns import FIELD_OF

log = logging.getLogger("bot_enhanced_layers")

# The column sets the trace builders read, from the event schema.
SIGNAL_COLUMNS: Final = SCHEMA["signal"].columns(
    lead=("ts", "price", "type", "confidence"), drop=("symbol", "meta")
)
CANDLE_COLUMNS: Final = SCHEMA["candle"].history_columns
STATUS_COLUMNS: Final = SCHEMA["bot"].columns(drop=("symbol", "meta"))
_TIME_COLUMNS: Final = ("timestamp", "time", "datetime", "date")
_ALIASES: Final = {**FIELD_OF, "bot_name": "bot", "strategy_name": "strategy"}


def as_frame(data: pd.DataFrame | Mapping[str, Sequence[Any]] | None) -> pd.DataFrame:
    if data is None:
        return pd.DataFrame()
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame(dict(data))


def ms_column(frame: pd.DataFrame) -> pd.Series:
    """Event times as int64 ms since the epoch."""
    if "ts" in frame.columns and pd.api.types.is_numeric_dtype(frame["ts"]):
        return frame["ts"].astype("int64")
    for name in (*_TIME_COLUMNS, "ts"):
        if name in frame.columns:
            column = pd.Series(pd.to_datetime(frame[name]), index=frame.index)
            break
    else:
        if isinstance(frame.index, pd.DatetimeIndex):
            column = frame.index.to_series(index=frame.index)
        else:
            raise ValueError("no time: expected a ts (ms) or timestamp column, or a DatetimeIndex")
    if column.dt.tz is not None:
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    return ((column - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)).astype("int64")


def _renamed(frame: pd.DataFrame) -> pd.DataFrame:
    renames = {old: new for old, new in _ALIASES.items() if old in frame.columns and new not in frame.columns}
    return frame.rename(columns=renames) if renames else frame


def candle_frame(data: pd.DataFrame | Mapping[str, Sequence[Any]] | None) -> pd.DataFrame:
    """``ts, open, high, low, close, volume`` sorted by time; the last candle of a ts wins."""
    frame = as_frame(data)
    if frame.empty or "close" not in frame.columns:
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in CANDLE_COLUMNS})
    out = pd.DataFrame({"ts": ms_column(frame).to_numpy()})
    for name in ("open", "high", "low", "close"):
        source = frame[name] if name in frame.columns else frame["close"]
        out[name] = pd.to_numeric(source, errors="coerce").to_numpy(dtype="float64")
    volume = frame["volume"] if "volume" in frame.columns else pd.Series(0.0, index=frame.index)
    out["volume"] = pd.to_numeric(volume, errors="coerce").fillna(0.0).to_numpy(dtype="float64")
    out = out.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
    return out.dropna(subset=["close"]).reset_index(drop=True)


def signal_frame(
    data: pd.DataFrame | Mapping[str, Sequence[Any]] | None, market: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``ts, price, type, confidence, bot, strategy``. Missing price: the market close at that time."""
    frame = _renamed(as_frame(data))
    if frame.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in SIGNAL_COLUMNS})
    if "type" not in frame.columns:
        raise ValueError("signals: need a signal_type (or type) column of buy/sell/hold")
    out = pd.DataFrame({"ts": ms_column(frame).to_numpy()})
    out["type"] = frame["type"].astype(str).str.lower().to_numpy()
    out["confidence"] = (
        pd.to_numeric(frame["confidence"], errors="coerce").fillna(1.0).clip(0.0, 1.0).to_numpy()
        if "confidence" in frame.columns
        else 1.0
    )
    out["bot"] = frame["bot"].astype(str).to_numpy() if "bot" in frame.columns else "manual"
    out["strategy"] = frame["strategy"].astype(str).to_numpy() if "strategy" in frame.columns else "manual"
    if "price" in frame.columns:
        out["price"] = pd.to_numeric(frame["price"], errors="coerce").to_numpy(dtype="float64")
    else:
        out["price"] = np.nan
    if out["price"].isna().any():
        out = _prices_from_market(out, market)
    unknown = ~out["type"].isin(["buy", "sell", "hold"])
    if unknown.any():
        log.debug("dropping signals of unknown type", extra={"count": int(unknown.sum())})
    out = out[~unknown].dropna(subset=["price"])
    return out.loc[:, list(SIGNAL_COLUMNS)].sort_values("ts", kind="stable").reset_index(drop=True)


def _prices_from_market(signals: pd.DataFrame, market: pd.DataFrame | None) -> pd.DataFrame:
    candles = candle_frame(market)
    if candles.empty:
        return signals
    missing = signals["price"].isna()
    lookup = pd.merge_asof(
        signals.loc[missing, ["ts"]].reset_index().sort_values("ts"),
        candles[["ts", "close"]],
        on="ts",
        direction="backward",
    ).set_index("index")
    signals.loc[missing, "price"] = lookup["close"]
    return signals


def trade_frame(data: pd.DataFrame | Mapping[str, Sequence[Any]] | None) -> pd.DataFrame:
    """The trade columns :mod:`server.analytics.performance` reads (fee 0 and pnl NaN when absent)."""
    frame = _renamed(as_frame(data))
    if frame.empty or "action" not in frame.columns:
        return perf.empty_trades()
    out = pd.DataFrame({"ts": ms_column(frame).to_numpy()})
    defaults: dict[str, Any] = {
        "bot": "manual",
        "strategy": "manual",
        "symbol": "",
        "fee": 0.0,
        "pnl": np.nan,
        "qty": 1.0,
        "position": "",
    }
    for name in perf.TRADE_COLUMNS[1:]:
        out[name] = frame[name].to_numpy() if name in frame.columns else defaults.get(name)
    if (out["position"] == "").any():
        # No position ids: pair each exit with the bot's previous entry.
        numbered = (frame["action"] == "entry").cumsum().to_numpy()
        out.loc[out["position"] == "", "position"] = [f"auto-{n}" for n in numbered[out["position"] == ""]]
    return perf.normalize_trades(out)


def status_frame(data: pd.DataFrame | Mapping[str, Sequence[Any]] | None) -> pd.DataFrame:
    """``ts, bot, strategy, status, equity`` sorted by time."""
    frame = _renamed(as_frame(data))
    if frame.empty or "bot" not in frame.columns:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in STATUS_COLUMNS})
    out = pd.DataFrame({"ts": ms_column(frame).to_numpy(), "bot": frame["bot"].astype(str).to_numpy()})
    out["strategy"] = frame["strategy"].astype(str).to_numpy() if "strategy" in frame.columns else ""
    out["status"] = frame["status"].astype(str).to_numpy() if "status" in frame.columns else "active"
    out["equity"] = (
        pd.to_numeric(frame["equity"], errors="coerce").to_numpy(dtype="float64")
        if "equity" in frame.columns
        else np.nan
    )
    return out.sort_values("ts", kind="stable").reset_index(drop=True)
