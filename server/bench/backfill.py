"""``signalpush bench backfill``: a history window out of a million rows, against a plain SELECT.

Loads ``--rows`` events of one symbol spread over ``--days`` into each database (a temp
SQLite file, plus every ``--database-url`` given), with the newest ``--log-tail`` events
left in the Redis log only (as if the recorder were a little behind). Then times
``load_window`` for the last ``--window-hours`` (median of ``--runs``) beside a plain
SELECT of every row in the same window, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.bench import BenchResult, positive_float, positive_int

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from sqlalchemy.ext.asyncio import AsyncEngine

DESCRIPTION = "history backfill: load_window over 1M rows (30 days, one symbol) vs a plain SELECT"

_CANDLE_MS = 5_000
_BOTS = (("momo-1", "momentum"), ("ema-1", "ema_crossover"), ("mr-1", "mean_reversion"))
_COLUMNS = {
    "candle": ("symbol", "epoch", "seq", "ts", "tf", "open", "high", "low", "close", "volume"),
    "signal": ("symbol", "epoch", "seq", "ts", "bot", "strategy", "type", "price", "confidence", "meta"),
    "trade": (
        "symbol", "epoch", "seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "fee", "pnl",
        "position", "meta",
    ),
    "bot": ("symbol", "epoch", "seq", "ts", "bot", "strategy", "status", "equity", "meta"),
}  # fmt: skip
_TABLES = {"candle": "candles", "signal": "signals", "trade": "trades", "bot": "bot_status"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=positive_int, default=1_000_000, help="events to load (default 1,000,000)"
    )
    parser.add_argument("--days", type=positive_float, default=30.0, help="span of the events (default 30)")
    parser.add_argument("--window-hours", type=positive_float, default=6.0, help="history window (default 6)")
    parser.add_argument("--max-points", type=positive_int, default=2000, help="candle points (default 2000)")
    parser.add_argument(
        "--max-events", type=positive_int, default=20_000, help="signals+trades+status cap (default 20000)"
    )
    parser.add_argument("--runs", type=positive_int, default=15, help="timed runs per database (default 15)")
    parser.add_argument(
        "--log-tail", type=int, default=1000, help="newest events left in Redis only (default 1000)"
    )
    parser.add_argument(
        "--database-url",
        action="append",
        default=[],
        help="also bench this database (postgresql+asyncpg://...); repeatable; SQLite always runs",
    )
    parser.add_argument(
        "--redis-url", help="Redis for the log tail (default: an embedded one on a free port)"
    )


def run(args: argparse.Namespace) -> BenchResult:
    return asyncio.run(_run(args))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Dataset:
    """Deterministic events of one symbol: rows per kind (SQL) and the log tail (Redis)."""

    def __init__(
        self,
        symbol: str,
        epoch: str,
        rows: int,
        days: float,
        end_ms: int,
        tail: int,
        candle_ms: int = _CANDLE_MS,
    ) -> None:
        import numpy as np

        from publishers.events import BotStatus, Candle, Signal, Trade

        rng = np.random.default_rng(7)
        start_ms = end_ms - int(days * 86_400_000)
        n_candles = rows // 2
        candle_ts = end_ms - candle_ms * np.arange(n_candles, 0, -1, dtype=np.int64)
        other = rows - n_candles
        kinds = rng.choice(np.array(["signal", "trade", "bot"]), size=other, p=[0.6, 0.25, 0.15])
        other_ts = np.sort(rng.integers(start_ms, end_ms, size=other, dtype=np.int64))
        ts = np.concatenate([candle_ts, other_ts])
        kind = np.concatenate([np.full(n_candles, "candle"), kinds])
        order = np.argsort(ts, kind="stable")
        self.ts, self.kind = ts[order], kind[order]
        self.seq = np.arange(1, rows + 1, dtype=np.int64)
        self.price = 64_000.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, size=rows)))
        self.rand = rng.random(size=(rows, 3))
        self.symbol, self.epoch, self.end_ms = symbol, epoch, end_ms
        self.split = rows - min(tail, rows)  # rows [0, split) go to SQL, the rest to the log
        self._classes = (Signal, Trade, Candle, BotStatus)

    def sql_rows(self, kind: str) -> list[tuple[Any, ...]]:
        import numpy as np

        index = np.nonzero(self.kind[: self.split] == kind)[0]
        return [self._row(kind, int(i)) for i in index]

    def _values(self, kind: str, i: int) -> dict[str, Any]:
        ts, price, (a, b, c) = int(self.ts[i]), float(self.price[i]), self.rand[i]
        bot, strategy = _BOTS[int(a * 3)]
        if kind == "candle":
            high, low, close = price * (1 + b / 1000), price * (1 - c / 1000), price * (1 + (b - c) / 2000)
            return {"ts": ts, "tf": "5s", "open": price, "high": high, "low": low, "close": close,
                    "volume": round(a * 10, 4)}  # fmt: skip
        common = {"ts": ts, "bot": bot, "strategy": strategy, "meta": {}}
        if kind == "signal":
            return {
                **common,
                "type": ("buy", "sell", "hold")[int(b * 3)],
                "price": price,
                "confidence": float(c),
            }
        if kind == "trade":
            exit_ = b > 0.5
            return {**common, "side": "buy" if c > 0.5 else "sell", "action": "exit" if exit_ else "entry",
                    "price": price, "qty": 0.01, "fee": 0.02, "pnl": (c - 0.5) * 20 if exit_ else None,
                    "position": f"p-{i // 2}"}  # fmt: skip
        return {**common, "status": "active", "equity": 10_000 + (a - 0.5) * 500}

    def _row(self, kind: str, i: int) -> tuple[Any, ...]:
        values = {"symbol": self.symbol, "epoch": self.epoch, "seq": i + 1, **self._values(kind, i)}
        if "meta" in values:
            values["meta"] = "{}"
        return tuple(values[name] for name in _COLUMNS[kind])

    def log_entries(self) -> list[tuple[int, str]]:
        signal, trade, candle, bot = self._classes
        by_kind = {"signal": signal, "trade": trade, "candle": candle, "bot": bot}
        out = []
        for i in range(self.split, len(self.seq)):
            kind = str(self.kind[i])
            event = by_kind[kind](symbol=self.symbol, **self._values(kind, i))
            out.append((i + 1, '{"seq":' + str(i + 1) + "," + event.body()))
        return out


async def load_sql(engine: AsyncEngine, data: Dataset, label: str) -> float:
    started = time.monotonic()
    done, total = 0, data.split
    async with engine.begin() as connection:
        raw = await connection.get_raw_connection()
        for kind, table in _TABLES.items():
            rows = data.sql_rows(kind)
            columns = _COLUMNS[kind]
            for start in range(0, len(rows), 50_000):
                chunk = rows[start : start + 50_000]
                if engine.dialect.name == "postgresql":
                    driver: Any = raw.driver_connection  # asyncpg: COPY is its bulk path
                    await driver.copy_records_to_table(table, records=chunk, columns=list(columns))
                else:
                    placeholders = ", ".join("?" for _ in columns)
                    await connection.exec_driver_sql(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", chunk
                    )
                done += len(chunk)
                _progress(f"  {label}: {done:,}/{total:,} rows ({time.monotonic() - started:.1f}s)")
    return time.monotonic() - started


async def load_redis(client: aioredis.Redis, data: Dataset) -> None:
    from publishers import keys

    await client.delete(keys.meta_key(data.symbol), keys.log_key(data.symbol))
    async with client.pipeline(transaction=False) as pipe:
        for seq, event in data.log_entries():
            pipe.xadd(keys.log_key(data.symbol), {keys.LOG_FIELD: event}, id=f"{seq}-0")
        pipe.hset(keys.meta_key(data.symbol), mapping={"epoch": data.epoch, "seq": len(data.seq)})
        await pipe.execute()


async def _median_ms(runs: int, operation: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    result = await operation()  # warm-up (caches, statement compilation)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await operation()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


async def _bench_one(
    url: str, label: str, client: aioredis.Redis, data: Dataset, args: argparse.Namespace
) -> dict[str, Any]:
    from sqlalchemy import delete

    from server.core.filters import EVERYTHING
    from server.history.engine import create_engine
    from server.history.migrate import upgrade_database
    from server.history.models import TABLES
    from server.history.queries import plain_window
    from server.history.reads import load_window

    await upgrade_database(url)
    engine = create_engine(url)
    try:
        load_s = await load_sql(engine, data, label)
        since = data.end_ms - int(args.window_hours * 3_600_000)

        async def window() -> Any:
            return await load_window(
                engine, client, data.symbol, EVERYTHING, since_ms=since,
                max_points=args.max_points, max_events=args.max_events,
            )  # fmt: skip

        async def plain() -> int:
            count = 0
            async with engine.connect() as connection:
                for kind in TABLES:
                    count += len((await connection.execute(plain_window(data.symbol, kind, since))).all())
            return count

        window_ms, result = await _median_ms(args.runs, window)
        plain_ms, plain_rows = await _median_ms(args.runs, plain)
        async with engine.begin() as connection:
            for table in TABLES.values():
                await connection.execute(delete(table).where(table.c.symbol == data.symbol))
    finally:
        await engine.dispose()
    events = sum(len(result.data[k]["ts"]) for k in ("signal", "trade", "bot"))
    return {
        "database": label,
        "rows": len(data.seq),
        "load_s": round(load_s, 1),
        "rows_per_s": round(data.split / load_s) if load_s else None,
        "window_sql_rows": plain_rows,
        "candle_points": len(result.data["candle"]["ts"]),
        "events": events,
        "load_window_ms": window_ms,
        "plain_select_ms": plain_ms,
        "ratio": window_ms / plain_ms if plain_ms else None,
    }


async def _run(args: argparse.Namespace) -> BenchResult:
    from publishers.connection import async_client
    from publishers.events import now_ms
    from publishers.options import redact_url
    from server.cli.embedded import EmbeddedRedis, free_port

    symbol = f"BENCH{secrets.token_hex(3).upper()}"
    with tempfile.TemporaryDirectory(prefix="signalpush-bench-") as tmp:
        server = None
        if args.redis_url:
            redis_url = args.redis_url
        else:
            server = EmbeddedRedis(port=free_port(), data_dir=Path(tmp) / "redis", appendonly=False)
            server.start()
            redis_url = server.url
        client = async_client(redis_url)
        try:
            _progress(f"generating {args.rows:,} events of {symbol} over {args.days:g} days ...")
            data = Dataset(symbol, secrets.token_hex(6), args.rows, args.days, now_ms(), args.log_tail)
            await load_redis(client, data)
            targets = [(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "sqlite")]
            targets += [(url, redact_url(url).split("://", 1)[0].split("+")[0]) for url in args.database_url]
            rows = []
            for url, label in targets:
                _progress(f"loading {label} ({redact_url(url)}) ...")
                rows.append(await _bench_one(url, label, client, data, args))
        finally:
            from publishers import keys

            await client.delete(keys.meta_key(symbol), keys.log_key(symbol))
            await client.aclose()
            if server is not None:
                server.stop()
    summary = "; ".join(
        f"{row['database']}: load_window {row['load_window_ms']:.1f} ms median "
        f"({row['ratio']:.2f}x a plain SELECT), loaded {row['rows_per_s']:,} rows/s"
        for row in rows
    )
    target = "met" if all(row["load_window_ms"] < 100 for row in rows) else "MISSED"
    return BenchResult(
        "backfill",
        rows,
        f"{args.window_hours:g} h out of {args.rows:,} rows: {summary} (target < 100 ms: {target})",
    )
