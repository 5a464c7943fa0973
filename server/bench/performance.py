"""``signalpush bench performance``: the /api/performance payload beside its raw SQL query.

Loads N days of M bots (default 30 days of 50 bots: positions with partial exits,
signals, hourly status, 5-minute candles) into SQLite (a temp file) or the database of
``--database-url`` (under unique bot and symbol names, deleted afterwards), then times
the one SQL statement alone (the baseline) and the whole payload builder. Target: the
payload's median under 200 ms.

Signal quality (docs/analytics.md) side by side in the same run: the batch behind
/api/signal-quality (its SQL statement and the pandas pass; target under 300 ms) and the
live fold's cost per event (server/analytics/quality_stream.py: every signal, trade and
candle of the same window folded one at a time, and the changed rows taken once per second
of event time, as the perf feed does).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from server.bench import BenchResult, positive_int

DESCRIPTION = "time /api/performance's payload builder against its raw SQL query (30 days x 50 bots)"
TARGET_MS = 200.0
QUALITY_TARGET_MS = 300.0
_STRATEGIES = ("momentum", "ema_crossover", "mean_reversion")
_MINUTE = 60_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bots", type=positive_int, default=50, help="number of bots (default 50)")
    parser.add_argument("--days", type=positive_int, default=30, help="days of history (default 30)")
    parser.add_argument(
        "--positions-per-day", type=positive_int, default=10, help="positions per bot per day"
    )
    parser.add_argument("--symbols", type=positive_int, default=10, help="number of symbols (default 10)")
    parser.add_argument("--repeat", type=positive_int, default=15, help="timed repetitions (default 15)")
    parser.add_argument("--database-url", help="benchmark this database instead of a temp SQLite file")
    parser.add_argument("--seed", type=int, default=11)


def generate(
    *, bots: int, days: int, positions_per_day: int, symbols: int, end_ms: int, seed: int, prefix: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """(epoch, event) pairs of a synthetic floor, each symbol's seqs contiguous from 1."""
    rng = random.Random(seed)
    start_ms = end_ms - days * 86_400_000
    names = [f"{prefix}SYM{k}" for k in range(symbols)]
    base = {name: rng.uniform(1, 60_000) for name in names}
    events: list[dict[str, Any]] = []
    for ts in range(start_ms - start_ms % (5 * _MINUTE), end_ms, 5 * _MINUTE):
        for name in names:
            base[name] *= 1 + rng.gauss(0, 0.002)
            price = base[name]
            events.append(
                {
                    "kind": "candle",
                    "symbol": name,
                    "ts": ts,
                    "tf": "5m",
                    "open": price,
                    "high": price * 1.001,
                    "low": price * 0.999,
                    "close": price,
                    "volume": 1.0,
                }
            )
    for index in range(bots):
        bot, strategy = f"{prefix}bot-{index:02d}", _STRATEGIES[index % len(_STRATEGIES)]
        traded = (names[index % symbols], names[(index + 3) % symbols])
        for hour_ts in range(start_ms, end_ms, 60 * _MINUTE):
            events.append(
                {
                    "kind": "bot",
                    "symbol": traded[0],
                    "ts": hour_ts,
                    "bot": bot,
                    "strategy": strategy,
                    "status": "active",
                    "equity": 10_000 + rng.gauss(0, 100),
                    "meta": {},
                }
            )
        for number in range(days * positions_per_day):
            symbol = traded[number % 2]
            opened = rng.randrange(start_ms, end_ms - 7 * 3_600_000)
            held = rng.randrange(5 * _MINUTE, 6 * 3_600_000)
            side = rng.choice(("buy", "sell"))
            price = base[symbol] * rng.uniform(0.9, 1.1)
            qty = round(1000 / price, 8)
            common = {
                "kind": "trade",
                "symbol": symbol,
                "bot": bot,
                "strategy": strategy,
                "position": f"p-{number}",
                "meta": {},
            }
            events.append(
                {
                    **common,
                    "ts": opened,
                    "side": side,
                    "action": "entry",
                    "price": price,
                    "qty": qty,
                    "fee": 0.4,
                    "pnl": None,
                }
            )
            for offset in range(3):
                events.append(
                    {
                        "kind": "signal",
                        "symbol": symbol,
                        "ts": opened - offset * _MINUTE,
                        "bot": bot,
                        "strategy": strategy,
                        "type": side,
                        "price": price,
                        "confidence": rng.random(),
                        "meta": {},
                    }
                )
            exit_side = "sell" if side == "buy" else "buy"
            parts = (qty / 2, qty - qty / 2) if rng.random() < 0.4 else (qty,)
            for part_index, part in enumerate(parts):
                move = rng.gauss(0.0005, 0.01)
                pnl = round((1 if side == "buy" else -1) * move * price * part - 0.4, 6)
                events.append(
                    {
                        **common,
                        "ts": opened + held * (part_index + 1) // len(parts),
                        "side": exit_side,
                        "action": "exit",
                        "price": price * (1 + move),
                        "qty": part,
                        "fee": 0.4,
                        "pnl": pnl if rng.random() < 0.8 else None,
                    }
                )
    events.sort(key=lambda e: e["ts"])
    seqs: dict[str, int] = {}
    pairs = []
    for event in events:
        seqs[event["symbol"]] = seqs.get(event["symbol"], 0) + 1
        pairs.append(("bench", {"seq": seqs[event["symbol"]], **event}))
    return pairs


