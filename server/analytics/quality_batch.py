"""Signal quality in one pass over a frame of events (pandas, vectorised).

The same rules as the live :class:`~server.analytics.quality_stream.QualityStream`
(server/analytics/quality.py has them); the stream's snapshot after any prefix of events
equals :func:`quality_batch` over that prefix (tests/server/analytics/test_quality.py).

Input: one row per event in fold order with :data:`EVENT_COLUMNS` (``kind`` is ``signal``,
``trade`` or ``candle``; a column a kind lacks is NaN/None). :func:`events_frame` builds it
from ``(kind, symbol, seq, fields)`` tuples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from server.analytics.quality import (
    CLOSED_SHARE,
    EVENT_COLUMNS,
    GroupTotals,
    QualityRules,
    group_row,
    signal_seq_of,
)
from server.analytics.quality_totals import (
    calibration,
    category_codes,
    counts,
    curves,
    daily_pnl,
    latest_days,
    signal_totals,
    trade_totals,
)

_NUMBERS: Final = ("confidence", "price", "qty", "fee", "pnl", "close")
_POSITION: Final = ["bot", "symbol", "position"]
_GROUP: Final = ["bot", "strategy"]


def events_frame(events: Iterable[tuple[str, str, int, Mapping[str, Any]]]) -> pd.DataFrame:
    """The batch's input frame from ``(kind, symbol, seq, fields)`` in fold order."""
    rows = []
    for kind, symbol, seq, fields in events:
        row = {name: fields.get(name) for name in EVENT_COLUMNS[3:-1]}
        row.update(kind=kind, symbol=symbol, seq=seq, signal_seq=signal_seq_of(fields.get("meta")))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    for name in _NUMBERS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame["signal_seq"] = frame["signal_seq"].astype("Int64")
    return frame


def _key(value: Any) -> tuple[str, str]:
    """A groupby key as the (bot, strategy) it is."""
    bot, strategy = value
    return str(bot), str(strategy)


#: Text columns the batch compares and groups by: as categories, each is factorised once (not by
#: every groupby and comparison: that was most of the batch's time).
_CATEGORIES: Final = ("kind", "symbol", "bot", "strategy", "type", "side", "action", "position")


def _categorical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({name: "category" for name in _CATEGORIES})


