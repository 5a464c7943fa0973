"""``signalpush bench reconnect``: SIGKILL the server under load and time the reconnect storm.

C clients subscribe with history (S symbols with some events already published), events
keep flowing at a fixed rate, the server is killed with SIGKILL and started again on the
same port. Clients reconnect with exponential backoff and full jitter and subscribe with
``resume`` from their position (the baseline has no resume: they just subscribe again).
Measured: the time from the restart (the new process started) until every client is live
again (it has received everything up to the position its new subscription started at),
events lost and duplicated over the whole drill, and the restarted server's peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from server.bench import BenchResult, positive_float, positive_int
from server.bench.fleet import ConnPlan, FleetReport, LoadFleet, Publishers, run_publishers
from server.bench.procs import CpuMeter, memory_kib
from server.bench.recording import missing_rows
from server.bench.rig import (
    TARGETS,
    Rig,
    add_common_arguments,
    judge,
    repeat,
    run_order,
    vars_of,
    warn_samples,
)
from server.bench.stats import ratio

DESCRIPTION = "reconnect: SIGKILL + restart under load; time until every client is live again, lost, dups"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--clients", type=positive_int, default=5000, help="connections (default: 5,000)")
    parser.add_argument("--symbols", type=positive_int, default=10, help="symbols (default: 10)")
    parser.add_argument(
        "--rate", type=positive_float, default=40.0, help="events/s during the drill (default: 40)"
    )
    parser.add_argument(
        "--history-events", type=int, default=100, help="events per symbol before subscribing"
    )
    parser.add_argument(
        "--before-kill", type=float, default=3.0, help="seconds of live events before the kill"
    )
    parser.add_argument("--after", type=float, default=15.0, help="max seconds, after the restart, of events")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes in flight per load process")


@dataclass
class Drill:
    restart_to_live_s: float | None
    kill_to_live_s: float
    healthy_after_s: float
    report: FleetReport
    lost: int
    peak_kib: int
    connected: int
    restarted_ns: int
    storm_cpu_s: float
    #: Events published without a row in SQL at the end (None: the server does not record).
    sql_missing: int | None = None

    def spread(self, which: int, q: float) -> float | None:
        """Quantile ``q`` over the reconnected clients of: 0 = handshake done after the restart,
        1 = live again after its handshake."""
        values = sorted(
            (handshake - self.restarted_ns) / 1e9 if which == 0 else (live - handshake) / 1e9
            for handshake, live, _ in self.report.timeline
            if handshake and live
        )
        return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else None


def plan(symbols: list[str], clients: int) -> list[ConnPlan]:
    out: list[ConnPlan] = []
    for i in range(clients):
        symbol = symbols[i % len(symbols)]
        out.append((symbol, {"op": "subscribe", "symbol": symbol, "history": {"minutes": 60}}))
    return out


def drill(bench: Rig, args: argparse.Namespace, kind: str) -> Drill:
    symbols = bench.symbols(f"{kind[0]}R", args.symbols)
    run_publishers(
        bench.redis_url, symbols, mode="saturate", seconds=30, max_events=args.history_events,
        workdir=bench.workdir, register=kind == "signalpush",
    )  # fmt: skip
    server = bench.server(kind)
    fleet = LoadFleet(max(1, -(-args.clients // args.per_process)), bench.workdir)
    try:
        connected = fleet.connect(
            server.port, plan(symbols, args.clients), concurrency=args.concurrency,
            reconnect=True, resume=kind == "signalpush", expect_history=kind == "signalpush",
        )  # fmt: skip
        start = bench.seqs(symbols)
        fleet.mark()
        publishers = Publishers(
            bench.redis_url, symbols, mode="rate", seconds=args.before_kill + args.after + 5, rate=args.rate,
            workdir=bench.workdir, register=server.records,
        )  # fmt: skip
        time.sleep(0.5 + args.before_kill)
        killed_ns = time.time_ns()
        server.kill()
        server.spawn()
        restarted_ns = time.time_ns()
        healthy_after = server.wait_healthy(30)
        storm_cpu = CpuMeter([server.pid]).start()
        deadline = time.monotonic() + args.after
        report = fleet.report()
        while time.monotonic() < deadline and (report.reconnected < connected.ok or report.not_live):
            time.sleep(0.2)
            report = fleet.report()
        storm_cpu.stop()
        time.sleep(1.0)  # events keep flowing a little after the last client is back
        publishers.stop()
        final = bench.seqs(symbols)
        fleet.wait(final, 10)
        report = fleet.report()
        warn_samples(kind, report)
        if report.failures:
            print(f"  {kind}: failed reconnect attempts: {report.failures}", file=sys.stderr, flush=True)
        missing = None
        if server.records and server.database_url:
            missing = missing_rows(server.database_url, final)[0]
        everyone_live = report.reconnected >= connected.ok and not report.not_live
        last_live = max(report.live_ns, default=0)
        return Drill(
            restart_to_live_s=(last_live - restarted_ns) / 1e9 if everyone_live else None,
            kill_to_live_s=(last_live - killed_ns) / 1e9,
            healthy_after_s=healthy_after,
            report=report,
            lost=report.lost({s: final[s] - start[s] for s in symbols}),
            peak_kib=memory_kib(server.pid).get("VmHWM", 0),
            connected=connected.ok,
            restarted_ns=restarted_ns,
            storm_cpu_s=storm_cpu.seconds,
            sql_missing=missing,
        )
    finally:
        fleet.close()
        server.stop()


def one_run(bench: Rig, args: argparse.Namespace, index: int) -> list[dict[str, Any]]:
    drills = {kind: drill(bench, args, kind) for kind in run_order(args, index)}

    def row(figure: str, value: Any) -> dict[str, Any]:
        return {
            "figure": figure,
            **{kind: value(drills[kind]) if kind in drills else None for kind in TARGETS},
        }

    rows = [
        row("clients subscribed", lambda d: d.connected),
        row("clients reconnected", lambda d: d.report.reconnected),
        row("clients gave up", lambda d: d.report.gave_up),
        row("restarted server healthy after s", lambda d: round(d.healthy_after_s, 2)),
        row("all live again after restart s", lambda d: _round(d.restart_to_live_s)),
        row("all live again after kill s", lambda d: round(d.kill_to_live_s, 2)),
        row("handshake after restart p50 s", lambda d: d.spread(0, 0.5)),
        row("handshake after restart max s", lambda d: d.spread(0, 1.0)),
        row("live after handshake p50 s", lambda d: d.spread(1, 0.5)),
        row("live after handshake max s", lambda d: d.spread(1, 1.0)),
        row("connect attempts max", lambda d: max((a for _, _, a in d.report.timeline), default=0)),
        row("server CPU s, restart to all live", lambda d: round(d.storm_cpu_s, 2)),
        row("events lost", lambda d: d.lost),
        row("events duplicated", lambda d: d.report.duplicates),
        row("holes seen by clients", lambda d: d.report.holes),
        row("resets", lambda d: d.report.resets),
        row("restarted server peak RSS MiB", lambda d: round(d.peak_kib / 1024, 1)),
        row("SQL rows missing", lambda d: d.sql_missing),
    ]
    for item in rows:
        item["ratio"] = ratio(item.get("signalpush"), item.get("baseline"))
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(args: argparse.Namespace) -> BenchResult:
    result = repeat("reconnect", args, one_run, vars_of(args))
    judge(
        result.rows,
        {
            "all live again after restart s": ("signalpush", "<= 10"),
            "events lost": ("signalpush", "== 0"),
            "events duplicated": ("signalpush", "== 0"),
            "SQL rows missing": ("signalpush", "== 0"),
        },
    )
    return result
