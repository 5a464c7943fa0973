"""Signal quality: the rules shared by the live stream and the batch (pure Python, no pandas).

Does a bot's confidence mean anything, and what did each signal earn? The definitions, also
in docs/analytics.md ("Signal quality"):

* **Attribution.** An entry trade links to one signal: the signal whose ``seq`` its
  ``meta.signal_seq`` names (same symbol and bot, seen before the entry), exactly; else the
  last buy/sell signal seen for the same bot, strategy and symbol in the entry's direction
  (buy = long, sell = short), when ``0 <= entry.ts - signal.ts <= horizon_ms``. A signal may
  lead to several entries (partial fills, scale-ins); one that led to none is *unlinked*,
  counted and never guessed. ``hold`` signals are counted apart.
* **Positions** are ``(bot, symbol, position)`` with the direction of their first entry, at
  average cost: an exit without its own ``pnl`` realises ``direction * (price - A) * qty -
  fee - entry_fees * qty / entered`` with ``A`` the entries-so-far average price. An exit
  before any entry and without ``pnl`` has an unknown P&L (``unpaired_exits``). A position is
  closed when it has entries and ``exited >= entered * (1 - 1e-9)``.
* **A signal's P&L** is the sum, over its entries, of the entry's share of its position's
  entered quantity times that position's realised P&L. It is *resolved* when every position
  it entered is closed; a *hit* is a resolved signal with P&L > 0.
* **Calibration** by confidence bucket ``min(int(confidence * buckets), buckets - 1)``:
  signals, linked, resolved, hits, hit rate with its 95 % Wilson interval, mean P&L per
  resolved signal with its 95 % normal interval.
* **Latency** is the first entry's ts minus the signal's; **slippage** (bps) is
  ``direction * (vwap of its entries - signal price) / signal price * 1e4`` (positive: the
  bot paid more than the signal said).
* **Trades** are closed positions: expectancy (mean P&L), win rate, profit factor (gross
  profit / gross loss).
* **Equity** is ``capital`` plus realised P&L, sampled at each exit, plus at the end the
  unrealised P&L of open positions marked to each symbol's latest candle close (``direction *
  (close - A) * open qty``; no candle yet: 0). Max drawdown runs over those samples; Sharpe and
  Sortino over the daily returns of the last ``window_days`` UTC days up to the group's latest
  signal or trade
  (the last day's P&L includes the unrealised P&L), annualised with sqrt(365).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

#: z of a two-sided 95 % interval.
Z95: Final = 1.959963984540054
DAY_MS: Final = 86_400_000
#: Open quantity below this share of the entered quantity counts as closed (float dust).
CLOSED_SHARE: Final = 1e-9
#: Largest explicit ``meta.signal_seq`` taken as a link (seqs are 63-bit).
MAX_SEQ: Final = 2**63 - 1
#: Sums of P&L below this are float residue (a loss of a billionth of a unit is none).
PNL_DUST: Final = 1e-9
#: Signal types that call for an entry, and their direction.
DIRECTIONS: Final = {"buy": 1, "sell": -1}


#: The columns of one event in the batch's frame and the fold (``kind`` signal, trade or candle).
EVENT_COLUMNS: Final = (
    "kind",
    "symbol",
    "seq",
    "ts",
    "bot",
    "strategy",
    "type",
    "confidence",
    "side",
    "action",
    "price",
    "qty",
    "fee",
    "pnl",
    "position",
    "close",
    "signal_seq",
)


@dataclass(frozen=True, kw_only=True)
class QualityRules:
    """The knobs of signal quality: attribution horizon, confidence buckets, capital, window."""

    #: An entry links to the last signal at most this old (ms) when it names none.
    horizon_ms: int = 300_000
    #: Confidence buckets of equal width over [0, 1].
    buckets: int = field(default=10)
    #: Equity a group starts from (returns and relative drawdown).
    capital: float = 10_000.0
    #: Days of daily returns behind Sharpe and Sortino.
    window_days: int = 30

    def __post_init__(self) -> None:
        if self.horizon_ms < 0:
            raise ValueError("horizon_ms must be >= 0")
        if not 1 <= self.buckets <= 100:
            raise ValueError("buckets must be in 1..100")
        if not (math.isfinite(self.capital) and self.capital > 0):
            raise ValueError("capital must be a positive number")
        if not 2 <= self.window_days <= 3650:
            raise ValueError("window_days must be in 2..3650")

    def bucket(self, confidence: float) -> int:
        """The bucket of a confidence in [0, 1]."""
        return max(0, min(int(confidence * self.buckets), self.buckets - 1))

    def bucket_bounds(self, index: int) -> tuple[float, float]:
        return index / self.buckets, (index + 1) / self.buckets


def signal_seq_of(meta: Any) -> int | None:
    """``meta.signal_seq`` when it is a usable seq (an int, not a bool, 1..2**63-1), else None."""
    if not isinstance(meta, dict):
        return None
    value = meta.get("signal_seq")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SEQ:
        return None
    return value


def wilson(hits: int, n: int) -> tuple[float | None, float | None]:
    """The 95 % Wilson score interval of ``hits`` out of ``n``; (None, None) when n == 0."""
    if n <= 0:
        return None, None
    p = hits / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(n: int, total: float, squares: float) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): the mean and its 95 % normal interval from n, sum and sum of squares."""
    if n <= 0:
        return None, None, None
    mean = total / n
    if n < 2:
        return mean, None, None
    variance = max(0.0, (squares - total * total / n) / (n - 1))
    half = Z95 * math.sqrt(variance / n)
    return mean, mean - half, mean + half


