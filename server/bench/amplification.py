"""``signalpush bench amplification``: other clients' latency and the server's memory while many
clients pull long histories with figures.

One ``signalpush serve`` (default configuration: SQLite, recording on) over a seeded
history of ``--days`` days. ``--light`` clients follow a live symbol published at
``--rate`` events/s; their publish-to-receive latency and a ping round trip are measured
in three phases of the same run: ``quiet`` (the baseline), ``load`` (``--heavy`` clients in
a separate process each subscribe with ``history: {minutes: days, figure: true}``,
wait for the history frame, unsubscribe and start over, for ``--seconds``) and
``after`` (load stopped: is the memory given back?).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from server.bench import BenchResult, positive_float, positive_int
from server.bench.stats import LatencyHistogram
from server.core.chunks import Reassembler

DESCRIPTION = (
    "history amplification: light clients' p99 and server RSS while heavy clients pull 30-day figures"
)

_BUSY = '"code":"busy"'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heavy", type=positive_int, default=20, help="clients pulling histories (default 20)"
    )
    parser.add_argument("--light", type=positive_int, default=20, help="live clients measured (default 20)")
    parser.add_argument("--days", type=positive_int, default=30, help="history window in days (default 30)")
    parser.add_argument(
        "--rows",
        type=positive_int,
        default=86_400,
        help="seeded events of the history symbol (default 86,400)",
    )
    parser.add_argument(
        "--candle-s", type=positive_int, default=60, help="seconds between seeded candles (default 60)"
    )
    parser.add_argument("--rate", type=positive_float, default=20.0, help="live events/s (default 20)")
    parser.add_argument("--quiet-s", type=positive_float, default=8.0, help="baseline phase (default 8 s)")
    parser.add_argument("--seconds", type=positive_float, default=20.0, help="load phase (default 20 s)")
    parser.add_argument(
        "--after-s",
        type=positive_float,
        default=40.0,
        help="after phase (default 40 s: idle history workers stop after 30 s)",
    )
    parser.add_argument(
        "--database-url", help="the server's database (default: a SQLite file in the scratch dir)"
    )
    parser.add_argument("--redis-url", help="use this Redis (default: an embedded one on a free port)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the scratch dir with the server log")
    parser.add_argument("--profile", type=Path, help="sample the server with py-spy into this dir")
    parser.add_argument(
        "--env", action="append", default=[], help="extra KEY=VALUE for the server (repeatable)"
    )


def run(args: argparse.Namespace) -> BenchResult:
    from server.bench.procs import ServerChild, bench_redis, workdir

    with workdir(args.keep_logs) as scratch, bench_redis(args.redis_url, scratch) as (redis_url, _pid):
        database_url = args.database_url or f"sqlite+aiosqlite:///{scratch / 'signalpush.db'}"
        heavy_symbol = f"HIST{secrets.token_hex(3).upper()}"
        live_symbol = f"LIVE{secrets.token_hex(3).upper()}"
        asyncio.run(_seed(database_url, redis_url, heavy_symbol, args))
        env = {"SIGNALPUSH_DATABASE_URL": database_url}
        env.update(item.split("=", 1) for item in args.env)
        server = ServerChild("signalpush", redis_url, scratch, profile_dir=args.profile, env=env)
        server.start(60.0)
        try:
            rows, extra = asyncio.run(_measure(server, redis_url, heavy_symbol, live_symbol, args, scratch))
        finally:
            server.stop()
            asyncio.run(_unseed(database_url, redis_url, heavy_symbol, live_symbol))
    quiet, load, after = rows
    summary = (
        f"light p99 {quiet['light_p99_ms']:.1f} ms quiet -> {load['light_p99_ms']:.1f} ms while "
        f"{args.heavy} clients pulled {args.days}-day figures ({load['histories']} histories, "
        f"{load['busy']} busy); gateway RSS {quiet['rss_mib']:.0f} -> peak {load['rss_peak_mib']:.0f} -> "
        f"{after['rss_mib']:.0f} MiB after; with its history workers {quiet['with_workers_mib']:.0f} -> "
        f"peak {load['with_workers_peak_mib']:.0f} -> {after['with_workers_mib']:.0f} MiB "
        f"(target: p99 under load < 50 ms: "
        f"{'met' if load['light_p99_ms'] < 50 else 'MISSED'})"
    )
    return BenchResult("amplification", list(rows), summary, {"args": extra})


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _seed(database_url: str, redis_url: str, symbol: str, args: argparse.Namespace) -> None:
    from publishers import keys
    from publishers.connection import async_client
    from publishers.events import now_ms
    from server.bench.backfill import Dataset, load_sql
    from server.history.engine import create_engine
    from server.history.migrate import upgrade_database

    _progress(f"seeding {args.rows:,} events of {symbol} over {args.days} days ...")
    data = Dataset(symbol, secrets.token_hex(6), args.rows, args.days, now_ms(), 0, args.candle_s * 1000)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        await load_sql(engine, data, "seed")
    finally:
        await engine.dispose()
    client = async_client(redis_url)
    try:
        await client.hset(keys.meta_key(symbol), mapping={"epoch": data.epoch, "seq": args.rows})
    finally:
        await client.aclose()


async def _unseed(database_url: str, redis_url: str, *symbols: str) -> None:
    from sqlalchemy import delete

    from publishers import keys
    from publishers.connection import async_client
    from server.history.engine import create_engine
    from server.history.models import TABLES

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for table in TABLES.values():
                await connection.execute(delete(table).where(table.c.symbol.in_(symbols)))
    finally:
        await engine.dispose()
    client = async_client(redis_url)
    try:
        for symbol in symbols:
            await client.delete(keys.meta_key(symbol), keys.log_key(symbol))
            await client.srem(keys.SYMBOLS_KEY, symbol)
    finally:
        await client.aclose()


class _Light:
    """Live clients and a pinger: latencies of the current phase."""

    def __init__(self) -> None:
        self.events = LatencyHistogram()
        self.pings = LatencyHistogram()

    def reset(self) -> None:
        self.events, self.pings = LatencyHistogram(), LatencyHistogram()

    async def follow(self, url: str, symbol: str, stop: asyncio.Event, ready: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        async with connect(url, max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"op": "subscribe", "ref": "1", "symbol": symbol}))
            ready.set()
            while not stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                received = time.time() * 1000
                frame = json.loads(message)
                for item in frame.get("items") or ():
                    self.events.add((received - item["ts"]) * 1000)

    async def ping(self, url: str, stop: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        async with connect(url) as ws:
            await ws.recv()
            while not stop.is_set():
                started = time.perf_counter()
                await ws.send('{"op":"ping"}')
                await ws.recv()
                self.pings.add((time.perf_counter() - started) * 1e6)
                await asyncio.sleep(0.05)


async def _publish(redis_url: str, symbol: str, rate: float, stop: asyncio.Event) -> None:
    from publishers.publisher import Publisher

    async with Publisher(redis_url, bot="amp", strategy="bench") as publisher:
        next_at = time.monotonic()
        while not stop.is_set():
            await publisher.signal(symbol, "buy", price=100.0, confidence=0.5)
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def _measure(
    server: Any, redis_url: str, heavy: str, live: str, args: argparse.Namespace, scratch: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from server.bench.procs import children_of, memory_kib, stop_process

    url = f"ws://127.0.0.1:{server.port}/ws"
    light = _Light()
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(args.light)]
    tasks = [asyncio.create_task(light.follow(url, live, stop, ready)) for ready in readies]
    tasks.append(asyncio.create_task(light.ping(url, stop)))
    tasks.append(asyncio.create_task(_publish(redis_url, live, args.rate, stop)))

    def rss_mib() -> float:
        return memory_kib(server.pid).get("VmRSS", 0) / 1024

    def tree_mib() -> float:
        """The gateway and its children (the history worker processes)."""
        pids = [server.pid, *children_of(server.pid)]
        return sum(memory_kib(pid).get("VmRSS", 0) for pid in pids) / 1024

    async def phase(
        name: str, seconds: float, child: subprocess.Popen[bytes] | None = None
    ) -> dict[str, Any]:
        light.reset()
        peak, tree_peak = rss_mib(), tree_mib()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            peak, tree_peak = max(peak, rss_mib()), max(tree_peak, tree_mib())
        report: dict[str, Any] = {}
        if child is not None:
            out, _ = await asyncio.to_thread(child.communicate, timeout=120)
            report = json.loads(out.decode().strip().splitlines()[-1])
        events, pings = light.events.summary_ms(), light.pings.summary_ms()
        return {
            "phase": name,
            "light_events": light.events.count,
            "light_p50_ms": events["p50_ms"],
            "light_p99_ms": events["p99_ms"],
            "light_max_ms": events["max_ms"],
            "ping_p99_ms": pings["p99_ms"],
            "histories": report.get("histories", 0),
            "busy": report.get("busy", 0),
            "history_p50_s": report.get("p50_s"),
            "history_max_s": report.get("max_s"),
            "rss_mib": round(rss_mib(), 1),
            "rss_peak_mib": round(peak, 1),
            "with_workers_mib": round(tree_mib(), 1),
            "with_workers_peak_mib": round(tree_peak, 1),
        }

    try:
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 30)
        _progress(f"quiet phase ({args.quiet_s:g} s) ...")
        quiet = await phase("quiet", args.quiet_s)
        _progress(
            f"load phase: {args.heavy} clients pulling {args.days}-day figures for {args.seconds:g} s ..."
        )
        child = _spawn_heavy(url, heavy, args, scratch)
        try:
            load = await phase("load", args.seconds, child)
        finally:
            stop_process(child)
        _progress(f"after phase ({args.after_s:g} s) ...")
        after = await phase("after", args.after_s)
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
    return [quiet, load, after], {k: v for k, v in vars(args).items() if k not in ("handler", "json")}


def _spawn_heavy(url: str, symbol: str, args: argparse.Namespace, scratch: Path) -> subprocess.Popen[bytes]:
    with (scratch / "heavy.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "server.bench.amplification", url, symbol, str(args.heavy),
             str(args.days * 1440), str(args.seconds)],
            stdout=subprocess.PIPE,
            stderr=log,
        )  # fmt: skip


# -- the heavy clients (a separate process, so their parsing does not skew the measurement) --


async def _pull(url: str, symbol: str, minutes: int, deadline: float, out: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, open_timeout=30) as ws:
        await ws.recv()
        ref = 0
        while time.monotonic() < deadline:
            ref += 1
            started = time.monotonic()
            history = {"minutes": minutes, "figure": True}
            await ws.send(
                json.dumps({"op": "subscribe", "ref": str(ref), "symbol": symbol, "history": history})
            )
            sub = None
            chunks = Reassembler()
            while True:
                message = await ws.recv(decode=False)
                head = message[:200].decode(errors="replace")
                if head.startswith('{"op":"chunk"'):  # a frame over max_send_frame_bytes, in pieces
                    whole = chunks.feed(json.loads(message))
                    if whole is None:
                        continue
                    message = whole.encode()
                    head = whole[:200]
                if head.startswith('{"op":"subscribed"'):
                    sub = json.loads(message)["sub"]
                elif head.startswith('{"op":"history"'):
                    out["durations"].append(time.monotonic() - started)
                    out["bytes"] += len(message)
                    break
                elif _BUSY in head:
                    out["busy"] += 1
                    await asyncio.sleep(0.5)
                    break
                elif head.startswith('{"op":"error"'):
                    out["errors"].append(head)
                    break
            if sub is not None:
                await ws.send(json.dumps({"op": "unsubscribe", "sub": sub}))


async def _heavy_main(url: str, symbol: str, clients: int, minutes: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"durations": [], "bytes": 0, "busy": 0, "errors": []}
    deadline = time.monotonic() + seconds
    results = await asyncio.gather(
        *(_pull(url, symbol, minutes, deadline, out) for _ in range(clients)), return_exceptions=True
    )
    durations = out["durations"]
    return {
        "histories": len(durations),
        "busy": out["busy"],
        "errors": out["errors"][:3] + [repr(r) for r in results if isinstance(r, BaseException)][:3],
        "mib": round(out["bytes"] / 2**20, 1),
        "p50_s": round(statistics.median(durations), 2) if durations else None,
        "max_s": round(max(durations), 2) if durations else None,
    }


if __name__ == "__main__":
    _url, _symbol, _clients, _minutes, _seconds = sys.argv[1:6]
    print(json.dumps(asyncio.run(_heavy_main(_url, _symbol, int(_clients), int(_minutes), float(_seconds)))))
