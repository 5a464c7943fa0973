"""Trading performance from trade events: pure functions on pandas DataFrames (no I/O).

Input is a trades DataFrame with the columns of :data:`TRADE_COLUMNS` (one row per trade
event: ``ts`` in ms, ``pnl`` NaN when the bot did not report it). The rules, also in
docs/analytics.md:

* Entries and exits are paired by ``(bot, symbol, position)``. A position's direction is
  its first entry's side (buy = long, sell = short); its entry price is the
  quantity-weighted average of its entries.
* Every exit closes ``qty`` of its position (partial exits are normal). Its realized P&L
  is the exit's ``pnl`` field when present (the bot's own figure, fees included);
  otherwise ``direction * (exit price - average entry price) * qty`` minus the exit's fee
  and the matching share of the entry fees. An exit with no ``pnl`` and no entry in the
  data has an unknown P&L and is left out of every figure (counted in ``unpaired_exits``).
* A *trade* is a position with at least one exit; its P&L is the sum of its exits'.
  A win is a trade with P&L > 0. Holding time counts fully closed positions only
  (first entry to last exit).
* Unrealized P&L: the open quantity of each position valued at the symbol's last price,
  before fees. Total P&L = realized + unrealized.
* The equity curve is ``capital`` plus cumulative realized P&L at each exit; drawdowns are
  measured on it (peak to trough, absolute and relative to the peak).
* Sharpe and Sortino: daily returns (UTC days, P&L of the exits that day over the equity
  at the start of the day, days without exits count as 0), annualised with sqrt(365)
  (crypto trades every day); undefined (NaN) with fewer than two days or no dispersion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from server.analytics.columns import BOOK_COLUMNS
from server.analytics.risk import (
    _curve,
    _max_drawdown,
    daily_returns,
    equity_curve,
    max_drawdown,
    sharpe_sortino,
)

__all__ = [
    "DEFAULT_CAPITAL",
    "KEY",
    "METRIC_COLUMNS",
    "TRADE_COLUMNS",
    "Book",
    "daily_returns",
    "drop_unexited_before",
    "empty_trades",
    "equity_curve",
    "equity_curves",
    "max_drawdown",
    "normalize_trades",
    "performance_table",
    "positions",
    "prepare",
    "realized_exits",
    "sharpe_sortino",
    "strategy_comparison",
]

#: The trades frame's columns (one row per trade), from the event schema.
TRADE_COLUMNS: Final = BOOK_COLUMNS
KEY: Final = ["bot", "symbol", "position"]
#: Account size assumed for a bot that never reported its equity (relative drawdown, returns).
DEFAULT_CAPITAL: Final = 10_000.0
#: Open quantity below this share of the entered quantity counts as closed (float dust).
_CLOSED_SHARE: Final = 1e-9
Grouping = Literal["bot", "strategy", "all"]

METRIC_COLUMNS: Final = (
    "trade_count",
    "wins",
    "losses",
    "win_rate",
    "realized_pnl",
    "unrealized_pnl",
    "total_pnl",
    "open_positions",
    "gross_profit",
    "gross_loss",
    "profit_factor",
    "expectancy",
    "max_drawdown",
    "max_drawdown_pct",
    "drawdown_start",
    "drawdown_end",
    "sharpe",
    "sortino",
    "avg_holding_s",
    "best_trade",
    "worst_trade",
    "capital",
    "unpaired_exits",
)


def empty_trades() -> pd.DataFrame:
    """A trades frame with no rows and the right dtypes."""
    return normalize_trades(pd.DataFrame({c: [] for c in TRADE_COLUMNS}))


def normalize_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """Coerce dtypes and sort by time (stable, so same-ms events keep their order)."""
    frame = trades.loc[:, list(TRADE_COLUMNS)].copy()
    frame["ts"] = frame["ts"].astype("int64")
    for column in ("price", "qty", "fee", "pnl"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["fee"] = frame["fee"].fillna(0.0)
    for column in ("bot", "strategy", "symbol", "side", "action", "position"):
        if frame[column].dtype != object:  # object, not pandas' str dtype: cheaper for these few ops
            frame[column] = frame[column].astype(str).astype(object)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Book:
    """Trades prepared once for every table: the trades, one row per exit, one row per position."""

    trades: pd.DataFrame
    exits: pd.DataFrame
    positions: pd.DataFrame


def _position_ids(trades: pd.DataFrame) -> tuple[np.ndarray, int]:
    # One integer per (bot, symbol, position): factorize each column, then the combined code.
    combined = np.zeros(len(trades), dtype="int64")
    for column in ("bot", "symbol", "position"):
        codes, uniques = pd.factorize(trades[column].to_numpy(dtype=object))
        combined = combined * (len(uniques) + 1) + codes
    ids, uniques = pd.factorize(combined)
    return ids.astype("int64"), len(uniques)


def _first_per(ids: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """For each id, the first of ``rows`` (ascending) that carries it; -1 when none does."""
    first = np.full(count, -1, dtype="int64")
    unique, where = np.unique(ids[rows], return_index=True)
    first[unique] = rows[where]
    return first


def _last_per(ids: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    last = np.full(count, -1, dtype="int64")
    unique, where = np.unique(ids[rows][::-1], return_index=True)
    last[unique] = rows[::-1][where]
    return last


def prepare(trades: pd.DataFrame | Book, last_prices: Mapping[str, float] | None = None) -> Book:
    """Pair entries and exits once (see the module doc); reuse the result for every table."""
    if isinstance(trades, Book):
        return trades
    trades = normalize_trades(trades)
    pid, count = _position_ids(trades)
    action = trades["action"].to_numpy(dtype=object)
    side = trades["side"].to_numpy(dtype=object)
    ts = trades["ts"].to_numpy(dtype="int64")
    price = trades["price"].to_numpy(dtype="float64")
    qty = trades["qty"].to_numpy(dtype="float64")
    fee = trades["fee"].to_numpy(dtype="float64")
    entry_rows = np.flatnonzero(action == "entry")
    exit_rows = np.flatnonzero(action == "exit")
    e_pid, x_pid = pid[entry_rows], pid[exit_rows]
    entry_qty = np.bincount(e_pid, qty[entry_rows], count)
    has_entry = np.bincount(e_pid, minlength=count) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_entry = np.where(
            has_entry, np.bincount(e_pid, price[entry_rows] * qty[entry_rows], count) / entry_qty, np.nan
        )
    entry_fee = np.bincount(e_pid, fee[entry_rows], count)
    first_entry = _first_per(pid, entry_rows, count)
    entry_side = np.where(first_entry >= 0, side[np.maximum(first_entry, 0)], None)
    entry_ts = np.where(first_entry >= 0, ts[np.maximum(first_entry, 0)].astype("float64"), np.nan)
    # Exits: long when the first entry bought; with no entry, an exit that sells closes a long.
    x_side = entry_side[x_pid]
    x_long = np.where(x_side != None, x_side == "buy", side[exit_rows] == "sell")  # noqa: E711
    direction = np.where(x_long, 1.0, -1.0)
    x_qty = qty[exit_rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        fee_share = entry_fee[x_pid] * x_qty / entry_qty[x_pid]
        computed = direction * (price[exit_rows] - avg_entry[x_pid]) * x_qty - fee[exit_rows] - fee_share
    reported_pnl = trades["pnl"].to_numpy(dtype="float64")[exit_rows]
    reported = ~np.isnan(reported_pnl)
    realized = np.where(reported, reported_pnl, computed)
    known = ~np.isnan(realized)
    exits = (
        trades.iloc[exit_rows]
        .assign(
            entry_side=x_side,
            avg_entry=avg_entry[x_pid],
            direction=direction,
            realized=realized,
            pnl_source=np.where(reported, "reported", np.where(known, "computed", "unknown")),
        )
        .reset_index(drop=True)
    )
    exit_qty = np.bincount(x_pid, x_qty, count)
    exit_count = np.bincount(x_pid, minlength=count)
    known_count = np.bincount(x_pid[known], minlength=count)
    realized_sum = np.where(known_count > 0, np.bincount(x_pid[known], realized[known], count), np.nan)
    first_exit, last_exit = _first_per(pid, exit_rows, count), _last_per(pid, exit_rows, count)
    first_exit_ts = np.where(first_exit >= 0, ts[np.maximum(first_exit, 0)].astype("float64"), np.nan)
    last_exit_ts = np.where(last_exit >= 0, ts[np.maximum(last_exit, 0)].astype("float64"), np.nan)
    open_qty = np.clip(entry_qty - exit_qty, 0.0, None)
    closed = has_entry & (open_qty <= entry_qty * _CLOSED_SHARE)
    open_qty = np.where(closed | ~has_entry, 0.0, open_qty)
    first_row = _first_per(pid, np.arange(len(trades)), count)
    symbols = trades["symbol"].to_numpy(dtype=object)[first_row]
    prices = pd.Series(dict(last_prices or {}), dtype="float64")
    last_price = pd.Series(symbols).map(prices).to_numpy(dtype="float64")
    is_long = np.asarray(entry_side, dtype=object) == "buy"
    unrealized = np.where(is_long, 1.0, -1.0) * (last_price - avg_entry) * open_qty
    unrealized = np.where((open_qty > 0) & ~np.isnan(unrealized), unrealized, 0.0)
    frame = pd.DataFrame(
        {
            "bot": trades["bot"].to_numpy(dtype=object)[first_row],
            "symbol": symbols,
            "position": trades["position"].to_numpy(dtype=object)[first_row],
            "strategy": trades["strategy"].to_numpy(dtype=object)[
                np.where(first_entry >= 0, first_entry, first_row)
            ],
            "entry_side": entry_side,
            "entry_ts": entry_ts,
            "entry_qty": np.where(has_entry, entry_qty, np.nan),
            "avg_entry": avg_entry,
            "entry_fee": entry_fee,
            "exit_qty": exit_qty,
            "exit_count": exit_count.astype("int64"),
            "first_exit_ts": first_exit_ts,
            "last_exit_ts": last_exit_ts,
            "open_qty": open_qty,
            "closed": closed,
            "realized": realized_sum,
            "holding_s": np.where(closed, (last_exit_ts - entry_ts) / 1000.0, np.nan),
            "last_price": last_price,
            "unrealized": unrealized,
        }
    )
    return Book(trades=trades, exits=exits, positions=frame)


def realized_exits(trades: pd.DataFrame) -> pd.DataFrame:
    """One row per exit with its realized P&L (``realized``) and where it came from (``pnl_source``).

    ``pnl_source`` is ``"reported"`` (the exit's pnl field), ``"computed"`` (from the entry
    price, qty, side and fees) or ``"unknown"`` (no pnl and no entry: ``realized`` is NaN).
    """
    return prepare(trades).exits


def positions(trades: pd.DataFrame, last_prices: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per position: entry, exits so far, open quantity, realized and unrealized P&L."""
    return prepare(trades, last_prices).positions


