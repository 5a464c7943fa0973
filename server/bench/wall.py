"""``signalpush bench wall``: a wall soak in headless Chromium — memory stays flat, frames stay short.

Starts a Redis (embedded unless ``--redis-url``), a ``signalpush serve`` child with its own SQLite
history, a publisher thread sending ``--rate`` events/s to each of ``--tiles`` symbols (a mix of
live candles, signals of three strategies, trades with P&L and equity reports, after
``--seed-minutes`` of history), and the machine's Chromium (playwright) on
``/wall?symbols=...&perf=1``. After a warm-up it measures, in the page, the JS heap (after a
forced GC) and the DOM node count at the start and at the end, and the frame cost of applying
updates (``perf=1`` in client_js/wall.js: the flush until the first task after the frame was
rendered; and the interval between frames, against the same wall with no events for
``--baseline-s`` seconds). The frame figures' baseline is the same wall and feed without the
live layer (``live_layer=0``: every flush a whole-tile Plotly redraw) for ``--compare-s``
seconds, in the same run, after the soak. The server's ``history.max_events`` is raised so
that a long enough seed (``--seed-minutes 165 --seed-rate 8`` for max_points 2000) fills
every trace before the soak: memory is judged at steady state, not while traces fill.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

from server.bench import BenchResult, positive_float, positive_int
from server.bench.browser import CHROMIUM_ARGS, chromium_path

DESCRIPTION = "wall soak: tiles at N events/s in headless Chromium (JS heap, DOM nodes, frame time p95)"

_STRATEGIES = (("momo-1", "momentum"), ("ema-1", "ema_crossover"), ("mr-1", "mean_reversion"))
_BASES = (64_000.0, 3_200.0, 150.0, 0.45, 25.0, 600.0, 1.1, 90.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=positive_float, default=30.0, help="soak length (default 30)")
    parser.add_argument("--tiles", type=positive_int, default=6, help="symbols on the wall (default 6)")
    parser.add_argument("--rate", type=positive_float, default=20.0, help="events/s per symbol (default 20)")
    parser.add_argument(
        "--max-points", type=positive_int, default=2000, help="the wall's max_points (default 2000)"
    )
    parser.add_argument(
        "--seed-minutes", type=positive_float, default=60.0, help="history before the soak (default 60)"
    )
    parser.add_argument(
        "--seed-rate",
        type=positive_float,
        default=1.0,
        help="events/s per symbol in that history (default 1; 5.5 over 240 minutes fills every trace "
        "of max_points 2000, so the soak starts at steady state)",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=90.0,
        help="live before the start figures (default 90: past the first folds, at 51-69 s)",
    )
    parser.add_argument(
        "--baseline-s", type=float, default=15.0, help="idle wall for the baseline (default 15)"
    )
    parser.add_argument("--redis-url", help="use this Redis (default: an embedded redis-server)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the wall at the end")
    parser.add_argument("--redraw-ms", type=int, help="the wall's redraw_ms (default: the wall's, 1000)")
    parser.add_argument(
        "--live-layer",
        choices=("on", "off"),
        default="on",
        help="the wall's live layer (default on; off: every flush is a whole-tile Plotly redraw)",
    )
    parser.add_argument("--fold-s", type=float, help="the wall's fold_s (default: the wall's, 60)")
    parser.add_argument(
        "--compare-s",
        type=float,
        default=60.0,
        help="then the same wall with live_layer=0 (whole-tile Plotly redraws) for this long, "
        "as the baseline of the frame figures (default 60; 0 skips it)",
    )
    parser.add_argument(
        "--gl",
        choices=("auto", "on", "off"),
        default="auto",
        help="the wall's gl (WebGL markers; default auto)",
    )


class MixFeed:
    """Events for the wall: per symbol a random-walk price, 5 s candles, signals, trades, equity."""

    def __init__(self, url: str, symbols: list[str], rate: float, seed: int = 3) -> None:
        from publishers.sync_publisher import SyncPublisher

        self.symbols = symbols
        self.rate = rate
        self.rng = random.Random(seed)
        self.price = {s: _BASES[i % len(_BASES)] for i, s in enumerate(symbols)}
        self.price_ts: dict[str, int] = {}
        self.open: dict[tuple[str, str], tuple[str, str, float, float]] = {}
        self.positions = 0
        self.equity = {bot: 10_000.0 for bot, _ in _STRATEGIES}
        self.publisher = SyncPublisher(url)
        self.published = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def events(self, symbol: str, ts: int) -> list[Any]:
        from publishers.events import BotStatus, Candle, Signal, Trade

        rng = self.rng
        # Volatility per unit of time (3e-4 per sqrt(s)), not per event: a symbol's price does not
        # move faster because its bots publish more, and the live part must look like the seed.
        elapsed_s = max(0.0, (ts - self.price_ts.get(symbol, ts - 1000)) / 1000)
        self.price_ts[symbol] = ts
        price = self.price[symbol] = self.price[symbol] * (1 + rng.gauss(0, 3e-4 * elapsed_s**0.5))
        p = round(price, 6)
        bot, strategy = rng.choice(_STRATEGIES)
        roll = rng.random()
        if roll < 0.3:
            bucket = ts - ts % 5000
            return [
                Candle(
                    symbol=symbol,
                    ts=bucket,
                    tf="5s",
                    open=p,
                    high=p * 1.0004,
                    low=p * 0.9996,
                    close=p,
                    volume=round(rng.random(), 4),
                )
            ]
        if roll < 0.75:
            kind = rng.choice(("buy", "sell", "hold"))
            return [
                Signal(
                    symbol=symbol,
                    ts=ts,
                    bot=bot,
                    strategy=strategy,
                    type=kind,
                    price=p,
                    confidence=round(rng.random(), 3),
                )
            ]
        if roll < 0.92:
            held = self.open.pop((symbol, bot), None)
            if held is None:
                self.positions += 1
                held = (f"{bot}-{self.positions}", rng.choice(("buy", "sell")), p, round(100 / p, 8))
                self.open[(symbol, bot)] = held
                return [
                    Trade(
                        symbol=symbol,
                        ts=ts,
                        bot=bot,
                        strategy=strategy,
                        side=held[1],
                        action="entry",
                        price=p,
                        qty=held[3],
                        position=held[0],
                    )
                ]
            pnl = round((1 if held[1] == "buy" else -1) * (p - held[2]) * held[3], 6)
            self.equity[bot] += pnl
            return [
                Trade(
                    symbol=symbol,
                    ts=ts,
                    bot=bot,
                    strategy=strategy,
                    side="sell" if held[1] == "buy" else "buy",
                    action="exit",
                    price=p,
                    qty=held[3],
                    position=held[0],
                    pnl=pnl,
                )
            ]
        return [
            BotStatus(
                symbol=symbol,
                ts=ts,
                bot=bot,
                strategy=strategy,
                status="active",
                equity=round(self.equity[bot], 2),
            )
        ]

    def seed(self, minutes: float, rate: float = 1.0) -> int:
        """``minutes`` of history ending now, ``rate`` events per second per symbol."""
        now = int(time.time() * 1000)
        step = max(1, round(1000 / rate))
        published = 0
        for first in range(now - int(minutes * 60_000), now, 600_000):  # ten minutes at a time
            events = [
                e
                for t in range(first, min(first + 600_000, now), step)
                for s in self.symbols
                for e in self.events(s, t)
            ]
            for start in range(0, len(events), 5000):
                self.publisher.publish_many(events[start : start + 5000])
            published += len(events)
        self.published += published
        return published

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wall-bench-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # One event per symbol per tick: `rate` ticks a second, on a fixed schedule.
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            ts = int(time.time() * 1000)
            try:
                batch = [e for s in self.symbols for e in self.events(s, ts)]
                self.publisher.publish_many(batch)
                self.published += len(batch)
            except Exception as exc:  # reported at the end of the run
                self.errors.append(exc)
                return
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.publisher.close()


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench wall: timed out waiting for {what}")
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        with urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(json.loads(response.read())["status"] == "ok")
    except OSError:
        return False


def _recorded(url: str) -> int:
    """Events the server's recorder has committed to SQL (its /metrics counter)."""
    try:
        with urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("signalpush_recorder_events_total "):
            return int(float(line.split()[1]))
    return 0


