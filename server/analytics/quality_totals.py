"""The batch's per-(bot, strategy) sums: server/analytics/quality_batch.py's last step.

Every grouping here is by one integer per row (:func:`group_ids`: the bot's and strategy's
category codes combined), not by the two names: pandas groups integers in a fraction of the
time it takes to group names, and the sums are the same grouped sums in the same row order.
A row with a missing name is in no group, as when grouping by the names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from server.analytics.quality import DAY_MS, QualityRules, drawdown_pct

#: A group id's (bot, strategy).
KeyOf = Callable[[int], tuple[str, str]]


def group_ids(bots: pd.Series, strategies: pd.Series) -> tuple[np.ndarray[Any, Any], KeyOf]:
    """Each row's (bot, strategy) as one integer (-1: a missing name), and the names of an id."""
    bot_codes, bot_names = category_codes(bots)
    strategy_codes, strategy_names = category_codes(strategies)
    width = max(1, len(strategy_names))
    bot_texts, strategy_texts = [str(n) for n in bot_names], [str(n) for n in strategy_names]
    ids = np.where((bot_codes >= 0) & (strategy_codes >= 0), bot_codes * width + strategy_codes, -1)

    def key_of(group_id: int) -> tuple[str, str]:
        return bot_texts[group_id // width], strategy_texts[group_id % width]

    return ids, key_of


def category_codes(values: pd.Series) -> tuple[np.ndarray[Any, Any], Any]:
    """A column's codes (-1: missing) and the names they stand for."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy().astype("int64"), values.cat.categories
    codes, uniques = pd.factorize(values)
    return codes.astype("int64"), uniques


def counts(bots: pd.Series, strategies: pd.Series) -> dict[tuple[str, str], int]:
    """Rows per (bot, strategy)."""
    ids, key_of = group_ids(bots, strategies)
    found, number = np.unique(ids[ids >= 0], return_counts=True)
    return {key_of(int(i)): int(n) for i, n in zip(found, number, strict=True)}


def calibration(per_signal: pd.DataFrame, buckets: dict[tuple[str, str], list[list[float]]]) -> None:
    """Each group's confidence buckets: signals, linked, resolved, hits, P&L sum and squares
    (one grouped sum, not a pass per bucket)."""
    if per_signal.empty:
        return
    ids, key_of = group_ids(per_signal["bot"], per_signal["strategy"])
    bucket = per_signal["bucket"].to_numpy().astype("int64")
    width = int(bucket.max()) + 1
    resolved = per_signal["resolved"].to_numpy(dtype=bool)
    pnl = np.where(resolved, per_signal["pnl"].to_numpy(dtype="float64"), 0.0)
    parts = pd.DataFrame(
        {
            "n": 1,
            "linked": (per_signal["fills"].to_numpy() > 0).astype("int64"),
            "resolved": resolved.astype("int64"),
            "hits": (resolved & (pnl > 0)).astype("int64"),
            "pnl": pnl,
            "squares": pnl * pnl,
        }
    )
    sums = parts.groupby(np.where(ids >= 0, ids * width + bucket, -1), sort=False).sum()
    for at, n, linked, solved, hits, total, squares in zip(
        sums.index,
        *(sums[c].to_numpy() for c in ("n", "linked", "resolved", "hits", "pnl", "squares")),
        strict=True,
    ):
        if at >= 0:
            table = buckets[key_of(int(at) // width)]
            table[int(at) % width] = [
                int(n),
                int(linked),
                int(solved),
                int(hits),
                float(total),
                float(squares),
            ]


def signal_totals(per_signal: pd.DataFrame, group: Any) -> None:
    """Each group's signals, linked ones, latency and slippage (one grouped sum, not a frame per group)."""
    if per_signal.empty:
        return
    ids, key_of = group_ids(per_signal["bot"], per_signal["strategy"])
    linked = per_signal["fills"].to_numpy() > 0
    latency = per_signal["latency"].to_numpy(dtype="float64")
    slippage = per_signal["slippage"].to_numpy(dtype="float64")
    slipped = linked & ~np.isnan(slippage)
    parts = pd.DataFrame(
        {
            "n": 1,
            "linked": linked.astype("int64"),
            "latency": np.where(linked, latency, 0.0),
            "slippage": np.where(slipped, slippage, 0.0),
            "slipped": slipped.astype("int64"),
        }
    )
    sums = parts.groupby(ids, sort=False).sum()
    sums["latency_max"] = pd.Series(np.where(linked, latency, -np.inf)).groupby(ids, sort=False).max()
    for at, n, count, latency_sum, slippage_sum, slipped_count, latency_max in zip(
        sums.index, *(sums[c].to_numpy() for c in sums.columns), strict=True
    ):
        if at < 0:
            continue
        g = group(key_of(int(at)))
        g.signals, g.linked = int(n), int(count)
        g.unlinked = g.signals - g.linked
        if count:
            g.latency_sum, g.latency_max = float(latency_sum), int(latency_max)
        g.slippage_sum, g.slippage_count = float(slippage_sum), int(slipped_count)


def trade_totals(positions: pd.DataFrame, group: Any) -> None:
    """Each group's closed positions: count, wins, P&L, gross profit and loss (one grouped sum)."""
    closed = positions[positions["closed"]]
    if closed.empty:
        return
    ids, key_of = group_ids(closed["group_bot"], closed["group_strategy"])
    pnl = closed["realised"].to_numpy(dtype="float64")
    parts = pd.DataFrame(
        {
            "n": 1,
            "wins": (pnl > 0).astype("int64"),
            "pnl": pnl,
            "profit": np.where(pnl > 0, pnl, 0.0),
            "loss": np.where(pnl < 0, -pnl, 0.0),
        }
    )
    sums = parts.groupby(ids, sort=False).sum()
    for at, n, wins, total, profit, loss in zip(
        sums.index, *(sums[c].to_numpy() for c in ("n", "wins", "pnl", "profit", "loss")), strict=True
    ):
        if at < 0:
            continue
        g = group(key_of(int(at)))
        g.trades, g.wins = int(n), int(wins)
        g.trade_pnl, g.gross_profit, g.gross_loss = float(total), float(profit), float(loss)


def curves(trades: pd.DataFrame, rules: QualityRules, group: Any) -> None:
    """Realised equity after each exit per group: total, peak, deepest drawdown (grouped running
    sums and maxima over the whole frame, not a pass per group)."""
    booked = trades[trades["realised"].notna()]
    if booked.empty:
        return
    ids, key_of = group_ids(booked["group_bot"], booked["group_strategy"])
    realised = pd.Series(booked["realised"].to_numpy(dtype="float64"))
    cumulative = realised.groupby(ids, sort=False).cumsum()
    equity = rules.capital + cumulative
    peak = np.maximum(equity.groupby(ids, sort=False).cummax(), rules.capital)
    curve = pd.DataFrame({"cumulative": cumulative, "peak": peak, "drawdown": peak - equity})
    by_group = curve.groupby(ids, sort=False)
    last = by_group[["cumulative", "peak"]].last()
    # The first row of each group's deepest drawdown (the curve's index is its row number).
    deepest = by_group["drawdown"].idxmax().reindex(last.index).to_numpy()
    drawdowns, peaks = curve["drawdown"].to_numpy(), curve["peak"].to_numpy()
    for at, cumulative_last, peak_last, row in zip(
        last.index, last["cumulative"].to_numpy(), last["peak"].to_numpy(), deepest, strict=True
    ):
        if at < 0:
            continue
        g = group(key_of(int(at)))
        g.realised, g.peak = float(cumulative_last), float(peak_last)
        if float(drawdowns[row]) > 0:
            g.max_drawdown = float(drawdowns[row])
            g.max_drawdown_pct = drawdown_pct(g.max_drawdown, float(peaks[row]))


def latest_days(signals: pd.DataFrame, trades: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Each group's day of its latest signal or trade (where its Sharpe/Sortino window ends)."""
    latest: dict[tuple[str, str], int] = {}
    for frame, names in ((signals, ("bot", "strategy")), (trades, ("group_bot", "group_strategy"))):
        ids, key_of = group_ids(frame[names[0]], frame[names[1]])
        maxima = frame["ts"].groupby(ids).max()
        for at, ts in zip(maxima.index.to_numpy(), maxima.to_numpy(), strict=True):
            if at >= 0:
                key = key_of(int(at))
                latest[key] = max(latest.get(key, int(ts)), int(ts))
    return {key: ts // DAY_MS for key, ts in latest.items()}


def daily_pnl(trades: pd.DataFrame) -> dict[tuple[str, str], dict[int, float]]:
    """Each group's realised P&L per day."""
    booked = trades[trades["realised"].notna()]
    ids, key_of = group_ids(booked["group_bot"], booked["group_strategy"])
    days = booked["ts"].to_numpy().astype("int64") // DAY_MS
    realised = pd.Series(booked["realised"].to_numpy(dtype="float64"))
    out: dict[tuple[str, str], dict[int, float]] = {}
    if not len(days):
        return out
    first, span = int(days.min()), int(days.max() - days.min()) + 1
    if span * (int(ids.max()) + 2) < 2**62:  # (group, day) as one integer: one key to group by
        sums = realised.groupby(np.where(ids >= 0, ids * span + (days - first), -1)).sum()
        keys = zip(sums.index // span, sums.index % span + first, strict=True)
        valid = sums.index.to_numpy() >= 0
    else:
        sums = realised.groupby([ids, days]).sum()
        keys = zip(sums.index.get_level_values(0), sums.index.get_level_values(1), strict=True)
        valid = sums.index.get_level_values(0).to_numpy() >= 0
    for (at, day), pnl, ok in zip(keys, sums.to_numpy(), valid, strict=True):
        if ok:
            out.setdefault(key_of(int(at)), {})[int(day)] = float(pnl)
    return out
