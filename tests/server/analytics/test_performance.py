"""Every metric of server.analytics.performance against values computed by hand on small fixtures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from server.analytics import performance as perf
from tests.support.analytics_data import DAY0, DAY_MS, HOUR_MS, trade


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_no_trades_gives_empty_tables_with_every_column() -> None:
    table = perf.performance_table(perf.empty_trades())
    assert table.empty
    assert list(table.columns) == ["strategy", *perf.METRIC_COLUMNS]
    assert perf.strategy_comparison(perf.empty_trades()).empty
    assert perf.equity_curves(perf.empty_trades()).empty


def test_all_losses() -> None:
    trades = frame(
        trade(DAY0 + 1 * HOUR_MS, "a", "entry", "buy", 100.0, 1.0, "p1"),
        trade(DAY0 + 2 * HOUR_MS, "a", "exit", "sell", 90.0, 1.0, "p1", pnl=-10.0),
        trade(DAY0 + DAY_MS + 1 * HOUR_MS, "a", "entry", "buy", 100.0, 1.0, "p2"),
        trade(DAY0 + DAY_MS + 3 * HOUR_MS, "a", "exit", "sell", 95.0, 1.0, "p2", pnl=-5.0),
    )
    row = perf.performance_table(trades).loc["a"]
    assert (row["trade_count"], row["wins"], row["losses"]) == (2, 0, 2)
    assert row["win_rate"] == 0.0
    assert row["realized_pnl"] == pytest.approx(-15.0)
    assert row["total_pnl"] == pytest.approx(-15.0)
    assert row["gross_profit"] == 0.0 and row["gross_loss"] == pytest.approx(15.0)
    assert row["profit_factor"] == 0.0
    assert row["expectancy"] == pytest.approx(-7.5)
    assert (row["best_trade"], row["worst_trade"]) == (-5.0, -10.0)
    # Equity 10000 -> 9990 -> 9985: the drawdown runs from the start to the last exit.
    assert row["max_drawdown"] == pytest.approx(15.0)
    assert row["max_drawdown_pct"] == pytest.approx(15.0 / 10_000 * 100)
    assert row["drawdown_start"] == pd.Timestamp(DAY0 + HOUR_MS, unit="ms", tz="UTC")
    assert row["drawdown_end"] == pd.Timestamp(DAY0 + DAY_MS + 3 * HOUR_MS, unit="ms", tz="UTC")
    # Daily returns: day 0 -10/10000, day 1 -5/9990.
    returns = np.array([-10 / 10_000, -5 / 9_990])
    sharpe = returns.mean() / returns.std(ddof=1) * math.sqrt(365)
    sortino = returns.mean() / math.sqrt((returns**2).mean()) * math.sqrt(365)
    assert row["sharpe"] == pytest.approx(sharpe)
    assert row["sortino"] == pytest.approx(sortino)
    assert row["avg_holding_s"] == pytest.approx((1 * 3600 + 2 * 3600) / 2)
    assert row["open_positions"] == 0 and row["unpaired_exits"] == 0


def test_one_open_position_is_valued_at_the_last_price() -> None:
    trades = frame(
        trade(DAY0, "a", "entry", "buy", 100.0, 2.0, "p1", fee=0.5),
        trade(DAY0 + 1000, "b", "entry", "sell", 100.0, 1.0, "p1"),
    )
    table = perf.performance_table(trades, {"BTCUSDT": 110.0})
    long, short = table.loc["a"], table.loc["b"]
    assert long["trade_count"] == 0 and math.isnan(long["win_rate"])
    assert long["open_positions"] == 1
    assert long["unrealized_pnl"] == pytest.approx(20.0)  # (110 - 100) * 2, fees not deducted
    assert long["realized_pnl"] == 0.0 and long["total_pnl"] == pytest.approx(20.0)
    assert short["unrealized_pnl"] == pytest.approx(-10.0)
    assert math.isnan(long["profit_factor"]) and math.isnan(long["expectancy"]) and math.isnan(long["sharpe"])
    assert long["max_drawdown"] == 0.0 and pd.isna(long["drawdown_start"])
    no_price = perf.performance_table(trades)
    assert no_price.loc["a", "unrealized_pnl"] == 0.0  # no last price known: not valued


def test_partial_exits_use_reported_pnl_else_compute_it() -> None:
    trades = frame(
        trade(DAY0, "a", "entry", "buy", 100.0, 1.0, "p1", fee=0.2),
        trade(DAY0 + 1000, "a", "entry", "buy", 106.0, 1.0, "p1", fee=0.2),  # scale in: avg 103
        trade(DAY0 + 2000, "a", "exit", "sell", 110.0, 0.5, "p1", fee=0.1),  # computed
        trade(DAY0 + 3000, "a", "exit", "sell", 90.0, 1.5, "p1", fee=0.1, pnl=-20.0),  # reported
        trade(DAY0 + 4000, "s", "entry", "sell", 50.0, 2.0, "q1", fee=0.4),  # short
        trade(DAY0 + 5000, "s", "exit", "buy", 40.0, 1.0, "q1", fee=0.1),
    )
    exits = perf.realized_exits(trades)
    long_first = exits.iloc[0]
    # (110 - 103) * 0.5 - 0.1 exit fee - 0.4 entry fees * 0.5 / 2
    assert long_first["realized"] == pytest.approx(3.5 - 0.1 - 0.1)
    assert long_first["pnl_source"] == "computed"
    assert exits.iloc[1]["realized"] == -20.0 and exits.iloc[1]["pnl_source"] == "reported"
    # Short: (40 - 50) * -1 * 1 - 0.1 - 0.4 * 1 / 2
    assert exits.iloc[2]["realized"] == pytest.approx(10.0 - 0.1 - 0.2)
    book = perf.positions(trades, {"BTCUSDT": 45.0})
    long_position = book.set_index("bot").loc["a"]
    assert bool(long_position["closed"]) and long_position["open_qty"] == 0.0
    assert long_position["realized"] == pytest.approx(3.3 - 20.0)
    assert long_position["holding_s"] == pytest.approx(3.0)
    short_position = book.set_index("bot").loc["s"]
    assert not bool(short_position["closed"]) and short_position["open_qty"] == pytest.approx(1.0)
    assert short_position["unrealized"] == pytest.approx((45.0 - 50.0) * -1.0)
    table = perf.performance_table(trades, {"BTCUSDT": 45.0})
    assert table.loc["a", "trade_count"] == 1  # one position, two exits: one trade
    assert table.loc["s", "trade_count"] == 1 and table.loc["s", "open_positions"] == 1
    assert math.isnan(table.loc["s", "avg_holding_s"])  # still open: no holding time yet
    assert table.loc["s", "total_pnl"] == pytest.approx(9.7 + 5.0)


def test_trades_spanning_midnight() -> None:
    trades = frame(
        trade(DAY0 - HOUR_MS // 2, "a", "entry", "buy", 100.0, 1.0, "p1"),  # 23:30 the day before
        trade(DAY0 + HOUR_MS // 2, "a", "exit", "sell", 120.0, 1.0, "p1"),  # 00:30
        trade(DAY0 + DAY_MS + HOUR_MS, "a", "entry", "buy", 100.0, 1.0, "p2"),
        trade(DAY0 + DAY_MS + 2 * HOUR_MS, "a", "exit", "sell", 95.0, 1.0, "p2"),
    )
    row = perf.performance_table(trades).loc["a"]
    assert row["avg_holding_s"] == pytest.approx((3600 + 3600) / 2)
    # Days: the entry's day (0 P&L), the first exit's (+20), the next (-5).
    returns = np.array([0.0, 20 / 10_000, -5 / 10_020])
    assert row["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(365))
    days = perf.daily_returns(
        np.array([DAY0 + HOUR_MS // 2, DAY0 + DAY_MS + 2 * HOUR_MS]),
        np.array([20.0, -5.0]),
        10_000.0,
        DAY0 - HOUR_MS // 2,
        DAY0 + DAY_MS,
    )
    assert days == pytest.approx(returns)


def test_max_drawdown_start_and_end() -> None:
    pnls = [10.0, -30.0, 5.0, -10.0, 50.0]
    rows = []
    for number, pnl in enumerate(pnls):
        ts = DAY0 + number * HOUR_MS
        rows += [
            trade(ts, "a", "entry", "buy", 100.0, 1.0, f"p{number}"),
            trade(ts + 60_000, "a", "exit", "sell", 100.0, 1.0, f"p{number}", pnl=pnl),
        ]
    row = perf.performance_table(frame(*rows), capital={"a": 1_000.0}).loc["a"]
    # Equity 1000, 1010, 980, 985, 975, 1025: peak 1010 (first exit) to trough 975 (fourth exit).
    assert row["max_drawdown"] == pytest.approx(35.0)
    assert row["max_drawdown_pct"] == pytest.approx(35.0 / 1010 * 100)
    assert row["drawdown_start"] == pd.Timestamp(DAY0 + 60_000, unit="ms", tz="UTC")
    assert row["drawdown_end"] == pd.Timestamp(DAY0 + 3 * HOUR_MS + 60_000, unit="ms", tz="UTC")
    assert row["profit_factor"] == pytest.approx(65.0 / 40.0)
    assert row["win_rate"] == pytest.approx(60.0)
    assert row["expectancy"] == pytest.approx(5.0)
    assert row["capital"] == 1_000.0
    curve = perf.equity_curves(frame(*rows), capital={"a": 1_000.0})
    assert list(curve["equity"]) == pytest.approx([1000, 1010, 980, 985, 975, 1025])
    assert list(curve["drawdown"]) == pytest.approx([0, 0, 30, 25, 35, 0])


def test_several_strategies_and_the_comparison_table() -> None:
    trades = frame(
        trade(DAY0, "m1", "entry", "buy", 100.0, 1.0, "p1"),
        trade(DAY0 + 1000, "m1", "exit", "sell", 110.0, 1.0, "p1", pnl=10.0),
        trade(DAY0, "m2", "entry", "buy", 100.0, 1.0, "p1"),
        trade(DAY0 + 1000, "m2", "exit", "sell", 95.0, 1.0, "p1", pnl=-5.0),
        trade(DAY0, "e1", "entry", "sell", 100.0, 1.0, "p1", strategy="ema_crossover"),
        trade(DAY0 + 1000, "e1", "exit", "buy", 80.0, 1.0, "p1", strategy="ema_crossover", pnl=20.0),
        trade(DAY0, "r1", "entry", "buy", 100.0, 1.0, "p1", strategy="mean_reversion"),
        trade(DAY0 + 1000, "r1", "exit", "sell", 70.0, 1.0, "p1", strategy="mean_reversion", pnl=-30.0),
    )
    comparison = perf.strategy_comparison(trades, capital={"m1": 500.0})
    assert list(comparison.index) == ["ema_crossover", "momentum", "mean_reversion"]
    assert list(comparison["rank"]) == [1, 2, 3]
    momentum = comparison.loc["momentum"]
    assert (momentum["bots"], momentum["trade_count"], momentum["win_rate"]) == (2, 2, 50.0)
    assert momentum["total_pnl"] == pytest.approx(5.0)
    assert momentum["capital"] == 500.0 + perf.DEFAULT_CAPITAL
    overall = perf.performance_table(trades, by="all").iloc[0]
    assert (overall["bots"], overall["trade_count"], overall["total_pnl"]) == (4, 4, pytest.approx(-5.0))
    by_bot = perf.performance_table(trades)
    assert by_bot.loc["e1", "strategy"] == "ema_crossover"


def test_an_exit_without_entry_or_pnl_is_left_out_and_counted() -> None:
    trades = frame(
        trade(DAY0, "a", "exit", "sell", 100.0, 1.0, "gone"),
        trade(DAY0 + 1000, "a", "exit", "sell", 100.0, 1.0, "reported", pnl=4.0),
    )
    row = perf.performance_table(trades).loc["a"]
    assert row["unpaired_exits"] == 1
    assert row["trade_count"] == 1 and row["realized_pnl"] == 4.0


def test_earlier_entries_are_kept_only_for_positions_exited_in_the_window() -> None:
    trades = perf.normalize_trades(
        frame(
            trade(DAY0 - 5000, "a", "entry", "buy", 100.0, 1.0, "kept"),
            trade(DAY0 - 4000, "a", "entry", "buy", 100.0, 1.0, "closed-before"),
            trade(DAY0 - 3000, "a", "exit", "sell", 100.0, 1.0, "closed-before"),
            trade(DAY0 + 1000, "a", "exit", "sell", 110.0, 1.0, "kept"),
        )
    )
    kept = perf.drop_unexited_before(trades, DAY0)
    assert list(kept["position"]) == ["kept", "kept"]
    assert perf.performance_table(kept).loc["a", "realized_pnl"] == pytest.approx(10.0)
