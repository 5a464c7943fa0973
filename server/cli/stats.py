"""``signalpush stats``: the performance table in the terminal, as CSV, or as an HTML report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_stats(args: argparse.Namespace) -> int:
    from server.analytics.report import csv_text, html_report, terminal_text
    from server.analytics.service import DAY_MS, BotDataService, make_filter, to_epoch_ms
    from server.settings import load_settings

    overrides = {"database": {"url": args.database_url}} if args.database_url else None
    settings = load_settings(args.config, overrides=overrides)
    if args.days <= 0:
        raise ValueError(f"--days: must be more than 0, got {args.days}")
    flt = make_filter(
        bots=args.bots, strategies=args.strategies, symbols=args.symbols, active_only=args.active_only
    )
    end = to_epoch_ms(time.time() * 1000)
    assert end is not None
    if args.quality:
        return _quality(args, settings.database.url, flt, end - int(args.days * DAY_MS), end)
    with BotDataService(settings.database.url) as service:
        report = service.performance_report(flt, end - int(args.days * DAY_MS), end)
    if args.html:
        args.html.write_text(html_report(report), encoding="utf-8")
        print(f"report written to {args.html}", file=sys.stderr)
    if args.csv:
        sys.stdout.write(csv_text(report, args.by))
    else:
        print(terminal_text(report))
    return 0


def _quality(args: argparse.Namespace, url: str, flt: Any, start_ms: int, end_ms: int) -> int:
    from server.analytics.quality import QualityRules
    from server.analytics.quality_report import csv_text, html_report, terminal_text
    from server.analytics.service import BotDataService

    rules = QualityRules(horizon_ms=int(args.horizon_s * 1000), buckets=args.buckets)
    with BotDataService(url) as service:
        quality = service.get_signal_quality(flt, start_ms, end_ms, rules=rules)
    if args.html:
        args.html.write_text(html_report(quality), encoding="utf-8")
        print(f"report written to {args.html}", file=sys.stderr)
    if args.csv:
        sys.stdout.write(csv_text(quality, calibration=args.by == "bucket"))
    else:
        print(terminal_text(quality))
    return 0


def register(commands: Any) -> None:
    """Add ``signalpush stats``."""
    stats = commands.add_parser(
        "stats",
        help="performance per bot and per strategy (table, --csv, or --html FILE report)",
        description="Trade count, win rate, realized/unrealized/total P&L, max drawdown, profit factor, "
        "expectancy, Sharpe, Sortino and holding time per bot, and a strategy comparison, "
        "from the history database. Lists are comma-separated.",
    )
    stats.add_argument("--bots", type=_names, help="only these bots (comma-separated names)")
    stats.add_argument("--strategies", type=_names, help="only these strategies")
    stats.add_argument("--symbols", type=_names, help="only trades on these symbols")
    stats.add_argument("--active-only", action="store_true", help="only bots whose last status is active")
    stats.add_argument("--days", type=float, default=30.0, help="window ending now, in days (default 30)")
    stats.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    stats.add_argument(
        "--by",
        choices=["bot", "strategy", "bucket"],
        default="bot",
        help="which table --csv prints (bucket: --quality's calibration rows)",
    )
    stats.add_argument(
        "--quality",
        action="store_true",
        help="signal quality instead: attribution, calibration by confidence (reliability diagrams "
        "in --html), latency, slippage, expectancy (docs/analytics.md)",
    )
    stats.add_argument(
        "--horizon-s", type=float, default=300.0, help="--quality: entries link to a signal this recent"
    )
    stats.add_argument("--buckets", type=int, default=10, help="--quality: confidence buckets (default 10)")
    stats.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    stats.add_argument("--database-url", help="history database (default: database.url)")
    stats.set_defaults(handler=cmd_stats)