class _Page:
    """The wall page and the in-page figures the soak reads."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)

    def heap_mib(self) -> float:
        self.cdp.send("HeapProfiler.collectGarbage")
        return float(self.cdp.send("Runtime.getHeapUsage")["usedSize"]) / 2**20

    def dom_nodes(self) -> int:
        return int(self.page.evaluate("() => document.getElementsByTagName('*').length"))

    def tiles(self) -> dict[str, Any]:
        found: dict[str, Any] = self.page.evaluate(
            "() => window.signalpushWall ? window.signalpushWall.tiles : {}"
        )
        return found

    def points(self) -> int:
        return sum(sum(t["traces"].values()) for t in self.tiles().values())

    def perf(self) -> dict[str, Any]:
        found: dict[str, Any] = self.page.evaluate("() => window.signalpushWall.perf")
        return found

    def reset_perf(self) -> None:
        self.page.evaluate("() => window.signalpushWall.resetPerf()")


def run(args: argparse.Namespace) -> BenchResult:
    """The soak; SIGTERM stops it like Ctrl-C, so its server, Redis and browser go with it."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"bench wall: stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> BenchResult:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("bench wall needs playwright: pip install 'signalpush[test]'") from None
    if path is None:
        raise SystemExit(
            "bench wall needs Chromium: apt-get install chromium, or set SIGNALPUSH_TEST_CHROMIUM"
        )
    from server.cli.embedded import EmbeddedRedis, free_port

    scratch = Path(tempfile.mkdtemp(prefix="signalpush-bench-wall-"))
    redis = None
    url = args.redis_url
    if url is None:
        redis = EmbeddedRedis(port=free_port(), data_dir=scratch / "redis", appendonly=False)
        redis.start()
        url = redis.url
    port = free_port()
    env = {
        # Room for a history that fills every trace to max_points (9 signal traces, trades,
        # equity), so that the soak starts at steady state; the default 20,000 stops short.
        "SIGNALPUSH_HISTORY_MAX_EVENTS": str(max(20_000, 40 * args.max_points)),
        **os.environ,
        "SIGNALPUSH_REDIS_URL": url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/h.db",
    }
    tag = f"{random.randrange(16**4):04X}"
    symbols = [f"WB{tag}{i}" for i in range(args.tiles)]
    feed = MixFeed(url, symbols, args.rate)
    with open(scratch / "serve.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "server.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    http = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _healthy(http), 30, "the server")
        seeded = feed.seed(args.seed_minutes, args.seed_rate)
        # The wall starts once the history is in SQL: the recorder's catching up is not the wall's load.
        _wait(lambda: _recorded(http) >= seeded, 60 + seeded / 2000, "the recorder to store the history")
        _progress(f"seeded {seeded:,} events over {args.tiles} symbols; opening the wall")
        params: dict[str, Any] = {
            "symbols": ",".join(symbols),
            "max_points": args.max_points,
            "perf": 1,
            "minutes": int(args.seed_minutes + args.minutes + 10),
        }
        if args.redraw_ms is not None:
            params["redraw_ms"] = args.redraw_ms
        if args.fold_s is not None:
            params["fold_s"] = args.fold_s
        params["live_layer"] = 1 if args.live_layer == "on" else 0
        params["gl"] = args.gl
        query = urlencode(params)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{http}/wall?{query}")
            wall = _Page(page)
            _wait(
                lambda: len(wall.tiles()) == args.tiles and all(t["ready"] for t in wall.tiles().values()),
                180,
                "every tile to draw",
            )
            time.sleep(args.baseline_s)
            baseline = wall.perf()
            feed.start()
            time.sleep(args.warmup_s)
            start = {"heap": wall.heap_mib(), "dom": wall.dom_nodes(), "points": wall.points()}
            wall.reset_perf()
            began = time.monotonic()
            end_at = began + args.minutes * 60
            while time.monotonic() < end_at:
                time.sleep(min(60.0, max(0.0, end_at - time.monotonic())))
                frame = wall.perf()["frame"]
                _progress(
                    f"  {(time.monotonic() - began) / 60:.1f} min: {feed.published:,} events published, "
                    f"frame p95 {frame['p95']} ms, DOM {wall.dom_nodes()}, heap {wall.heap_mib():.1f} MiB, "
                    f"points {wall.points():,}"
                )
            measured = wall.perf()
            end = {"heap": wall.heap_mib(), "dom": wall.dom_nodes(), "points": wall.points()}
            tiles = wall.tiles()
            args.gl_used = bool(page.evaluate("() => window.signalpushWall.gl"))
            if args.screenshot:
                page.screenshot(path=str(args.screenshot))
            redraws = _compare(page, wall, http, params, args) if args.live_layer == "on" else None
            browser.close()
    finally:
        feed.stop()
        server.terminate()
        server.wait(20)
        if redis is not None:
            redis.stop()
    return _result(args, baseline, measured, start, end, tiles, feed, errors, redraws)