def _metrics(
    pos: Mapping[str, np.ndarray],
    ex: Mapping[str, np.ndarray],
    capital: float,
    start_ms: int | None,
    end_ms: int | None,
) -> dict[str, object]:
    realized = pos["realized"]
    results = realized[(pos["exit_count"] > 0) & ~np.isnan(realized)]
    wins = int((results > 0).sum())
    losses = int((results < 0).sum())
    gross_profit = float(results[results > 0].sum())
    gross_loss = abs(float(results[results < 0].sum()))
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    else:
        profit_factor = math.inf if gross_profit > 0 else math.nan
    exit_ts, exit_pnl = ex["ts"], ex["realized"]
    realized_total = float(np.nansum(exit_pnl))
    unrealized = float(pos["unrealized"].sum())
    entry_ts = pos["entry_ts"]
    activity = np.concatenate([entry_ts[~np.isnan(entry_ts)], exit_ts.astype("float64")])
    sharpe, sortino = math.nan, math.nan
    first_ms = None
    if len(activity):
        first_ms = int(activity.min()) if start_ms is None else max(int(activity.min()), start_ms)
        last_ms = end_ms if end_ms is not None else int(activity.max())
        sharpe, sortino = sharpe_sortino(daily_returns(exit_ts, exit_pnl, capital, first_ms, last_ms))
    dd, dd_pct, dd_start, dd_end = _max_drawdown(*_curve(exit_ts, exit_pnl, capital, first_ms))
    holding = pos["holding_s"][~np.isnan(pos["holding_s"])]
    count = len(results)
    return {
        "trade_count": count,
        "wins": wins,
        "losses": losses,
        "win_rate": wins / count * 100.0 if count else math.nan,
        "realized_pnl": realized_total,
        "unrealized_pnl": unrealized,
        "total_pnl": realized_total + unrealized,
        "open_positions": int((pos["open_qty"] > 0).sum()),
        "gross_profit": gross_profit,
        "gross_loss": gross_loss,
        "profit_factor": profit_factor,
        "expectancy": float(results.mean()) if count else math.nan,
        "max_drawdown": dd,
        "max_drawdown_pct": dd_pct,
        "drawdown_start": dd_start,
        "drawdown_end": dd_end,
        "sharpe": sharpe,
        "sortino": sortino,
        "avg_holding_s": float(holding.mean()) if len(holding) else math.nan,
        "best_trade": float(results.max()) if count else math.nan,
        "worst_trade": float(results.min()) if count else math.nan,
        "capital": capital,
        "unpaired_exits": int(ex["unknown"].sum()),
    }


