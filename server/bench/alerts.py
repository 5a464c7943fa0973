"""``signalpush bench alerts``: fan-out with N alert rules against none (same run), and cause→webhook latency.

Two ``serve`` targets, measured like ``bench fanout`` (saturation, then a fixed rate): one
with no rules, one with ``--rules`` rules (default 50) of every condition, scoped to every
bot, so the evaluator looks at every event. During both phases a cause thread publishes,
every ``--cause-every-ms``, a signal that one rule (a route to a local stub webhook) turns
into an alert; the stub timestamps each webhook it receives: the cause→webhook latency,
under saturation and at the fixed rate.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from publishers import keys
from publishers.connection import sync_client
from publishers.events import Signal
from publishers.sync_publisher import SyncPublisher
from server.bench import BenchResult, positive_float, positive_int
from server.bench.fanout import (
    Target,
    TargetRun,
    add_ratio,
    figure_rows,
    plan,
)
from server.bench.fanout import (
    add_arguments as fanout_arguments,
)
from server.bench.fleet import LoadFleet
from server.bench.procs import CpuMeter, children_of
from server.bench.rig import Rig, judge, measure_phase, repeat, vars_of

DESCRIPTION = "alerts: fan-out with N alert rules vs none (same run), cause→webhook latency p99"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fanout_arguments(parser)
    parser.add_argument("--rules", type=positive_int, default=50, help="alert rules (default: 50)")
    parser.add_argument(
        "--cause-every-ms",
        type=positive_float,
        default=100.0,
        help="a webhook cause this often (default: 100)",
    )


def bench_rules(count: int, route: str) -> list[dict[str, Any]]:
    """``count`` rules over every bot (none fires on bench data) and one that fires on each cause."""
    kinds: list[dict[str, object]] = [
        {"type": "silent", "seconds": 3600},
        {"type": "status", "in": ["error"]},
        {"type": "drawdown", "of": "equity", "pct": 90},
        {"type": "loss_streak", "count": 1000},
        {"type": "signal", "min_confidence": 0.995, "types": ["sell"]},
        {"type": "no_candle", "seconds": 3600},
    ]
    rules: list[dict[str, Any]] = [
        {"name": f"bench-{i}", "condition": kinds[i % len(kinds)]} for i in range(count - 1)
    ]
    rules.append(
        {
            "name": "bench-cause",
            "scope": {"bots": ["cause-*"]},
            "condition": {"type": "signal", "min_confidence": 0.5},
            "cooldown_s": 0,
            "routes": [route],
        }
    )
    return rules


class Stub:
    """A local webhook: the monotonic time each cause's alert arrived (cause index -> seconds)."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                try:
                    scope = json.loads(self.rfile.read(length))["alert"]["scope"]
                    stub.received.setdefault(int(scope.rsplit("cause-", 1)[1]), arrived)
                except (ValueError, KeyError, IndexError, TypeError):
                    pass
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @contextmanager
    def running(self) -> Iterator[Stub]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class Causes:
    """A thread publishing one cause signal every ``every_s`` on ``symbol`` while :meth:`during` runs."""

    def __init__(self, redis_url: str, symbol: str, every_s: float) -> None:
        self.redis_url = redis_url
        self.symbol = symbol
        self.every_s = every_s
        self.sent: dict[int, float] = {}
        self._next = 0

    @contextmanager
    def during(self) -> Iterator[list[int]]:
        """Causes sent inside the block (their indexes)."""
        stop = threading.Event()
        indexes: list[int] = []

        def send() -> None:
            with SyncPublisher(self.redis_url) as publisher:
                while not stop.wait(self.every_s):
                    index = self._next
                    self._next += 1
                    signal = Signal(symbol=self.symbol, ts=int(time.time() * 1000), bot=f"cause-{index}",
                                    strategy="bench", type="buy", price=1.0, confidence=1.0)  # fmt: skip
                    self.sent[index] = time.monotonic()
                    publisher.publish(signal)
                    indexes.append(index)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            yield indexes
        finally:
            stop.set()
            thread.join(10)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile of sorted ``values``."""
    rank = max(1, min(len(values), round(q / 100 * len(values) + 0.5)))
    return values[rank - 1]


def latencies_ms(
    causes: Causes, stub: Stub, indexes: list[int], wait_s: float = 30.0
) -> tuple[list[float], int]:
    """Cause→webhook latencies (ms) of ``indexes`` (waiting for late ones), and how many never came."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(i in stub.received for i in indexes):
        time.sleep(0.05)
    values = [1000 * (stub.received[i] - causes.sent[i]) for i in indexes if i in stub.received]
    return sorted(values), sum(1 for i in indexes if i not in stub.received)


