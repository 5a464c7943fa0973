"""Risk figures of an equity curve: drawdowns, daily returns, Sharpe and Sortino (pure numpy).

Used by :mod:`server.analytics.performance`; the rules are in its module doc and docs/analytics.md.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pandas as pd

DAY_MS: Final = 86_400_000

__all__ = ["DAY_MS", "daily_returns", "equity_curve", "max_drawdown", "sharpe_sortino"]


def _curve(
    exit_ts: np.ndarray, exit_pnl: np.ndarray, capital: float, start_ms: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = ~np.isnan(exit_pnl)
    exit_ts, exit_pnl = exit_ts[keep], exit_pnl[keep]
    first_ts = int(start_ms) if start_ms is not None else (int(exit_ts[0]) if len(exit_ts) else 0)
    ts = np.concatenate([np.array([first_ts], dtype="int64"), exit_ts.astype("int64")])
    equity = capital + np.cumsum(np.concatenate([[0.0], exit_pnl.astype("float64")]))
    return ts, equity, np.maximum.accumulate(equity)


def _max_drawdown(
    ts: np.ndarray, equity: np.ndarray, peak: np.ndarray
) -> tuple[float, float, int | None, int | None]:
    drawdown = peak - equity
    if not len(drawdown) or float(drawdown.max()) <= 0.0:
        return 0.0, 0.0, None, None
    trough = int(drawdown.argmax())
    peak_at = int(np.flatnonzero(equity[: trough + 1] == peak[trough])[-1])
    pct = float(drawdown[trough] / peak[trough] * 100.0) if peak[trough] > 0 else math.nan
    return float(drawdown[trough]), pct, int(ts[peak_at]), int(ts[trough])


def equity_curve(
    exit_ts: np.ndarray, exit_pnl: np.ndarray, capital: float, start_ms: int | None
) -> pd.DataFrame:
    """Equity after each exit (``exit_ts`` ascending, unknown P&L left out).

    Columns ``ts, pnl, equity, peak, drawdown, drawdown_pct``; the first row is the
    starting point (``capital`` at ``start_ms``, else at the first exit), so a first
    losing exit is already a drawdown.
    """
    ts, equity, peak = _curve(exit_ts, exit_pnl, capital, start_ms)
    drawdown = peak - equity
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown_pct = np.where(peak > 0, drawdown / peak * 100.0, np.nan)
    pnl = np.diff(equity, prepend=capital)
    return pd.DataFrame(
        {
            "ts": ts,
            "pnl": pnl,
            "equity": equity,
            "peak": peak,
            "drawdown": drawdown,
            "drawdown_pct": drawdown_pct,
        }
    )


def max_drawdown(curve: pd.DataFrame) -> tuple[float, float, int | None, int | None]:
    """(absolute, % of the peak, peak ts, trough ts) of a curve's deepest drawdown; zeros if none."""
    return _max_drawdown(curve["ts"].to_numpy(), curve["equity"].to_numpy(), curve["peak"].to_numpy())


def daily_returns(
    exit_ts: np.ndarray, exit_pnl: np.ndarray, capital: float, first_ms: int, last_ms: int
) -> np.ndarray:
    """Daily returns, UTC days from ``first_ms``'s day to ``last_ms``'s (days without exits = 0)."""
    keep = ~np.isnan(exit_pnl)
    first_day = first_ms // DAY_MS
    days = max(first_ms, last_ms) // DAY_MS - first_day + 1
    index = (exit_ts[keep] // DAY_MS - first_day).astype("int64")
    inside = (index >= 0) & (index < days)
    pnl = np.bincount(index[inside], weights=exit_pnl[keep][inside], minlength=days)[:days]
    start_equity = capital + np.concatenate([[0.0], np.cumsum(pnl)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(start_equity > 0, pnl / start_equity, np.nan)


def sharpe_sortino(returns: np.ndarray) -> tuple[float, float]:
    """Annualised (sqrt(365)) Sharpe and Sortino of daily returns; NaN when undefined."""
    values = returns[~np.isnan(returns)]
    if len(values) < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    std = float(values.std(ddof=1))
    downside = float(np.sqrt(np.mean(np.minimum(values, 0.0) ** 2)))
    scale = math.sqrt(365.0)
    sharpe = mean / std * scale if std > 1e-15 else math.nan
    sortino = mean / downside * scale if downside > 1e-15 else math.nan
    return sharpe, sortino
