"""``signalpush import FILE``: load exchange or backtest history (CSV or Parquet) via ``publish_frame``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from publishers.errors import SignalpushError
from server.cli.args import settings_from_args

if TYPE_CHECKING:
    import pandas as pd

#: Rows validated and published per step (progress is printed between steps).
CHUNK_ROWS = 5000


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (Parquet needs pyarrow or fastparquet)."""
    import pandas as pd  # only this command needs it: every other command starts without pandas

    if not path.is_file():
        raise SignalpushError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise SignalpushError(
                f"{path}: reading Parquet needs pyarrow (pip install pyarrow): {exc}"
            ) from None
    if suffix in (".csv", ".txt", ".gz"):
        return pd.read_csv(path)
    raise SignalpushError(f"{path}: expected a .csv or .parquet file")


def cmd_import(args: argparse.Namespace) -> int:
    from publishers.frames import events_from_frame
    from publishers.sync_publisher import SyncPublisher

    settings = settings_from_args(args)
    frame = read_frame(Path(args.file))
    # Validate everything first: a bad row stops the import before anything is published.
    events = events_from_frame(
        frame,
        kind=args.kind,
        symbol=args.symbol,
        bot=args.bot,
        strategy=args.strategy,
        timeframe=args.timeframe,
    )
    began = time.monotonic()
    published = 0
    seqs: list[int] = []
    with SyncPublisher(
        args.redis_url, options=settings.redis.publisher_options(), bot=args.bot, strategy=args.strategy
    ) as pub:
        for start in range(0, len(events), CHUNK_ROWS):
            seqs += pub.publish_many(events[start : start + CHUNK_ROWS])
            published = len(seqs)
            print(f"  published {published:,}/{len(events):,} events", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - began
    symbols = sorted({e.symbol for e in events})
    span = f"seqs {seqs[0]}..{seqs[-1]}" if seqs else "nothing to publish"
    rate = published / elapsed if elapsed > 0 else 0.0
    print(
        f"imported {published:,} events from {args.file} on {', '.join(symbols) or '-'} ({span}) "
        f"in {elapsed:.1f}s ({rate:,.0f}/s)"
    )
    return 0


def register(commands: Any) -> None:
    """Add ``import`` to the CLI."""
    parser = commands.add_parser(
        "import",
        help="publish candles, signals or trades from a CSV/Parquet file (loading history)",
        description="Publish every row of FILE in order through publish_frame. The kind comes from a 'kind' "
        "column, else --kind, else the columns (open/high/low/close: candles; side/action: trades; "
        "type/confidence: signals). Time from a ts (ms) / timestamp column or the index. All rows are "
        "validated before anything is published.",
    )
    parser.add_argument("file", help="a .csv or .parquet file")
    parser.add_argument("--kind", choices=["candle", "signal", "trade", "bot"], help="the kind of every row")
    parser.add_argument("--symbol", help="symbol for rows without a symbol column")
    parser.add_argument("--bot", help="bot for rows without a bot column")
    parser.add_argument("--strategy", help="strategy for rows without a strategy column")
    parser.add_argument("--timeframe", default="1m", help="candle timeframe when there is no tf column (1m)")
    parser.add_argument("--redis-url", help="Redis to publish to (default: redis.url, else the embedded one)")
    parser.set_defaults(handler=cmd_import)