def _compare(page: Any, wall: _Page, http: str, params: dict[str, Any], args: argparse.Namespace) -> Any:
    """The same wall, same feed, without the live layer: the frame figures' baseline, same run."""
    if args.compare_s <= 0:
        return None
    _progress(f"  baseline: the same wall with live_layer=0 for {args.compare_s:g} s")
    page.goto(f"{http}/wall?{urlencode({**params, 'live_layer': 0})}")
    _wait(
        lambda: len(wall.tiles()) == args.tiles and all(t["ready"] for t in wall.tiles().values()),
        120,
        "every tile to draw again",
    )
    time.sleep(min(args.warmup_s, 20.0))
    wall.reset_perf()
    time.sleep(args.compare_s)
    return wall.perf()


def _result(
    args: argparse.Namespace,
    baseline: dict[str, Any],
    measured: dict[str, Any],
    start: dict[str, Any],
    end: dict[str, Any],
    tiles: dict[str, Any],
    feed: MixFeed,
    errors: list[str],
    redraws: dict[str, Any] | None = None,
) -> BenchResult:
    frame, script, interval = measured["frame"], measured["script"], measured["interval"]
    fold = measured.get("fold") or {}
    idle = baseline["interval"]
    rows = [
        {
            "figure": "JS heap after GC (MiB)",
            "start": round(start["heap"], 2),
            "end": round(end["heap"], 2),
            "ratio": round(end["heap"] / start["heap"], 3),
        },
        {
            "figure": "DOM nodes",
            "start": start["dom"],
            "end": end["dom"],
            "ratio": round(end["dom"] / start["dom"], 3),
        },
        {
            "figure": "points in the traces",
            "start": start["points"],
            "end": end["points"],
            "ratio": round(end["points"] / max(1, start["points"]), 3),
        },
        {"figure": "frame time p50 (ms)", "end": frame["p50"]},
        {"figure": "frame time p95 (ms)", "end": frame["p95"], "ratio": "target < 16"},
        *(
            [
                {
                    "figure": "frame time p95, live_layer=0 (ms)",
                    "end": redraws["frame"]["p95"],
                    "ratio": round(frame["p95"] / redraws["frame"]["p95"], 4)
                    if frame["p95"] and redraws["frame"]["p95"]
                    else None,
                },
                {"figure": "frame time p50, live_layer=0 (ms)", "end": redraws["frame"]["p50"]},
            ]
            if redraws
            else []
        ),
        {"figure": "frame time max (ms)", "end": round(frame["max"], 1)},
        {"figure": "script in the flush p95 (ms)", "end": script["p95"]},
        {"figure": "frames that applied updates", "end": frame["count"]},
        {"figure": "folds (whole-tile Plotly redraws)", "end": fold.get("count", 0)},
        {"figure": "fold script p95 (ms)", "end": fold.get("p95")},
        {
            "figure": "frame interval p95 (ms)",
            "start": idle["p95"],
            "end": interval["p95"],
            "ratio": round(interval["p95"] / idle["p95"], 3) if idle["p95"] else None,
        },
    ]
    # A tile redraws at most every redraw_ms: up to that much of its events wait, by design.
    waiting = max((t["queue"] for t in tiles.values()), default=0)
    problems = [*errors, *(str(e) for e in feed.errors)]
    summary = (
        f"wall soak {args.minutes:g} min, {args.tiles} tiles x {args.rate:g} events/s"
        f" (gl={args.gl}: {'WebGL' if args.gl_used else 'SVG'}, live layer {args.live_layer}): "
        f"heap {start['heap']:.1f} -> {end['heap']:.1f} MiB, "
        f"DOM {start['dom']} -> {end['dom']}, frame p95 {frame['p95']} ms (target < 16; "
        f"idle frame interval p95 {idle['p95']} ms), {feed.published:,} events, "
        f"at most {waiting} waiting in a tile at the end"
        + (f"; problems: {problems[:3]}" if problems else "")
    )
    if redraws:
        summary += (
            f"; same wall with whole-tile redraws (live_layer=0): frame p95 {redraws['frame']['p95']} ms"
        )
    return BenchResult(
        "wall",
        rows=rows,
        summary=summary,
        extra={"baseline": baseline, "measured": measured, "live_layer_off": redraws},
    )
