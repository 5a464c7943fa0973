"""``signalpush bench walls``: what the wall fleet's heartbeats cost (docs/walls.md, docs/bench.md).

Two figures, each against a baseline measured in the same run:

* **Frame cost on the wall.** A ``signalpush serve`` child, a feed of ``--rate`` events/s to each of
  ``--tiles`` symbols (server/bench/wall.py's MixFeed), and the wall in headless Chromium with
  ``perf=1``: the frame time p95 with heartbeats off (``heartbeat_s=0``) and on (every
  ``--heartbeat-s``), alternated (off first in odd rounds, on first in even ones) for
  ``--rounds`` rounds of ``--measure-s`` seconds each. The
  ratio on/off should be 1 within noise.
* **Server cost of a fleet.** ``--displays`` websocket connections to the same server (the feed
  stopped), first silent for ``--server-s`` seconds (the baseline: open sockets, pings), then each
  sending a realistic heartbeat every ``--every-s`` seconds (jittered). The gateway process's CPU
  (from /proc) and Redis's commands per second (INFO ``total_commands_processed``) in both phases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from server.bench import BenchResult, positive_float, positive_int
from server.bench.browser import CHROMIUM_ARGS, chromium_path

DESCRIPTION = "wall fleet: heartbeats' frame cost on a wall (on/off) and the server's cost of N displays"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiles", type=positive_int, default=6, help="symbols on the wall (default 6)")
    parser.add_argument("--rate", type=positive_float, default=5.0, help="events/s per symbol (default 5)")
    parser.add_argument(
        "--heartbeat-s",
        type=positive_float,
        default=1.0,
        help="the wall's heartbeat period when on (default 1)",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=2, help="off/on rounds on the wall (default 2)"
    )
    parser.add_argument(
        "--measure-s", type=positive_float, default=30.0, help="frame measurement per phase (default 30)"
    )
    parser.add_argument("--warmup-s", type=float, default=10.0, help="after each (re)load (default 10)")
    parser.add_argument(
        "--displays",
        type=positive_int,
        default=500,
        help="simulated displays for the server cost (default 500)",
    )
    parser.add_argument(
        "--every-s", type=positive_float, default=5.0, help="their heartbeat period (default 5, the wall's)"
    )
    parser.add_argument(
        "--server-s", type=positive_float, default=30.0, help="server measurement per phase (default 30)"
    )
    parser.add_argument("--skip-browser", action="store_true", help="only the server cost")
    parser.add_argument("--redis-url", help="use this Redis (default: an embedded redis-server)")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_commands(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def _heartbeat(display: str, tiles: int, started: float, seq: int) -> str:
    return json.dumps(
        {
            "op": "display",
            "display": display,
            "tiles": [{"id": f"SYM{i}USDT", "seq": seq + i, "age_s": 0.4} for i in range(tiles)],
            "fps": 59.9,
            "long_frames": 2,
            "heap_mb": 84.5,
            "page_age_s": round(time.monotonic() - started, 1),
            "reconnects": 0,
            "heals": 0,
            "status": "ok",
            "params": {"symbols": ",".join(f"SYM{i}USDT" for i in range(tiles)), "minutes": "360"},
        }
    )


async def _fleet_phase(ws_url: str, args: argparse.Namespace, pid: int, redis_url: str) -> dict[str, Any]:
    """Open the displays' sockets, measure silent then heartbeating; returns both phases' figures."""
    from websockets.asyncio.client import connect

    sockets = []
    for i in range(args.displays):
        sockets.append(await connect(ws_url, max_queue=None))
        if i % 100 == 99:
            _progress(f"  {i + 1} displays connected")
    started = time.monotonic()

    async def measure(seconds: float) -> dict[str, float]:
        cpu0, cmd0, t0 = _cpu_seconds(pid), _redis_commands(redis_url), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, cmd1, t1 = _cpu_seconds(pid), _redis_commands(redis_url), time.monotonic()
        return {"cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "redis_cmds_s": (cmd1 - cmd0) / (t1 - t0)}

    async def drain(ws: Any) -> None:
        async for _ in ws:
            pass

    readers = [asyncio.create_task(drain(ws)) for ws in sockets]
    await asyncio.sleep(2.0)
    _progress(f"  silent: {args.displays} open sockets for {args.server_s:g} s")
    silent = await measure(args.server_s)
    sent = 0

    async def beat(index: int, ws: Any) -> None:
        nonlocal sent
        await asyncio.sleep(random.uniform(0, args.every_s))
        seq = 0
        while True:
            seq += 1
            await ws.send(_heartbeat(f"bench-{index:05d}", 6, started, seq))
            sent += 1
            await asyncio.sleep(args.every_s * random.uniform(0.9, 1.1))

    beaters = [asyncio.create_task(beat(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(args.every_s + 1)  # every display has started beating
    _progress(f"  heartbeats: {args.displays} displays every {args.every_s:g} s for {args.server_s:g} s")
    before = sent
    beating = await measure(args.server_s)
    beating["heartbeats_s"] = (sent - before) / args.server_s
    for task in beaters + readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"silent": silent, "beating": beating}


def _frame_phases(http: str, symbols: list[str], args: argparse.Namespace) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from server.bench.wall import _Page, _wait

    path = chromium_path()
    if path is None:
        raise SystemExit(
            "bench walls needs Chromium: apt-get install chromium, or set SIGNALPUSH_TEST_CHROMIUM"
        )
    base = {"symbols": ",".join(symbols), "perf": 1, "minutes": 30, "display": "bench-wall"}
    p95: dict[str, list[float]] = {"off": [], "on": []}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        wall = _Page(page)
        for round_ in range(args.rounds):
            # Alternate which goes first: a round's first load must not always be the same phase.
            for phase in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                beat = 0 if phase == "off" else args.heartbeat_s
                page.goto(f"{http}/wall?{urlencode({**base, 'heartbeat_s': beat})}")
                _wait(
                    lambda: (
                        len(wall.tiles()) == args.tiles and all(t["ready"] for t in wall.tiles().values())
                    ),
                    120,
                    "every tile to draw",
                )
                time.sleep(args.warmup_s)
                wall.reset_perf()
                time.sleep(args.measure_s)
                frame = wall.perf()["frame"]
                beats = page.evaluate("() => window.signalpushWall.fleet.heartbeats")
                p95[phase].append(float(frame["p95"] or 0))
                _progress(
                    f"  round {round_ + 1} heartbeats {phase}: frame p95 {frame['p95']} ms over "
                    f"{frame['count']} frames ({beats} heartbeats sent)"
                )
        browser.close()
    return p95


def run(args: argparse.Namespace) -> BenchResult:
    from server.bench.wall import MixFeed, _healthy, _wait
    from server.cli.embedded import EmbeddedRedis, free_port

    scratch = Path(tempfile.mkdtemp(prefix="signalpush-bench-walls-"))
    redis = None
    url = args.redis_url
    if url is None:
        redis = EmbeddedRedis(port=free_port(), data_dir=scratch / "redis", appendonly=False)
        redis.start()
        url = redis.url
    port = free_port()
    env = {
        **os.environ,
        "SIGNALPUSH_REDIS_URL": url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/h.db",
        "SIGNALPUSH_SERVER_MAX_CONNECTIONS_PER_IP": "0",
        "SIGNALPUSH_SERVER_MESSAGE_RATE": "50",
    }
    symbols = [f"WF{random.randrange(16**4):04X}{i}" for i in range(args.tiles)]
    feed = MixFeed(url, symbols, args.rate)
    with open(scratch / "serve.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    http = f"http://127.0.0.1:{port}"
    frames: dict[str, list[float]] = {"off": [], "on": []}
    try:
        _wait(lambda: _healthy(http), 30, "the server")
        if not args.skip_browser:
            feed.seed(10, 1.0)
            feed.start()
            _progress(f"wall: {args.tiles} tiles x {args.rate:g} events/s, heartbeats off/on x {args.rounds}")
            frames = _frame_phases(http, symbols, args)
            feed.stop()
        _progress(f"server: {args.displays} simulated displays")
        fleet = asyncio.run(_fleet_phase(f"ws://127.0.0.1:{port}/ws", args, server.pid, url))
    finally:
        feed.stop()
        server.terminate()
        server.wait(20)
        if redis is not None:
            redis.stop()
    return _result(args, frames, fleet)


def _result(args: argparse.Namespace, frames: dict[str, list[float]], fleet: dict[str, Any]) -> BenchResult:
    silent, beating = fleet["silent"], fleet["beating"]
    rows: list[dict[str, Any]] = []
    ratio = None
    if frames["off"] and frames["on"]:
        off, on = statistics.median(frames["off"]), statistics.median(frames["on"])
        ratio = round(on / off, 3) if off else None
        rows.append(
            {
                "figure": "wall frame time p95 (ms), median of rounds",
                "baseline": off,
                "measured": on,
                "ratio": ratio,
                "note": f"heartbeats off vs every {args.heartbeat_s:g} s",
            }
        )
    cpu = beating["cpu_percent"] - silent["cpu_percent"]
    cmds = beating["redis_cmds_s"] - silent["redis_cmds_s"]
    rows += [
        {
            "figure": "gateway CPU (% of one core)",
            "baseline": round(silent["cpu_percent"], 1),
            "measured": round(beating["cpu_percent"], 1),
            "ratio": f"+{cpu:.1f}",
            "note": f"{args.displays} displays, silent vs heartbeats",
        },
        {
            "figure": "Redis commands/s",
            "baseline": round(silent["redis_cmds_s"]),
            "measured": round(beating["redis_cmds_s"]),
            "ratio": f"+{cmds:.0f}",
            "note": f"{beating['heartbeats_s']:.0f} heartbeats/s",
        },
    ]
    summary = (
        f"{args.displays} displays beating every {args.every_s:g} s cost the gateway {cpu:.1f}% of a core "
        f"and Redis {cmds:.0f} commands/s"
        + (f"; wall frame p95 with heartbeats / without: {ratio}" if ratio is not None else "")
    )
    return BenchResult("walls", rows=rows, summary=summary, extra={"frames": frames, "fleet": fleet})
