"""`signalpush stats` (table, CSV, HTML report) and `signalpush bench performance` at a small size."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from publishers.events import now_ms
from server.bench import SCENARIOS
from server.bench import performance as bench_performance
from tests.support.analytics_data import demo_events, fresh_store


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('stats') / 'history.db'}"
    asyncio.run(fresh_store(url, demo_events(end_ms=now_ms(), hours=2)))
    return url


def test_stats_prints_per_bot_and_strategy_tables(demo_url: str) -> None:
    result = run_cli("stats", "--database-url", demo_url, "--days", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Per bot" in out and "Strategy comparison" in out
    for name in ("momo-1", "ema-1", "mr-1", "momentum", "ema_crossover", "mean_reversion", "win %", "Sharpe"):
        assert name in out
    assert "trades, win rate" in out.splitlines()[-1]


def test_stats_filters_and_csv(demo_url: str) -> None:
    result = run_cli("stats", "--database-url", demo_url, "--strategies", "momentum", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(row["bot"] for row in rows) == ["momo-1", "momo-2"]
    assert {"trade_count", "win_rate", "max_drawdown", "sharpe", "sortino"} <= set(rows[0])
    by_strategy = run_cli("stats", "--database-url", demo_url, "--csv", "--by", "strategy", "--bots", "mr-1")
    assert [row["strategy"] for row in csv.DictReader(io.StringIO(by_strategy.stdout))] == ["mean_reversion"]


def test_stats_html_report_is_self_contained(demo_url: str, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = run_cli("stats", "--database-url", demo_url, "--html", str(report))
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert "<script src=" not in text  # plotly.js is inlined, no CDN
    assert text.count("Plotly.newPlot") == 2
    assert "Equity per bot" in text and "Drawdown per bot" in text and "Strategy comparison" in text
    assert "mean_reversion" in text


@pytest.mark.slow  # out of `make quicktest` (under 60 s); `make test` runs it
def test_stats_with_no_trades_and_bad_days(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(fresh_store(url))
    result = run_cli("stats", "--database-url", url)
    assert result.returncode == 0 and "no trades in this window" in result.stdout
    bad = run_cli("stats", "--database-url", url, "--days", "-1")
    assert bad.returncode == 2 and "--days: must be more than 0" in bad.stderr
    missing = run_cli("stats", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2 and "database query failed" in missing.stderr


def test_bench_performance_runs_at_a_small_size() -> None:
    assert SCENARIOS["performance"] == "server.bench.performance"
    args = argparse.Namespace(
        bots=3, days=2, positions_per_day=4, symbols=2, repeat=2, database_url=None, seed=1
    )
    result = bench_performance.run(args)
    assert [row["measure"] for row in result.rows] == [
        "raw SQL (baseline)",
        "/api/performance payload",
        "/api/signal-quality batch",
        "signal quality live fold, per event",
        "signal quality live row, per changed group",
    ]
    assert result.rows[0]["rows"] > 0 and result.rows[1]["median_ms"] > 0 and result.rows[2]["median_ms"] > 0
    assert result.rows[3]["us_per_event"] > 0 and result.rows[3]["events"] > 0
    assert "3 bots in the payload" in result.summary and "signal quality batch" in result.summary


def test_bench_generator_is_paired_and_contiguous() -> None:
    pairs = bench_performance.generate(
        bots=2, days=1, positions_per_day=3, symbols=2, end_ms=now_ms(), seed=5
    )
    seqs: dict[str, list[int]] = {}
    for _, event in pairs:
        seqs.setdefault(event["symbol"], []).append(event["seq"])
    assert all(values == list(range(1, len(values) + 1)) for values in seqs.values())
    entries = {(e["bot"], e["position"]) for _, e in pairs if e["kind"] == "trade" and e["action"] == "entry"}
    exits = {(e["bot"], e["position"]) for _, e in pairs if e["kind"] == "trade" and e["action"] == "exit"}
    assert entries == exits and len(entries) == 6
