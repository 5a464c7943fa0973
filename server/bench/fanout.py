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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.analytics.tables import format_table
from server.bench import BenchResult, positive_float, positive_int
from server.bench.fleet import ConnPlan, LoadFleet, run_publishers
from server.bench.pubload import bench_filters
from server.bench.recording import profile_shares
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
        "--rate-publishers",
        type=positive_int,
        default=1,
        help="fixed rate: publisher processes, symbols split between them (default: 1)",
    )
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
    parser.add_argument(
        "--compare-recorder",
        action="store_true",
        help="also run signalpush with its recorder in-process and with recording off (ratios to off)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run the signalpush of an older checkout in DIR (its server/ on PYTHONPATH)",
    )


@dataclass
class Target:
    label: str
    kind: str
    filters: int
    workers: int = 1
    #: Environment of the server (config overrides, PYTHONPATH of an older checkout).
    env: dict[str, str] = field(default_factory=dict)
    #: It records (None: signalpush does, the baseline does not).
    records: bool | None = None


#: ``--compare-recorder``: the same server with its recorder in-process, and with recording off.
IN_PROCESS = Target("in-process recorder", "signalpush", 1, env={"SIGNALPUSH_RECORDER_PROCESS": "false"})
NO_RECORDING = Target(
    "no recording", "signalpush", 1, env={"SIGNALPUSH_RECORDER_ENABLED": "false"}, records=False
)


def before_target(directory: Path) -> Target:
    """The signalpush of an older checkout (``--before``), in its default configuration."""
    return Target("before", "signalpush", 1, env={"PYTHONPATH": str(directory.resolve())})


def extra_targets(args: argparse.Namespace) -> list[Target]:
    """The targets ``--compare-recorder`` and ``--before`` add."""
    targets: list[Target] = []
    if getattr(args, "compare_recorder", False):
        targets += [IN_PROCESS, NO_RECORDING]
    if getattr(args, "before", None) is not None:
        targets.append(before_target(args.before))
    return targets


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
    # Symbols of their own per target (by its label): seqs, recorders and SQL rows never mix.
    symbols = bench.symbols(
        f"{target.kind[0]}F{target.filters}T{zlib.crc32(target.label.encode()):X}", args.symbols
    )
    server = bench.server(
        target.kind, workers=target.workers, env=target.env, records=target.records, name=target.label
    )
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
            mode="rate", seconds=args.rate_seconds, rate=args.rate, processes=args.rate_publishers,
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
        row("saturation recorder CPU %", lambda r: _recorder_cpu(r.saturation)),
        row("saturation server+recorder CPU %", lambda r: r.saturation.total_cpu_pct),
        row("saturation recorder lag max s", lambda r: r.saturation.recorder_lag_s),
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
        row(f"{fixed} recorder CPU %", lambda r: _recorder_cpu(r.fixed)),
        row(f"{fixed} server+recorder CPU %", lambda r: r.fixed.total_cpu_pct),
        row(f"{fixed} recorder lag max s", lambda r: r.fixed.recorder_lag_s),
        row(f"{fixed} softirq+other CPU %", lambda r: round(r.fixed.softirq_pct + r.fixed.other_cpu_pct, 1)),
        row("server peak RSS MiB", lambda r: round(r.fixed.server_rss_kib / 1024, 1)),
        row("connect all clients s", lambda r: round(r.connect_s, 2)),
        row("SQL rows missing", lambda r: r.fixed.sql_missing),
        row("SQL rows all there after s", lambda r: r.fixed.sql_wait_s),
    ]


def _recorder_cpu(phase: Phase) -> float | None:
    return phase.recorder_cpu.percent if phase.recorder_cpu is not None and phase.recorder_cpu.pids else None


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
    targets += extra_targets(args)
    runs = run_targets(bench, args, index, targets)
    rows = figure_rows(runs, args.rate)
    add_ratio(rows, "ratio", "signalpush", "baseline")
    if workers > 1:
        add_ratio(rows, f"{workers}w / 1w", f"{workers} workers", "signalpush")
    if getattr(args, "compare_recorder", False):
        add_ratio(rows, "child / off", "signalpush", NO_RECORDING.label)
        add_ratio(rows, "in-process / off", IN_PROCESS.label, NO_RECORDING.label)
    if getattr(args, "before", None) is not None:
        add_ratio(rows, "now / before", "signalpush", "before")
        add_ratio(rows, "before / baseline", "before", "baseline")
    rows.append({"figure": "publishers alone ev/s", "signalpush": publishers_alone(bench, args)})
    return rows


TARGETS = {
    "saturation deliveries/s": ("ratio", ">= 2.5"),
    "saturation lost": ("signalpush", "== 0"),
    "saturation duplicated": ("signalpush", "== 0"),
    "SQL rows missing": ("signalpush", "== 0"),
}


def run(args: argparse.Namespace) -> BenchResult:
    result = repeat("fanout", args, one_run, vars_of(args))
    targets = {
        **TARGETS,
        f"{args.rate:g} ev/s latency p99 ms": ("signalpush", "<= 5"),
        f"{args.rate:g} ev/s lost": ("signalpush", "== 0"),
        f"{args.rate:g} ev/s server CPU %": ("ratio", "<= 1.3"),
        f"{args.rate:g} ev/s server+recorder CPU %": ("ratio", "<= 1.3"),
        f"{args.rate:g} ev/s recorder lag max s": ("signalpush", "<= 1"),
    }
    judge(result.rows, targets)
    if args.profile is not None:
        shares = profile_shares(args.profile)
        result.extra["profiles"] = shares
        print(format_table(shares), flush=True)
    return result
