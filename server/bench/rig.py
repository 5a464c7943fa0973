"""A bench run's setting: Redis, scratch dir, servers, and one measured load phase.

Scenarios build on :class:`Rig` (start the servers under test, the load fleet, the
publishers) and :func:`measure_phase` (publish, drain, count, and read CPU/RSS).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from publishers import keys
from publishers.connection import sync_client
from server.analytics.tables import format_table
from server.bench import BenchResult
from server.bench.fleet import FleetReport, LoadFleet, PublishResult, run_publishers
from server.bench.procs import (
    CpuMeter,
    ServerChild,
    bench_redis,
    machine_busy_seconds,
    redis_cpu_seconds,
    workdir,
)
from server.bench.recording import LagProbe, missing_rows
from server.bench.stats import median_rows

#: The two servers every scenario measures, in the order they run.
TARGETS = ("baseline", "signalpush")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="use this Redis (default: start an embedded one on a free port)")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians (default: 1)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the scratch dir with every log")
    parser.add_argument(
        "--profile", type=Path, help="sample the servers with py-spy into this dir (pip install py-spy)"
    )
    parser.add_argument("--only", choices=TARGETS, help="measure one server only (for profiling; no ratios)")
    parser.add_argument(
        "--per-process", type=int, default=2500, help="connections per load process (default: 2,500)"
    )
    parser.add_argument(
        "--database-url",
        help="history database of the servers under test (default: a SQLite file per server, scratch dir)",
    )


@dataclass
class Rig:
    """What one run of a scenario shares: Redis, a scratch dir, a tag making its symbols unique."""

    redis_url: str
    redis_pid: int | None
    workdir: Path
    profile_dir: Path | None = None
    #: The servers' history database (None: a SQLite file per server in ``workdir``).
    database_url: str | None = None
    tag: str = field(default_factory=lambda: secrets.token_hex(3).upper())
    used: list[str] = field(default_factory=list)

    def symbols(self, target: str, count: int) -> list[str]:
        """``count`` symbols no other run or target uses (removed from Redis by :meth:`cleanup`)."""
        symbols = [f"B{self.tag}{target.upper()}S{i}" for i in range(count)]
        self.used.extend(symbols)
        return symbols

    def flow_key(self, label: str) -> str:
        return f"bench:{self.tag}:{label}:flow"

    def cleanup(self) -> None:
        """Delete every key this run made (it matters on a Redis the bench did not start)."""
        client = sync_client(self.redis_url, name="signalpush-bench")
        try:
            names = [key for s in self.used for key in (keys.meta_key(s), keys.log_key(s))]
            names.extend(client.scan_iter(match=f"bench:{self.tag}:*", count=1000))
            for start in range(0, len(names), 500):
                client.delete(*names[start : start + 500])
            if self.used:
                client.srem(keys.SYMBOLS_KEY, *self.used)
        finally:
            client.close()

    def server(
        self,
        kind: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        *,
        records: bool | None = None,
        name: str | None = None,
    ) -> ServerChild:
        """A server under test, started. ``records``: it runs a recorder (default: signalpush does,
        the baseline does not); the bench's publishers then register its symbols so it records them."""
        child = ServerChild(
            kind, self.redis_url, self.workdir, profile_dir=self.profile_dir, workers=workers, env=env
        )
        child.name = name or kind
        child.records = kind != "baseline" if records is None else records
        child.database_url = self.database_url or f"sqlite+aiosqlite:///{self.workdir}/{kind}-{child.port}.db"
        child.env.setdefault("SIGNALPUSH_DATABASE_URL", child.database_url)
        return child.start()

    def fleet(self, connections: int, per_process: int, name: str = "load") -> LoadFleet:
        return LoadFleet(max(1, -(-connections // per_process)), self.workdir, name)

    def seqs(self, symbols: Sequence[str]) -> dict[str, int]:
        """Each symbol's last seq in Redis (0 if never published)."""
        client = sync_client(self.redis_url, name="signalpush-bench")
        try:
            values = [client.hget(keys.meta_key(s), keys.META_SEQ) for s in symbols]
        finally:
            client.close()
        return {s: int(v) if v is not None else 0 for s, v in zip(symbols, values, strict=True)}

    def redis_cpu(self) -> float:
        return redis_cpu_seconds(self.redis_url)


@contextlib.contextmanager
def rig(args: argparse.Namespace) -> Iterator[Rig]:
    with (
        workdir(keep=bool(getattr(args, "keep_logs", False))) as path,
        bench_redis(getattr(args, "redis_url", None), path) as (url, pid),
    ):
        bench = Rig(url, pid, path, getattr(args, "profile", None), getattr(args, "database_url", None))
        try:
            yield bench
        finally:
            if pid is None:
                bench.cleanup()


@dataclass
class Phase:
    """What one load phase measured against one server."""

    publish: PublishResult
    report: FleetReport
    behind: int
    lost: int
    server_cpu: CpuMeter
    load_cpu: CpuMeter
    redis_cpu_s: float
    server_rss_kib: int
    #: CPU the whole machine used meanwhile (other tenants included: this machine is shared).
    machine_cpu_s: float
    #: ... of which interrupt handling (loopback TCP is mostly processed there).
    softirq_s: float
    #: The server's recorder process (``recorder.process``; nothing measured when it records in-process).
    recorder_cpu: CpuMeter | None = None
    #: Highest recorder lag (s) seen in the phase (None: the server does not record).
    recorder_lag_s: float | None = None
    #: Events published on the phase's symbols so far without a row in SQL, after the wait.
    sql_missing: int | None = None
    #: How long after the clients had everything the rows took to be all there (s).
    sql_wait_s: float | None = None

    @property
    def total_cpu_pct(self) -> float:
        """Gateway and recorder together (% of one core)."""
        extra = self.recorder_cpu.percent if self.recorder_cpu is not None else 0.0
        return round(self.server_cpu.percent + extra, 1)

    @property
    def delivery_rate(self) -> float:
        """Items received by all connections per second, from the first publish to the last receipt."""
        span = (self.report.last_ns - self.publish.began_ns) / 1e9
        return self.report.items / span if span > 0 else 0.0

    def cpu_cells(self) -> dict[str, Any]:
        wall = self.server_cpu.wall_s
        return {
            "server_cpu_pct": self.server_cpu.percent,
            "load_cpu_pct": self.load_cpu.percent,
            "publisher_cpu_pct": round(100 * self.publish.cpu_s / wall, 1) if wall else 0.0,
            "redis_cpu_pct": round(100 * self.redis_cpu_s / wall, 1) if wall else 0.0,
            "softirq_pct": self.softirq_pct,
            "other_cpu_pct": self.other_cpu_pct,
        }

    @property
    def softirq_pct(self) -> float:
        wall = self.server_cpu.wall_s
        return round(100 * self.softirq_s / wall, 1) if wall else 0.0

    @property
    def other_cpu_pct(self) -> float:
        """CPU used outside this bench's processes and interrupts (% of one core): the bench
        controller and whatever else runs on the machine. Read the results with it in mind."""
        wall = self.server_cpu.wall_s
        ours = self.server_cpu.seconds + self.load_cpu.seconds + self.publish.cpu_s + self.redis_cpu_s
        rest = self.machine_cpu_s - self.softirq_s - ours
        return round(max(0.0, 100 * rest / wall), 1) if wall else 0.0


def measure_phase(
    bench: Rig,
    server: ServerChild,
    fleet: LoadFleet,
    symbols: Sequence[str],
    *,
    latency: bool,
    drain_s: float,
    **publish: Any,
) -> Phase:
    """Publish on ``symbols`` (``publish`` = run_publishers' options), wait for the clients, count."""
    start = bench.seqs(symbols)
    fleet.mark(latency=latency)
    server_cpu, load_cpu = CpuMeter(server.pids()).start(), CpuMeter(fleet.pids).start()
    recorder_cpu = CpuMeter(server.recorder_pids()).start()
    probe = LagProbe(bench.redis_url, symbols).start() if server.records else None
    redis_before = bench.redis_cpu()
    machine_before = machine_busy_seconds()
    result = run_publishers(
        bench.redis_url, symbols, workdir=bench.workdir, register=server.records, **publish
    )
    final = bench.seqs(symbols)
    behind = fleet.wait(final, drain_s)
    server_cpu.stop()
    load_cpu.stop()
    recorder_cpu.stop()
    lag = probe.stop() if probe is not None else None
    machine_after = machine_busy_seconds()
    redis_used = bench.redis_cpu() - redis_before
    report = fleet.report()
    warn_samples(server.kind, report)
    published = {s: final[s] - start[s] for s in symbols}
    missing, waited = (
        missing_rows(server.database_url, final) if server.records and server.database_url else (None, None)
    )
    return Phase(
        publish=result,
        report=report,
        behind=behind,
        lost=report.lost(published),
        server_cpu=server_cpu,
        load_cpu=load_cpu,
        redis_cpu_s=redis_used,
        server_rss_kib=server.peak_rss_kib(),
        machine_cpu_s=machine_after[0] - machine_before[0],
        softirq_s=machine_after[1] - machine_before[1],
        recorder_cpu=recorder_cpu,
        recorder_lag_s=lag,
        sql_missing=missing,
        sql_wait_s=waited,
    )


def repeat(
    scenario: str,
    args: argparse.Namespace,
    one_run: Callable[[Rig, argparse.Namespace, int], list[dict[str, Any]]],
    params: dict[str, Any],
) -> BenchResult:
    """Run ``one_run`` ``--runs`` times (each with a fresh Redis) and report the medians."""
    runs: list[list[dict[str, Any]]] = []
    count = max(1, int(args.runs))
    for index in range(count):
        started = time.monotonic()
        with rig(args) as bench:
            rows = one_run(bench, args, index)
        runs.append(rows)
        if count > 1:
            print(f"run {index + 1}/{count} ({time.monotonic() - started:.0f}s):", flush=True)
            print(format_table(rows), flush=True)
    rows = median_rows(runs)
    label = f"medians of {count} runs" if count > 1 else "1 run"
    return BenchResult(scenario, rows, f"{scenario}: {label}", {"params": params, "runs": runs})


def run_order(args: argparse.Namespace, index: int) -> tuple[str, ...]:
    """The servers this run measures; the order alternates between runs so neither always goes first."""
    kinds = tuple(k for k in TARGETS if getattr(args, "only", None) in (None, k))
    return kinds if index % 2 == 0 else tuple(reversed(kinds))


def warn_samples(label: str, report: FleetReport) -> None:
    """Print what the load clients flagged (errors, duplicates) so a bad figure can be traced."""
    for sample in report.error_samples[:5]:
        print(f"  {label}: {sample}", file=sys.stderr, flush=True)


def judge(rows: list[dict[str, Any]], targets: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """Add a ``target`` column (the goal and whether the medians meet it) to the rows that have one."""
    for row in rows:
        goal = targets.get(str(row["figure"]))
        if goal is None:
            continue
        column, condition = goal
        value = row.get(column)
        operator, _, number = condition.partition(" ")
        limit = float(number)
        met = value is not None and (
            value >= limit if operator == ">=" else value <= limit if operator == "<=" else value == limit
        )
        row["target"] = f"{column} {condition} {'ok' if met else 'MISSED'}"
    return rows


def vars_of(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("handler", "json") and not callable(v)}