def sharpe_sortino(returns: Sequence[float]) -> tuple[float | None, float | None]:
    """Annualised (sqrt(365)) Sharpe and Sortino of daily returns; None when undefined."""
    values = [r for r in returns if not math.isnan(r)]
    n = len(values)
    if n < 2:
        return None, None
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    downside = math.sqrt(math.fsum(min(v, 0.0) ** 2 for v in values) / n)
    scale = math.sqrt(365.0)
    sharpe = mean / std * scale if std > 1e-15 else None
    sortino = mean / downside * scale if downside > 1e-15 else None
    return sharpe, sortino


def daily_returns(
    day_pnl: dict[int, float], last_day: int, window_days: int, capital: float, unrealised: float
) -> list[float]:
    """Returns of the ``window_days`` UTC days ending ``last_day`` (its P&L plus ``unrealised``)."""
    first_day = last_day - window_days + 1
    equity = capital + math.fsum(p for d, p in day_pnl.items() if d < first_day)
    returns: list[float] = []
    for day in range(first_day, last_day + 1):
        pnl = day_pnl.get(day, 0.0) + (unrealised if day == last_day else 0.0)
        returns.append(pnl / equity if equity > 0 else math.nan)
        equity += pnl
    return returns


def bucket_rows(rules: QualityRules, counts: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    """Calibration rows from per-bucket ``(signals, linked, resolved, hits, pnl sum, pnl squares)``."""
    rows = []
    for index, (signals, linked, resolved, hits, total, squares) in enumerate(counts):
        low, high = rules.bucket_bounds(index)
        n_resolved = int(resolved)
        hit_low, hit_high = wilson(int(hits), n_resolved)
        mean, mean_low, mean_high = mean_interval(n_resolved, total, squares)
        rows.append(
            {
                "bucket": index,
                "confidence_low": low,
                "confidence_high": high,
                "signals": int(signals),
                "linked": int(linked),
                "resolved": n_resolved,
                "hits": int(hits),
                "hit_rate": hits / n_resolved if n_resolved else None,
                "hit_rate_low": hit_low,
                "hit_rate_high": hit_high,
                "mean_pnl": mean,
                "mean_pnl_low": mean_low,
                "mean_pnl_high": mean_high,
            }
        )
    return rows


@dataclass(kw_only=True)
class GroupTotals:
    """What one (bot, strategy) adds up; :func:`group_row` turns it into the published row."""

    signals: int = 0
    holds: int = 0
    linked: int = 0
    unlinked: int = 0
    latency_sum: float = 0.0
    latency_max: int | None = None
    slippage_sum: float = 0.0
    slippage_count: int = 0
    trades: int = 0
    wins: int = 0
    trade_pnl: float = 0.0
    gross_profit: float = 0.0
    gross_loss: float = 0.0
    realised: float = 0.0
    peak: float = 0.0
    max_drawdown: float = 0.0
    max_drawdown_pct: float = 0.0
    entries: int = 0
    linked_entries: int = 0
    unknown_links: int = 0
    unpaired_exits: int = 0


def drawdown_pct(drawdown: float, peak: float) -> float:
    return drawdown / peak * 100.0 if peak > 0 else 0.0


def group_row(
    rules: QualityRules,
    bot: str,
    strategy: str,
    totals: GroupTotals,
    buckets: Sequence[Sequence[float]],
    *,
    unrealised: float,
    day_pnl: dict[int, float],
    last_day: int | None,
) -> dict[str, Any]:
    """The published row of one (bot, strategy): KPIs, equity metrics and calibration."""
    equity = rules.capital + totals.realised + unrealised
    peak = max(totals.peak, rules.capital)
    max_dd, max_dd_pct = totals.max_drawdown, totals.max_drawdown_pct
    if peak - equity > max_dd:
        max_dd, max_dd_pct = peak - equity, drawdown_pct(peak - equity, peak)
    sharpe, sortino = (
        (None, None)
        if last_day is None
        else sharpe_sortino(daily_returns(day_pnl, last_day, rules.window_days, rules.capital, unrealised))
    )
    resolved = int(sum(b[2] for b in buckets))
    hits = int(sum(b[3] for b in buckets))
    losses = totals.trades - totals.wins
    return {
        "bot": bot,
        "strategy": strategy,
        "signals": totals.signals,
        "holds": totals.holds,
        "linked": totals.linked,
        "unlinked": totals.unlinked,
        "resolved": resolved,
        "hits": hits,
        "hit_rate": hits / resolved if resolved else None,
        "latency_mean_ms": totals.latency_sum / totals.linked if totals.linked else None,
        "latency_max_ms": totals.latency_max,
        "slippage_mean_bps": totals.slippage_sum / totals.slippage_count if totals.slippage_count else None,
        "entries": totals.entries,
        "linked_entries": totals.linked_entries,
        "unknown_links": totals.unknown_links,
        "unpaired_exits": totals.unpaired_exits,
        "trades": totals.trades,
        "wins": totals.wins,
        "losses": losses,
        "win_rate": totals.wins / totals.trades if totals.trades else None,
        "expectancy": totals.trade_pnl / totals.trades if totals.trades else None,
        # Below PNL_DUST a gross loss is rounding left by the live fold's retractions, not a loss.
        "profit_factor": totals.gross_profit / totals.gross_loss if totals.gross_loss > PNL_DUST else None,
        "realised_pnl": totals.realised,
        "unrealised_pnl": unrealised,
        "equity": equity,
        "max_drawdown": max_dd,
        "max_drawdown_pct": max_dd_pct,
        "sharpe": sharpe,
        "sortino": sortino,
        "calibration": bucket_rows(rules, buckets),
    }