def run_target(
    bench: Rig, args: argparse.Namespace, target: Target, causes: Causes | None, stub: Stub
) -> tuple[TargetRun, dict[str, Any]]:
    symbols = bench.symbols(f"A{zlib.crc32(target.label.encode()):X}", args.symbols)
    server = bench.server(target.kind, env=target.env, name=target.label)
    fleet = LoadFleet(max(args.load_processes, -(-args.clients // args.per_process)), bench.workdir)
    figures: dict[str, Any] = {}
    try:
        connected = fleet.connect(server.port, plan(symbols, args.clients, 1))
        if connected.failed:
            raise RuntimeError(
                f"{target.label}: {connected.failed} connections failed: {connected.errors[:3]}"
            )
        if causes is not None:
            wait_for_lease(bench.redis_url)
        flow_key = bench.flow_key(target.label.replace(" ", "-"))
        fleet.flow(bench.redis_url, flow_key)
        phases = {}
        for name, options in (
            ("saturation", {"latency": False, "mode": "saturate", "seconds": args.seconds,
                            "processes": args.publishers, "per_call": args.per_call, "window": args.window,
                            "flow_key": flow_key}),
            (f"{args.rate:g} ev/s", {"latency": True, "mode": "rate", "seconds": args.rate_seconds,
                                     "rate": args.rate, "processes": args.rate_publishers}),
        ):  # fmt: skip
            meter = CpuMeter(alerts_pids(server.pid)).start()
            if causes is None:
                phases[name] = measure_phase(bench, server, fleet, symbols, drain_s=args.drain, **options)
                continue
            with causes.during() as indexes:
                phases[name] = measure_phase(bench, server, fleet, symbols, drain_s=args.drain, **options)
            figures[f"{name}: alerts process CPU %"] = meter.stop().percent
            values, missing = latencies_ms(causes, stub, indexes)
            figures[f"{name}: cause→webhook p50 ms"] = round(percentile(values, 50), 1) if values else None
            figures[f"{name}: cause→webhook p99 ms"] = round(percentile(values, 99), 1) if values else None
            figures[f"{name}: cause→webhook max ms"] = round(values[-1], 1) if values else None
            figures[f"{name}: webhooks missing"] = missing
        run = TargetRun(phases["saturation"], phases[f"{args.rate:g} ev/s"], connected.elapsed_s)
        return run, figures
    finally:
        fleet.close()
        server.stop()


def wait_for_lease(redis_url: str, timeout_s: float = 30.0) -> None:
    """Until an evaluator holds the lease (causes sent before would find no evaluator reading)."""
    client = sync_client(redis_url, name="signalpush-bench")
    try:
        deadline = time.monotonic() + timeout_s
        while client.get(keys.ALERTS_LEASE_KEY) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("no alert evaluator took the lease")
            time.sleep(0.05)
    finally:
        client.close()


def alerts_pids(server_pid: int) -> list[int]:
    """The alerts child of a ``serve`` (server/cli/alerts_child.py)."""
    found = []
    for pid in children_of(server_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"alerts_child" in argv:
            found.append(pid)
    return found


def one_run(bench: Rig, args: argparse.Namespace, index: int) -> list[dict[str, Any]]:
    stub = Stub()
    label = f"{args.rules} rules"
    routes = [{"name": "stub", "type": "webhook", "url": stub.url}]
    env = {
        "SIGNALPUSH_ALERTS_RULES": json.dumps(bench_rules(args.rules, "stub")),
        "SIGNALPUSH_ALERTS_ROUTES": json.dumps(routes),
    }
    targets = [Target("no rules", "signalpush", 1), Target(label, "signalpush", 1, env=env)]
    if index % 2:
        targets.reverse()
    causes = Causes(bench.redis_url, bench.symbols("CAUSE", 1)[0], args.cause_every_ms / 1000)
    runs: dict[str, TargetRun] = {}
    extra: dict[str, Any] = {}
    with stub.running():
        for target in targets:
            runs[target.label], figures = run_target(
                bench, args, target, causes if target.env else None, stub
            )
            extra.update(figures)
    ordered = {t: runs[t] for t in ("no rules", label)}
    rows = figure_rows(ordered, args.rate)
    add_ratio(rows, "ratio", label, "no rules")
    rows += [{"figure": name, label: value} for name, value in extra.items()]
    return rows


def run(args: argparse.Namespace) -> BenchResult:
    result = repeat("alerts", args, one_run, vars_of(args))
    label = f"{args.rules} rules"
    judge(
        result.rows,
        {
            "saturation deliveries/s": ("ratio", ">= 0.9"),
            "saturation lost": (label, "== 0"),
            "saturation: webhooks missing": (label, "== 0"),
        },
    )
    return result