def _groups(frame: pd.DataFrame, by: Grouping) -> dict[Any, np.ndarray]:
    if by == "all":
        return {"all": np.arange(len(frame))} if len(frame) else {}
    return {name: np.asarray(rows) for name, rows in frame.groupby(by, sort=True).indices.items()}


_POSITION_ARRAYS: Final = ("realized", "exit_count", "unrealized", "entry_ts", "holding_s", "open_qty")


def performance_table(
    trades: pd.DataFrame | Book,
    last_prices: Mapping[str, float] | None = None,
    *,
    by: Grouping = "bot",
    capital: Mapping[str, float] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> pd.DataFrame:
    """Every metric per bot, per strategy or overall (``by="all"``), one row per group.

    ``trades`` is a trades frame or a :class:`Book` from :func:`prepare` (then
    ``last_prices`` was given there). ``capital`` maps bot names to their account size
    (default :data:`DEFAULT_CAPITAL`); a strategy's capital is the sum of its bots'.
    ``start_ms``/``end_ms`` bound the day range of the daily returns. Indexed by the
    group; ``strategy`` (per bot) or ``bots`` (per strategy / overall) says who is in it.
    Drawdown start/end are UTC Timestamps.
    """
    book = prepare(trades, last_prices)
    held = book.positions
    exits = book.exits.sort_values("ts", kind="stable").reset_index(drop=True)
    pos_arrays = {name: held[name].to_numpy(dtype="float64") for name in _POSITION_ARRAYS}
    pos_bots = held["bot"].to_numpy(dtype=object)
    pos_strategies = held["strategy"].to_numpy(dtype=object)
    exit_arrays = {
        "ts": exits["ts"].to_numpy(dtype="int64"),
        "realized": exits["realized"].to_numpy(dtype="float64"),
        "unknown": (exits["pnl_source"] == "unknown").to_numpy(),
    }
    exit_groups = _groups(exits, by)
    empty = np.array([], dtype="int64")
    rows: list[dict[str, object]] = []
    for name, where in _groups(held, by).items():
        bots = sorted(set(pos_bots[where]))
        row: dict[str, object] = {by if by != "all" else "group": name}
        if by == "bot":
            row["strategy"] = str(pos_strategies[where[0]])
        else:
            row["bots"] = len(bots)
        group_capital = sum(float((capital or {}).get(b, DEFAULT_CAPITAL)) for b in bots)
        exit_where = exit_groups.get(name, empty)
        pos = {key: values[where] for key, values in pos_arrays.items()}
        ex = {key: values[exit_where] for key, values in exit_arrays.items()}
        row.update(_metrics(pos, ex, group_capital, start_ms, end_ms))
        rows.append(row)
    index_name = by if by != "all" else "group"
    lead = [index_name, "strategy"] if by == "bot" else [index_name, "bots"]
    table = pd.DataFrame(rows, columns=[*lead, *METRIC_COLUMNS])
    for column in ("drawdown_start", "drawdown_end"):
        table[column] = pd.to_datetime(table[column].astype("Int64"), unit="ms", utc=True)
    return table.set_index(index_name)


def drop_unexited_before(trades: pd.DataFrame, start_ms: int) -> pd.DataFrame:
    """Keep trades from ``start_ms`` on, and earlier entries only of positions exited since.

    A window's performance counts positions exited inside it; their earlier entries are
    needed for pairing. Earlier entries of other positions are dropped (those positions
    were closed before the window, or are open and were opened before it).
    """
    early = trades["ts"].to_numpy() < start_ms
    if not early.any():
        return trades
    keys = (
        trades["bot"].astype(str)
        + "\x1f"
        + trades["symbol"].astype(str)
        + "\x1f"
        + trades["position"].astype(str)
    )
    exited = set(keys[(~early) & (trades["action"] == "exit").to_numpy()])
    return trades[~early | keys.isin(exited).to_numpy()]


def strategy_comparison(
    trades: pd.DataFrame | Book,
    last_prices: Mapping[str, float] | None = None,
    *,
    capital: Mapping[str, float] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> pd.DataFrame:
    """Per-strategy performance ranked by total P&L (``rank`` 1 = best)."""
    table = performance_table(
        trades, last_prices, by="strategy", capital=capital, start_ms=start_ms, end_ms=end_ms
    )
    table = table.sort_values("total_pnl", ascending=False, kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def equity_curves(
    trades: pd.DataFrame | Book,
    *,
    capital: Mapping[str, float] | None = None,
    start_ms: int | None = None,
    by: Literal["bot", "strategy"] = "bot",
) -> pd.DataFrame:
    """Equity and drawdown after every exit per bot (or strategy), long format, with a ``timestamp``.

    Each curve starts at the group's capital at its first trade (or ``start_ms`` if later).
    """
    book = prepare(trades)
    exits = book.exits.sort_values("ts", kind="stable").reset_index(drop=True)
    first_activity = book.trades.groupby(by)["ts"].min()
    members = book.trades.groupby(by)["bot"].unique()
    frames = []
    for name, where in _groups(exits, by).items():
        group = exits.iloc[where]
        bots = set(members[name])
        group_capital = sum(float((capital or {}).get(b, DEFAULT_CAPITAL)) for b in bots)
        first = int(first_activity[name])
        start = max(first, start_ms) if start_ms is not None else first
        curve = equity_curve(group["ts"].to_numpy(), group["realized"].to_numpy(), group_capital, start)
        curve.insert(0, by, name)
        frames.append(curve)
    columns = [by, "ts", "pnl", "equity", "peak", "drawdown", "drawdown_pct"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in columns})
    out["timestamp"] = pd.to_datetime(out["ts"].astype("int64"), unit="ms", utc=True)
    return out
