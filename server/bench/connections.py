"""``signalpush bench connections``: C idle-but-subscribed connections in one server process.

Ramps to C connections (each subscribed to one of S symbols; load spread over processes
of ``--per-process`` connections), then measures the server's RSS per connection (RSS
once settled minus RSS before the ramp, over C), the time to accept and subscribe them
all, and checks that every one of them is live (one event per symbol reaches all).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from server.bench import BenchResult, positive_int
from server.bench.fanout import plan
from server.bench.fleet import LoadFleet, run_publishers
from server.bench.procs import CpuMeter, memory_kib
from server.bench.rig import TARGETS, Rig, add_common_arguments, judge, repeat, run_order, vars_of
from server.bench.stats import ratio

DESCRIPTION = "connections: RSS per idle subscribed connection and time to accept them, vs the baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--clients", type=positive_int, default=10_000, help="connections (default: 10,000)")
    parser.add_argument("--symbols", type=positive_int, default=10, help="symbols (default: 10)")
    parser.add_argument(
        "--concurrency", type=positive_int, default=64, help="handshakes in flight per load process"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before reading RSS")


@dataclass
class Ramp:
    connected: int
    failed: int
    seconds: float
    rss_before_kib: int
    rss_after_kib: int
    peak_kib: int
    server_cpu_s: float
    live: int

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connected if self.connected else 0.0


def ramp(bench: Rig, args: argparse.Namespace, kind: str) -> Ramp:
    symbols = bench.symbols(f"{kind[0]}C", args.symbols)
    server = bench.server(kind)
    fleet = LoadFleet(max(1, -(-args.clients // args.per_process)), bench.workdir)
    try:
        time.sleep(0.5)
        before = memory_kib(server.pid).get("VmRSS", 0)
        cpu = CpuMeter([server.pid]).start()
        result = fleet.connect(server.port, plan(symbols, args.clients, 1), concurrency=args.concurrency)
        cpu.stop()
        time.sleep(args.settle)
        after = memory_kib(server.pid)
        fleet.mark()
        published = run_publishers(
            bench.redis_url,
            symbols,
            mode="rate",
            seconds=1.0,
            rate=len(symbols),
            workdir=bench.workdir,
            register=server.records,
        )
        behind = fleet.wait(published.last_seq, 30)
        return Ramp(
            connected=result.ok,
            failed=result.failed,
            seconds=result.elapsed_s,
            rss_before_kib=before,
            rss_after_kib=after.get("VmRSS", 0),
            peak_kib=after.get("VmHWM", 0),
            server_cpu_s=cpu.seconds,
            live=result.ok - behind,
        )
    finally:
        fleet.close()
        server.stop()


def one_run(bench: Rig, args: argparse.Namespace, index: int) -> list[dict[str, Any]]:
    ramps = {kind: ramp(bench, args, kind) for kind in run_order(args, index)}

    def row(figure: str, value: Any) -> dict[str, Any]:
        return {"figure": figure, **{kind: value(ramps[kind]) if kind in ramps else None for kind in TARGETS}}

    rows = [
        row("connections subscribed", lambda r: r.connected),
        row("connections failed", lambda r: r.failed),
        row("connections live (got an event)", lambda r: r.live),
        row("time to accept all s", lambda r: round(r.seconds, 2)),
        row("accepted per s", lambda r: round(r.connected / r.seconds) if r.seconds else 0),
        row("server CPU s for the ramp", lambda r: round(r.server_cpu_s, 2)),
        row("RSS before MiB", lambda r: round(r.rss_before_kib / 1024, 1)),
        row("RSS after MiB", lambda r: round(r.rss_after_kib / 1024, 1)),
        row("RSS per connection KiB", lambda r: round(r.kib_per_connection, 1)),
        row("peak RSS MiB", lambda r: round(r.peak_kib / 1024, 1)),
    ]
    for item in rows:
        item["ratio"] = ratio(item.get("signalpush"), item.get("baseline"))
    return rows


def run(args: argparse.Namespace) -> BenchResult:
    result = repeat("connections", args, one_run, vars_of(args))
    judge(
        result.rows,
        {
            "connections live (got an event)": ("signalpush", f">= {args.clients}"),
            "RSS per connection KiB": ("signalpush", "<= 20"),
        },
    )
    return result