async def _load(engine: AsyncEngine, pairs: list[tuple[str, dict[str, Any]]]) -> None:
    from server.history.models import Base
    from server.history.writer import insert_events

    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    for start in range(0, len(pairs), 20_000):
        async with engine.begin() as connection:
            await insert_events(connection, pairs[start : start + 20_000])
        print(f"  loaded {min(start + 20_000, len(pairs)):,}/{len(pairs):,} events", file=sys.stderr)


async def _cleanup(engine: AsyncEngine, prefix: str) -> None:
    from server.history.models import TABLES, BotRow

    async with engine.begin() as connection:
        for table in TABLES.values():
            await connection.execute(delete(table).where(table.c.symbol.like(f"{prefix}%")))
        await connection.execute(delete(BotRow).where(BotRow.name.like(f"{prefix}%")))


def quality_stats_median(samples: list[float]) -> float:
    return statistics.median(samples)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)],
        "min_ms": ordered[0],
    }


async def _measure(args: argparse.Namespace, url: str, prefix: str) -> BenchResult:
    from server.analytics.payloads import parse_performance_query, performance_payload, signal_quality_payload
    from server.analytics.queries import performance_query
    from server.history.engine import create_engine

    end_ms = int(time.time() * 1000)
    began = time.perf_counter()
    pairs = generate(
        bots=args.bots,
        days=args.days,
        positions_per_day=args.positions_per_day,
        symbols=args.symbols,
        end_ms=end_ms,
        seed=args.seed,
        prefix=prefix,
    )
    engine = create_engine(url)
    try:
        await _load(engine, pairs)
        load_s = time.perf_counter() - began
        bots = ",".join(f"{prefix}bot-{i:02d}" for i in range(args.bots))
        query = {"days": str(args.days), "end": str(end_ms)}
        if prefix:
            query["bots"] = bots
        flt, start_ms, stop_ms = parse_performance_query(query)
        raw: list[float] = []
        full: list[float] = []
        quality: list[float] = []
        rows = 0
        payload: dict[str, Any] = {}
        quality_payload: dict[str, Any] = {}
        for attempt in range(args.repeat + 1):
            t0 = time.perf_counter()
            async with engine.connect() as connection:
                rows = len((await connection.execute(performance_query(flt, start_ms, stop_ms))).all())
            t1 = time.perf_counter()
            payload = await performance_payload(engine, query)
            t2 = time.perf_counter()
            quality_payload = await signal_quality_payload(engine, query)
            t3 = time.perf_counter()
            if attempt:  # the first round warms caches and the pool
                raw.append((t1 - t0) * 1000)
                full.append((t2 - t1) * 1000)
                quality.append((t3 - t2) * 1000)
        if prefix:
            await _cleanup(engine, prefix)
    finally:
        await engine.dispose()
    fold_us, row_us, folded = _fold_cost(pairs)
    quality_verdict = "meets" if quality_stats_median(quality) < QUALITY_TARGET_MS else "MISSES"
    raw_stats, full_stats, quality_stats = _ms(raw), _ms(full), _ms(quality)
    ratio = full_stats["median_ms"] / raw_stats["median_ms"] if raw_stats["median_ms"] else float("nan")
    backend = url.split(":", 1)[0]
    trades = sum(1 for _, e in pairs if e["kind"] == "trade")
    verdict = "meets" if full_stats["median_ms"] < TARGET_MS else "MISSES"
    return BenchResult(
        scenario="performance",
        rows=[
            {"measure": "raw SQL (baseline)", **raw_stats, "rows": rows},
            {"measure": "/api/performance payload", **full_stats, "ratio": ratio},
            {
                "measure": "/api/signal-quality batch",
                **quality_stats,
                "ratio": quality_stats["median_ms"] / raw_stats["median_ms"]
                if raw_stats["median_ms"]
                else None,
            },
            {"measure": "signal quality live fold, per event", "us_per_event": fold_us, "events": folded},
            {"measure": "signal quality live row, per changed group", "us_per_row": row_us},
        ],
        summary=(
            f"{backend}: {args.bots} bots x {args.days} days ({trades:,} trades, {len(pairs):,} events, "
            f"loaded in {load_s:.1f}s); payload median {full_stats['median_ms']:.1f} ms = {ratio:.2f}x the "
            f"raw query; {verdict} the {TARGET_MS:.0f} ms target; "
            f"{len(payload.get('bots', []))} bots in the payload; signal quality batch median "
            f"{quality_stats['median_ms']:.1f} ms ({quality_verdict} the {QUALITY_TARGET_MS:.0f} ms target, "
            f"{len(quality_payload.get('groups', []))} groups); live fold {fold_us:.2f} us/event over "
            f"{folded:,} events, {row_us:.0f} us per pushed row"
        ),
        extra={"target_ms": TARGET_MS, "backend": backend},
    )


