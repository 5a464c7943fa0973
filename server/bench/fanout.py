"""``signalpush bench fanout``: deliveries/s at saturation, and latency at a fixed rate, vs the baseline.

S symbols, C clients each subscribed to one symbol, ~200-byte signal events.
(a) saturation for T s: publishers run flow-controlled (at most ``--window`` seqs ahead
of the slowest client), so the rate is what the server sustains; deliveries/s counts
events received by all clients from the first publish to the last receipt.
(b) a fixed rate (R events/s, one event per publish call): publish→receive latency from
the send stamp in each event's meta, with server CPU and peak RSS.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from server.bench import BenchResult, positive_float, positive_int
from server.bench.fleet import ConnPlan, LoadFleet, run_publishers
from server.bench.pubload import bench_filters
from server.bench.rig import Phase, Rig, add_common_arguments, judge, measure_phase, repeat, vars_of
from server.bench.stats import ratio

DESCRIPTION = "fan-out: deliveries/s at saturation and latency at a fixed rate, vs a broadcast baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--symbols", type=positive_int, default=10, help="symbols (default: 10)")
    parser.add_argument(
        "--clients", type=positive_int, default=1000, help="connections, one symbol each (default: 1,000)"
    )
    parser.add_argument(
        "--seconds", type=positive_float, default=10.0, help="saturation time T (default: 10)"
    )
    parser.add_argument(
        "--rate", type=positive_float, default=200.0, help="fixed rate, events/s (default: 200)"
    )
    parser.add_argument(
        "--rate-seconds", type=positive_float, default=10.0, help="fixed-rate time (default: 10)"
    )
    parser.add_argument(
        "--window", type=positive_int, default=500, help="saturation: seqs ahead of the slowest client"
    )
    parser.add_argument(
        "--per-call", type=positive_int, default=20, help="saturation: events per publish call"
    )
    parser.add_argument("--publishers", type=positive_int, default=2, help="publisher processes (default: 2)")
    parser.add_argument(
        "--load-processes", type=positive_int, default=2, help="load processes at least (default: 2)"
    )
    parser.add_argument(
        "--drain", type=positive_float, default=30.0, help="max seconds to wait for clients to catch up"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run signalpush with `serve --workers N` in the same run, beside 1 worker (default: 1)",
    )


@dataclass
class Target:
    label: str
    kind: str
    filters: int
    workers: int = 1


@dataclass
class TargetRun:
    saturation: Phase
    fixed: Phase
    connect_s: float


def plan(symbols: list[str], clients: int, filters: int) -> list[ConnPlan]:
    """Client i subscribes to symbol i mod S, with filter (i div S) mod F (no filter when F is 1)."""
    choices = bench_filters(filters) if filters > 1 else [None]
    out: list[ConnPlan] = []
    for i in range(clients):
        symbol = symbols[i % len(symbols)]
        request: dict[str, Any] = {"op": "subscribe", "symbol": symbol}
        chosen = choices[(i // len(symbols)) % len(choices)]
        if chosen is not None:
            request["filter"] = chosen
        out.append((symbol, request))
    return out


def run_target(bench: Rig, args: argparse.Namespace, target: Target) -> TargetRun:
    symbols = bench.symbols(f"{target.kind[0]}F{target.filters}", args.symbols)
    server = bench.server(target.kind, workers=target.workers)
    processes = max(args.load_processes, -(-args.clients // args.per_process))
    fleet = LoadFleet(processes, bench.workdir)
    try:
        connected = fleet.connect(server.port, plan(symbols, args.clients, target.filters))
        if connected.failed:
            raise RuntimeError(
                f"{target.label}: {connected.failed} connections failed: {connected.errors[:3]}"
            )
        flow_key = bench.flow_key(target.label.replace(" ", "-"))
        fleet.flow(bench.redis_url, flow_key)
        saturation = measure_phase(
            bench, server, fleet, symbols, latency=False, drain_s=args.drain,
            mode="saturate", seconds=args.seconds, processes=args.publishers, per_call=args.per_call,
            window=args.window, flow_key=flow_key,
        )  # fmt: skip
        fixed = measure_phase(
            bench, server, fleet, symbols, latency=True, drain_s=args.drain,
            mode="rate", seconds=args.rate_seconds, rate=args.rate, processes=1,
        )  # fmt: skip
        return TargetRun(saturation, fixed, connected.elapsed_s)
    finally:
        fleet.close()
        server.stop()


def publishers_alone(bench: Rig, args: argparse.Namespace) -> float:
    """Events/s the publishers reach with no server subscribed (Redis + publish script only)."""
    symbols = bench.symbols("P", args.symbols)
    result = run_publishers(
        bench.redis_url, symbols, mode="saturate", seconds=min(args.seconds, 3.0),
        processes=args.publishers, per_call=args.per_call, workdir=bench.workdir,
    )  # fmt: skip
    return round(result.rate)


def figure_rows(runs: dict[str, TargetRun], rate: float) -> list[dict[str, Any]]:
    """One row per figure, one column per target."""

    def row(figure: str, value: Any) -> dict[str, Any]:
        return {"figure": figure, **{label: value(run) for label, run in runs.items()}}

    fixed = f"{rate:g} ev/s"
    return [
        row("saturation deliveries/s", lambda r: round(r.saturation.delivery_rate)),
        row("saturation lost", lambda r: r.saturation.lost),
        row("saturation duplicated", lambda r: r.saturation.report.duplicates),
        row("saturation published ev/s", lambda r: round(r.saturation.publish.rate)),
        row("saturation items/frame", lambda r: _per_frame(r.saturation)),
        row("saturation server CPU %", lambda r: r.saturation.server_cpu.percent),
        row("saturation server CPU ns/delivery", lambda r: _ns_per_delivery(r.saturation)),
        row("saturation load CPU %", lambda r: r.saturation.load_cpu.percent),
        row("saturation redis+pub CPU %", lambda r: _other_cpu(r.saturation)),
        row("saturation softirq CPU %", lambda r: r.saturation.softirq_pct),
        row("saturation other CPU %", lambda r: r.saturation.other_cpu_pct),
        row(f"{fixed} deliveries/s", lambda r: round(r.fixed.delivery_rate)),
        row(f"{fixed} latency p50 ms", lambda r: r.fixed.report.latency.summary_ms()["p50_ms"]),
        row(f"{fixed} latency p95 ms", lambda r: r.fixed.report.latency.summary_ms()["p95_ms"]),
        row(f"{fixed} latency p99 ms", lambda r: r.fixed.report.latency.summary_ms()["p99_ms"]),
        row(f"{fixed} latency max ms", lambda r: r.fixed.report.latency.summary_ms()["max_ms"]),
        row(f"{fixed} lost", lambda r: r.fixed.lost),
        row(f"{fixed} server CPU %", lambda r: r.fixed.server_cpu.percent),
        row(f"{fixed} softirq+other CPU %", lambda r: round(r.fixed.softirq_pct + r.fixed.other_cpu_pct, 1)),
        row("server peak RSS MiB", lambda r: round(r.fixed.server_rss_kib / 1024, 1)),
        row("connect all clients s", lambda r: round(r.connect_s, 2)),
    ]


def _per_frame(phase: Phase) -> float:
    return round(phase.report.items / phase.report.frames, 1) if phase.report.frames else 0.0


def _ns_per_delivery(phase: Phase) -> float:
    """Server CPU per event delivered: its cost, whatever else the machine was doing."""
    return round(1e9 * phase.server_cpu.seconds / phase.report.items, 1) if phase.report.items else 0.0


def _other_cpu(phase: Phase) -> float:
    cells = phase.cpu_cells()
    return round(float(cells["publisher_cpu_pct"]) + float(cells["redis_cpu_pct"]), 1)


def add_ratio(rows: list[dict[str, Any]], column: str, over: str, reference: str) -> None:
    for row in rows:
        row[column] = ratio(row.get(over), row.get(reference))


def run_targets(
    bench: Rig, args: argparse.Namespace, index: int, targets: list[Target]
) -> dict[str, TargetRun]:
    """Each target once; the order alternates between runs so neither always goes first."""
    ordered = targets if index % 2 == 0 else list(reversed(targets))
    runs = {t.label: run_target(bench, args, t) for t in ordered if args.only in (None, t.kind)}
    return {t.label: runs[t.label] for t in targets if t.label in runs}


def one_run(bench: Rig, args: argparse.Namespace, index: int) -> list[dict[str, Any]]:
    targets = [Target("baseline", "baseline", 1), Target("signalpush", "signalpush", 1)]
    workers = getattr(args, "workers", 1)
    if workers > 1:
        targets.append(Target(f"{workers} workers", "signalpush", 1, workers))
    runs = run_targets(bench, args, index, targets)
    rows = figure_rows(runs, args.rate)
    add_ratio(rows, "ratio", "signalpush", "baseline")
    if workers > 1:
        add_ratio(rows, f"{workers}w / 1w", f"{workers} workers", "signalpush")
    rows.append({"figure": "publishers alone ev/s", "signalpush": publishers_alone(bench, args)})
    return rows


TARGETS = {
    "saturation deliveries/s": ("ratio", ">= 1.5"),
    "saturation lost": ("signalpush", "== 0"),
    "saturation duplicated": ("signalpush", "== 0"),
}


def run(args: argparse.Namespace) -> BenchResult:
    result = repeat("fanout", args, one_run, vars_of(args))
    targets = {
        **TARGETS,
        f"{args.rate:g} ev/s latency p99 ms": ("signalpush", "<= 5"),
        f"{args.rate:g} ev/s lost": ("signalpush", "== 0"),
    }
    judge(result.rows, targets)
    return result