def _usable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the stream folds in: known kinds with finite numbers (qty > 0 on trades)."""
    finite = {name: np.isfinite(frame[name].to_numpy(dtype="float64")) for name in _NUMBERS}
    fee_ok = frame["fee"].isna().to_numpy() | finite["fee"]
    pnl_ok = frame["pnl"].isna().to_numpy() | finite["pnl"]
    signal = (frame["kind"] == "signal").to_numpy() & finite["confidence"] & finite["price"]
    trade = (
        (frame["kind"] == "trade").to_numpy()
        & finite["price"]
        & finite["qty"]
        & (frame["qty"].to_numpy() > 0)
        & fee_ok
        & pnl_ok
    )
    candle = (frame["kind"] == "candle").to_numpy() & finite["close"]
    usable: pd.DataFrame = frame[signal | trade | candle]
    return usable


def quality_batch(events: pd.DataFrame, rules: QualityRules | None = None) -> list[dict[str, Any]]:
    """One row per (bot, strategy), sorted: the KPIs and calibration of every event in ``events``."""
    rules = rules or QualityRules()
    frame = _usable(events.reset_index(drop=True).assign(order=np.arange(len(events))))
    if frame.empty:
        return []
    frame = _categorical(frame)
    signals = frame[frame["kind"] == "signal"]
    calls = signals[signals["type"].isin(["buy", "sell"])].copy()
    calls["direction"] = np.where(calls["type"] == "buy", 1, -1)
    calls["bucket"] = np.clip(
        (calls["confidence"].to_numpy() * rules.buckets).astype("int64"), 0, rules.buckets - 1
    )
    trades = frame[frame["kind"] == "trade"].copy()
    trades["fee"] = trades["fee"].fillna(0.0)
    trades["direction"] = np.where(trades["side"] == "buy", 1, -1)
    trades, positions = _positions(trades)
    fills, unknown = _fills(trades, calls, rules)
    per_signal = _per_signal(calls, fills, positions)

    totals: dict[tuple[str, str], GroupTotals] = {}
    buckets: dict[tuple[str, str], list[list[float]]] = {}

    def group(key: tuple[str, str]) -> GroupTotals:
        if key not in totals:
            totals[key] = GroupTotals(peak=rules.capital)
            buckets[key] = [[0, 0, 0, 0, 0.0, 0.0] for _ in range(rules.buckets)]
        return totals[key]

    holds = signals[signals["type"] == "hold"]
    for key, count in counts(holds["bot"], holds["strategy"]).items():
        group(key).holds = count
    signal_totals(per_signal, group)
    calibration(per_signal, buckets)
    trade_totals(positions, group)
    curves(trades, rules, group)
    entry_rows = trades[trades["action"] == "entry"]
    unpaired = trades[trades["unpaired"]]
    for rows, field in ((entry_rows, "entries"), (fills, "linked_entries"), (unknown, "unknown_links")):
        for key, count in counts(rows["group_bot"], rows["group_strategy"]).items():
            setattr(group(key), field, count)
    for key, count in counts(unpaired["group_bot"], unpaired["group_strategy"]).items():
        group(key).unpaired_exits = count

    unrealised = _unrealised(frame, positions)
    day_pnl = daily_pnl(trades)
    last_days = latest_days(signals, trades)
    return [
        group_row(
            rules,
            bot,
            strategy,
            totals[(bot, strategy)],
            buckets[(bot, strategy)],
            unrealised=unrealised.get((bot, strategy), 0.0),
            day_pnl=day_pnl.get((bot, strategy), {}),
            last_day=last_days.get((bot, strategy)),
        )
        for bot, strategy in sorted(totals)
    ]


def _positions(trades: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each trade with its position's state at that point; and each position's final state.

    The (bot, symbol, position) key is factorised once into an integer id: grouping by three
    categories again for every running sum was most of this function's time. The running sums
    are still pandas' grouped cumsums (the same arithmetic, in fold order); a trade with a
    missing key is in no position (NaN running sums), as when grouping by the names.
    """
    pid = _position_ids(trades)
    known = pid >= 0
    rows = np.flatnonzero(known)
    first = rows[np.unique(pid[rows], return_index=True)[1]]
    last = rows[len(rows) - 1 - np.unique(pid[rows][::-1], return_index=True)[1]]

    def cumsum(*columns: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Running sums per position, one column each (NaN where a trade is in none)."""
        running = pd.DataFrame(dict(enumerate(columns))).groupby(pid, sort=False).cumsum()
        return np.where(known[:, None], running.to_numpy(dtype="float64"), np.nan)

    trades["group_bot"] = trades["bot"].array.take(np.where(known, np.arange(len(pid)), -1), allow_fill=True)
    strategy = _first_where(trades["strategy"].notna().to_numpy() & known, pid, len(first))
    trades["group_strategy"] = trades["strategy"].array.take(
        np.where(known, strategy[np.maximum(pid, 0)], -1), allow_fill=True
    )
    entry = (trades["action"] == "entry").to_numpy()
    qty, price, fee = (trades[name].to_numpy(dtype="float64") for name in ("qty", "price", "fee"))
    direction = trades["direction"].to_numpy()
    trades["q_e"] = np.where(entry, qty, 0.0)
    trades["v_e"] = np.where(entry, price * qty, 0.0)
    trades["f_e"] = np.where(entry, fee, 0.0)
    trades["d_e"] = np.where(entry, direction, 0)
    running = cumsum(*(trades[name].to_numpy() for name in ("q_e", "v_e", "f_e")))
    for j, name in enumerate(("q_e", "v_e", "f_e")):
        trades["cum_" + name] = running[:, j]
    entered = trades["cum_q_e"].to_numpy()
    exiting = ~entry
    given = trades["pnl"].notna().to_numpy()
    # A position's direction is its first entry's (0 when it has none).
    first_entry = _first_where(entry & known, pid, len(first))
    position_direction = np.where(first_entry >= 0, direction[np.maximum(first_entry, 0)], 0).astype("int64")
    trades["pos_direction"] = np.where(known, position_direction[np.maximum(pid, 0)], 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        average = trades["cum_v_e"].to_numpy() / entered
        share = trades["cum_f_e"].to_numpy() * qty / entered
        computed = trades["pos_direction"].to_numpy() * (price - average) * qty - fee - share
    trades["unpaired"] = exiting & ~given & (entered <= 0)
    realised = np.where(given, trades["pnl"].to_numpy(), computed)
    trades["realised"] = np.where(exiting & ~trades["unpaired"].to_numpy(), realised, np.nan)
    trades["q_x"] = np.where(exiting, qty, 0.0)
    trades["booked"] = trades["realised"].fillna(0.0)
    ends = cumsum(trades["q_x"].to_numpy(), trades["booked"].to_numpy())[last]
    positions = pd.DataFrame(
        {
            "group_bot": trades["group_bot"].array.take(first),
            "group_strategy": trades["group_strategy"].array.take(first),
            "direction": position_direction,
            "entered": entered[last],
            "entry_value": trades["cum_v_e"].to_numpy()[last],
            "exited": ends[:, 0],
            "realised": ends[:, 1],
        },
        index=pd.MultiIndex.from_frame(trades[_POSITION].iloc[first]),
    )
    positions["closed"] = (positions["entered"] > 0) & (
        positions["exited"] >= positions["entered"] * (1 - CLOSED_SHARE)
    )
    return trades, positions


def _position_ids(trades: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Each trade's (bot, symbol, position) as an integer, numbered by first appearance (-1: a
    missing name): the three names' codes combined, so no three-column grouping is needed."""
    codes = [category_codes(trades[name]) for name in _POSITION]
    widths = [max(1, len(names)) for _codes, names in codes]
    known = np.logical_and.reduce([c >= 0 for c, _names in codes])
    ids = np.full(len(trades), -1, dtype="int64")
    if math.prod(widths) >= 2**62:  # too many names to combine: group by the three columns
        ngroup = trades.groupby(_POSITION, sort=False).ngroup()
        return ngroup.fillna(-1).to_numpy(dtype="int64")
    combined = (codes[0][0] * widths[1] + codes[1][0]) * widths[2] + codes[2][0]
    ids[known] = pd.factorize(combined[known])[0]  # codes in order of first appearance
    return ids


def _first_where(mask: np.ndarray[Any, Any], ids: np.ndarray[Any, Any], count: int) -> np.ndarray[Any, Any]:
    """Per id in ``range(count)``, the first row where ``mask`` holds (-1: none): pandas'
    grouped ``first``, which skips missing values."""
    rows = np.flatnonzero(mask)
    found, at = np.unique(ids[rows], return_index=True)  # at: each id's first occurrence
    out = np.full(count, -1, dtype="int64")
    out[found] = rows[at]
    return out


def _fills(
    trades: pd.DataFrame, calls: pd.DataFrame, rules: QualityRules
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Entries with the signal they link to (``signal`` = its order); and named links not found."""
    entries = trades[trades["action"] == "entry"]
    named = entries[entries["signal_seq"].notna()]
    unnamed = entries[entries["signal_seq"].isna()]
    signal_ids = calls[["symbol", "seq", "bot", "order"]].rename(
        columns={"order": "signal", "seq": "signal_seq"}
    )
    signal_ids["signal_seq"] = signal_ids["signal_seq"].astype("Int64")
    explicit = named.reset_index().merge(signal_ids, on=["symbol", "signal_seq", "bot"], how="left")
    explicit = explicit[explicit["signal"].isna() | (explicit["signal"] < explicit["order"])]
    explicit = explicit.sort_values(["order", "signal"]).groupby("order", sort=False).last().reset_index()
    found = explicit[explicit["signal"].notna()]
    unknown = named[~named["order"].isin(found["order"])]
    keys = ["bot", "strategy", "symbol", "direction"]
    left = unnamed.sort_values("order")
    right = calls[[*keys, "order", "ts"]].rename(columns={"ts": "signal_ts"}).sort_values("order")
    right = right.assign(signal=right["order"])
    implicit = pd.merge_asof(
        left,
        right.drop(columns="order"),
        left_on="order",
        right_on="signal",
        by=keys,
        allow_exact_matches=False,
    )
    lag = implicit["ts"] - implicit["signal_ts"]
    implicit = implicit[implicit["signal"].notna() & (lag >= 0) & (lag <= rules.horizon_ms)]
    columns = [
        "order",
        "signal",
        "ts",
        "price",
        "qty",
        "bot",
        "symbol",
        "position",
        "group_bot",
        "group_strategy",
    ]
    fills = pd.concat([found[columns], implicit[columns]], ignore_index=True)
    fills["signal"] = fills["signal"].astype("int64")
    return fills.sort_values("order"), unknown


def _per_signal(calls: pd.DataFrame, fills: pd.DataFrame, positions: pd.DataFrame) -> pd.DataFrame:
    """Each buy/sell signal: fills, latency, slippage, P&L and whether it is resolved."""
    out = calls.set_index("order")[["bot", "strategy", "bucket", "ts", "price", "direction"]].copy()
    joined = fills.join(positions[["entered", "realised", "closed"]], on=_POSITION)
    joined["share_pnl"] = (
        joined["qty"].to_numpy() / joined["entered"].to_numpy() * joined["realised"].to_numpy()
    )
    joined["value"] = joined["price"].to_numpy() * joined["qty"].to_numpy()
    by_signal = joined.groupby("signal")
    sums = by_signal[["value", "qty", "share_pnl"]].sum()
    # Each signal's row in the grouped results (-1: no fill), found once for every column.
    at = sums.index.get_indexer(out.index)
    filled, row = at >= 0, np.maximum(at, 0)

    def per_call(values: Any, missing: Any = np.nan) -> np.ndarray[Any, Any]:
        if not len(values):
            return np.full(len(at), missing)
        return np.where(filled, np.asarray(values)[row], missing)

    out["fills"] = per_call(by_signal.size().to_numpy(), 0).astype("int64")
    out["first_ts"] = per_call(by_signal["ts"].first().to_numpy(dtype="float64"))
    out["fill_value"] = per_call(sums["value"].to_numpy())
    out["fill_qty"] = per_call(sums["qty"].to_numpy())
    out["pnl"] = per_call(sums["share_pnl"].to_numpy())
    out["resolved"] = per_call(by_signal["closed"].all().to_numpy(), False).astype(bool) & (out["fills"] > 0)
    out["latency"] = out["first_ts"] - out["ts"]
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = out["fill_value"] / out["fill_qty"]
        slippage = out["direction"] * (vwap - out["price"]) / out["price"] * 1e4
    ok = (out["fill_qty"] > 0) & (out["price"] > 0)
    out["slippage"] = slippage.where(ok)
    return out


def _unrealised(frame: pd.DataFrame, positions: pd.DataFrame) -> dict[tuple[str, str], float]:
    candles = frame[frame["kind"] == "candle"]
    marks = candles.groupby("symbol")["close"].last()
    opened = positions[(positions["entered"] > 0) & ~positions["closed"]].sort_index()
    out: dict[tuple[str, str], float] = {}
    for symbol, (_index, row) in zip(opened.index.get_level_values(1), opened.iterrows(), strict=True):
        mark = marks.get(symbol)
        if mark is None:
            continue
        average = row["entry_value"] / row["entered"]
        value = row["direction"] * (mark - average) * (row["entered"] - row["exited"])
        key = (str(row["group_bot"]), str(row["group_strategy"]))
        out[key] = out.get(key, 0.0) + float(value)
    return out