def _fold_cost(pairs: list[tuple[str, dict[str, Any]]]) -> tuple[float, float, int]:
    """The live fold over the window's events in fold order (best of 3): microseconds per event
    folded, and per row built when the perf feed pushes a changed (bot, strategy)."""
    from server.analytics.quality_rows import fold_key
    from server.analytics.quality_stream import QualityStream

    events = sorted(
        (
            (e["kind"], e["symbol"], int(e["seq"]), e)
            for _, e in pairs
            if e["kind"] in ("signal", "trade", "candle")
        ),
        key=lambda e: fold_key(e[0], e[1], e[2], e[3]["ts"]),
    )
    if not events:
        return 0.0, 0.0, 0
    fold_best = row_best = float("inf")
    for _ in range(3):
        stream = QualityStream()
        began = time.perf_counter()
        for kind, symbol, seq, fields in events:
            stream.apply(kind, symbol, seq, fields)
        folded = time.perf_counter()
        rows = stream.snapshot(stream.take_changed())
        fold_best = min(fold_best, folded - began)
        row_best = min(row_best, (time.perf_counter() - folded) / max(1, len(rows)))
    return fold_best / len(events) * 1e6, row_best * 1e6, len(events)


def run(args: argparse.Namespace) -> BenchResult:
    if args.bots < 1 or args.days < 1 or args.repeat < 1 or args.symbols < 1:
        raise ValueError("--bots, --days, --symbols and --repeat must be at least 1")
    if args.database_url:
        return asyncio.run(_measure(args, args.database_url, f"B{secrets.token_hex(3)}-"))
    with tempfile.TemporaryDirectory(prefix="signalpush-bench-") as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        return asyncio.run(_measure(args, url, ""))
