"""``signalpush bench replay``: the flight recorder over a million rows, against a plain SELECT.

Loads ``--rows`` events of one symbol over ``--days`` into a temp SQLite file (and each
``--database-url``), the newest ``--log-tail`` left in the Redis log only (the loader of
``bench backfill``). Starts a gateway in this process (the clients run in their own process,
server/bench/replayclient.py, so this process's RSS is the gateway's), then measures:

* **streaming**: events/s of one replay of every row at ``speed: "max"`` (from the
  ``subscribe`` to the ``end`` frame, counted by the client), against a plain SELECT of
  the same rows (every column, every table, same seq range) timed in the same run;
* **seek**: ``--seeks`` seeks to random times of a paused replay, from the
  ``replay_control`` sent to its ``history`` frame received (a ``--seek-minutes`` window), p50/p99;
  and the position lookup alone (``ReplayStore.locate``), p50/p99;
* **memory**: the gateway's RSS before and with ``--connections`` replays at speed 1 each
  past its first events frame: the RSS per replaying connection.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.bench import BenchResult, positive_float, positive_int
from server.bench.backfill import Dataset, load_redis, load_sql
from server.bench.procs import memory_kib

if TYPE_CHECKING:
    import redis.asyncio as aioredis

DESCRIPTION = "flight recorder: replay at speed max vs a plain SELECT, seek p50/p99, RSS per replay"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=positive_int, default=1_000_000, help="events to load (default 1,000,000)"
    )
    parser.add_argument("--days", type=positive_float, default=30.0, help="span of the events (default 30)")
    parser.add_argument("--seeks", type=positive_int, default=100, help="seeks timed (default 100)")
    parser.add_argument(
        "--seek-minutes", type=positive_int, default=10, help="history window of a seek (default 10)"
    )
    parser.add_argument(
        "--connections", type=positive_int, default=20, help="replays held for the RSS figure (default 20)"
    )
    parser.add_argument(
        "--log-tail", type=int, default=1000, help="newest events in Redis only (default 1000)"
    )
    parser.add_argument(
        "--database-url",
        action="append",
        default=[],
        help="also bench this database (postgresql+asyncpg://...); repeatable; SQLite always runs",
    )


def run(args: argparse.Namespace) -> BenchResult:
    return asyncio.run(_run(args))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _client(*argv: str, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.bench.replayclient",
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
    )


async def _client_result(*argv: str) -> dict[str, Any]:
    process = await _client(*argv)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench client {argv[0]} failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def _plain_select(engine: Any, symbol: str, epoch: str, last: int) -> int:
    from sqlalchemy import select

    from server.history.models import TABLES

    count = 0
    async with engine.connect() as connection:
        for table in TABLES.values():
            statement = select(table).where(
                table.c.symbol == symbol, table.c.epoch == epoch, table.c.seq <= last
            )
            count += len((await connection.execute(statement)).all())
    return count


async def _bench_one(
    url: str, label: str, redis_url: str, client: aioredis.Redis, data: Dataset, args: argparse.Namespace
) -> dict[str, Any]:
    from sqlalchemy import delete

    from server.cli.runner import compose_gateway
    from server.history.engine import create_engine
    from server.history.migrate import upgrade_database
    from server.history.models import TABLES
    from server.history.replay_store import ReplayStore
    from server.settings import load_settings

    await upgrade_database(url)
    engine = create_engine(url)
    settings = load_settings(None, env={}, overrides={"database": {"url": url}, "history": {"workers": 0}})
    composed = compose_gateway(settings, redis_url, engine=engine)
    gateway = composed.gateway
    try:
        load_s = await load_sql(engine, data, label)
        # What serve does once started (server/cli/runner.py): the loading's survivors are frozen
        # out of the collector's way, so a full collection does not walk them during a seek.
        gc.collect()
        gc.freeze()
        port = await gateway.start(host="127.0.0.1", port=0)
        ws_url = f"ws://127.0.0.1:{port}/ws"
        start_ms, end_ms = int(data.ts[0]), int(data.ts[-1])

        _progress(f"  {label}: plain SELECT of the {data.split:,} rows in SQL ...")
        began = time.perf_counter()
        plain_rows = await _plain_select(engine, data.symbol, data.epoch, data.split)
        plain_s = time.perf_counter() - began

        _progress(f"  {label}: streaming every row at speed max ...")
        streamed = await _client_result("stream", ws_url, data.symbol, str(start_ms), str(end_ms))

        _progress(f"  {label}: {args.seeks} seeks ...")
        rng = random.Random(11)
        times = [rng.randint(start_ms, end_ms) for _ in range(args.seeks)]
        store = ReplayStore(engine, client)
        locate_ms = []
        for at in times:
            t = time.perf_counter()
            await store.locate(data.symbol, at)
            locate_ms.append((time.perf_counter() - t) * 1000)
        seeks = await _client_result(
            "seek", ws_url, data.symbol, str(start_ms), str(end_ms), str(args.seek_minutes),
            ",".join(map(str, times)),
        )  # fmt: skip
        seek_ms: list[float] = seeks["seek_ms"]

        _progress(f"  {label}: RSS with {args.connections} replays ...")
        gc.collect()
        before = memory_kib(os.getpid()).get("VmRSS", 0)
        holder = await _client(
            "hold", ws_url, data.symbol, str(start_ms), str(end_ms), str(args.connections), stdin=True
        )
        assert holder.stdout is not None and holder.stdin is not None
        await holder.stdout.readline()
        during = memory_kib(os.getpid()).get("VmRSS", 0)
        holder.stdin.close()
        await holder.wait()
    finally:
        gc.unfreeze()
        await gateway.stop()
        async with engine.begin() as connection:
            for table in TABLES.values():
                await connection.execute(delete(table).where(table.c.symbol == data.symbol))
        await engine.dispose()
    plain_rate = plain_rows / plain_s if plain_s else 0.0
    stream_rate = streamed["events"] / streamed["seconds"] if streamed["seconds"] else 0.0
    return {
        "database": label,
        "rows": len(data.seq),
        "load_s": round(load_s, 1),
        "streamed_events": streamed["events"],
        "stream_s": round(streamed["seconds"], 2),
        "stream_events_per_s": round(stream_rate),
        "plain_select_rows": plain_rows,
        "plain_select_s": round(plain_s, 2),
        "plain_rows_per_s": round(plain_rate),
        "ratio": round(stream_rate / plain_rate, 2) if plain_rate else None,
        "seek_p50_ms": round(statistics.median(seek_ms), 1),
        "seek_p99_ms": round(_percentile(seek_ms, 0.99), 1),
        "locate_p50_ms": round(statistics.median(locate_ms), 2),
        "locate_p99_ms": round(_percentile(locate_ms, 0.99), 2),
        "rss_before_mib": round(before / 1024, 1),
        "rss_per_replay_kib": round((during - before) / args.connections),
    }


async def _run(args: argparse.Namespace) -> BenchResult:
    from publishers import keys
    from publishers.connection import async_client
    from publishers.events import now_ms
    from publishers.options import redact_url
    from server.cli.embedded import EmbeddedRedis, free_port

    symbol = f"BENCH{secrets.token_hex(3).upper()}"
    with tempfile.TemporaryDirectory(prefix="signalpush-bench-") as tmp:
        server = EmbeddedRedis(port=free_port(), data_dir=Path(tmp) / "redis", appendonly=False)
        server.start()
        client = async_client(server.url)
        try:
            _progress(f"generating {args.rows:,} events of {symbol} over {args.days:g} days ...")
            data = Dataset(
                symbol, secrets.token_hex(6), args.rows, args.days, now_ms() - 60_000, args.log_tail
            )
            await load_redis(client, data)
            targets = [(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", "sqlite")]
            targets += [(url, redact_url(url).split("://", 1)[0].split("+")[0]) for url in args.database_url]
            rows = []
            for url, label in targets:
                _progress(f"loading {label} ({redact_url(url)}) ...")
                rows.append(await _bench_one(url, label, server.url, client, data, args))
        finally:
            await client.delete(keys.meta_key(symbol), keys.log_key(symbol))
            await client.aclose()
            server.stop()
    summary = "; ".join(
        f"{r['database']}: {r['stream_events_per_s']:,} events/s at speed max = {r['ratio']}x a plain SELECT "
        f"(target >= 0.5x), seek p50 {r['seek_p50_ms']} ms p99 {r['seek_p99_ms']} ms (target p99 < 50 ms), "
        f"{r['rss_per_replay_kib']} KiB RSS per replaying connection"
        for r in rows
    )
    return BenchResult("replay", rows, f"{args.rows:,} rows: {summary}")
