"""What a soak run found, as the bench's table: counts, per-life RSS, targets judged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.bench import BenchResult
from server.bench.fleet import FleetReport
from server.bench.rig import judge
from server.bench.soakplan import MemoryLife

#: Figure -> (column, condition): what a soak must show.
TARGETS = {
    "events lost": ("value", "== 0"),
    "events duplicated": ("value", "== 0"),
    "SQL rows missing": ("value", "== 0"),
    "SQL rows duplicated": ("value", "== 0"),
    "clients behind at the end": ("value", "== 0"),
    "gateway RSS growth % (last life)": ("value", "<= 10"),
}


@dataclass
class SoakOutcome:
    params: dict[str, Any]
    report: FleetReport
    #: What became of the stalled and the flooding connection (load.py ``faults``).
    faults: dict[str, Any]
    #: symbol -> (rows, distinct seqs) in SQL
    stored: dict[str, tuple[int, int]]
    start: dict[str, int]
    final: dict[str, int]
    #: behind, subscribed, joined
    counts: dict[str, int]
    #: the publisher's own report (events, seeded, failed)
    published: dict[str, Any]
    gateway_lives: list[MemoryLife]
    recorder_lives: list[MemoryLife]
    drills: list[str]

    def result(self) -> BenchResult:
        report, final, stored = self.report, self.final, self.stored
        latency = report.latency.summary_ms()
        rows: list[dict[str, Any]] = []

        def add(figure: str, value: Any) -> None:
            rows.append({"figure": figure, "value": value})

        add("minutes", self.params.get("minutes"))
        add("events published", sum(final.values()))
        add("of which history published before the run", self.published.get("seeded"))
        add("publishes failed after retries", self.published.get("failed"))
        add("clients subscribed at start", self.counts["subscribed"])
        add("clients joined / left during the run", f"{self.counts['joined']} / {report.retired}")
        add("client disconnects (churn and drills)", report.closed)
        add("deliveries received", report.items)
        add("events lost", report.accounted_lost)
        add("events duplicated", report.duplicates)
        add("holes seen by clients", report.holes)
        add("resets", report.resets)
        add("clients behind at the end", self.counts["behind"])
        add("latency p50 / p99 / max ms", f"{latency['p50_ms']} / {latency['p99_ms']} / {latency['max_ms']}")
        add("SQL rows missing", sum(max(0, final[s] - stored[s][1]) for s in final))
        add("SQL rows duplicated", sum(count - distinct for count, distinct in stored.values()))
        lives = self.gateway_lives + self.recorder_lives
        for life in lives:
            add(f"{life.label} RSS MiB warm -> end ({life.span_s:g}s)", _mib_pair(life))
        add("gateway RSS growth % (last life)", self.gateway_lives[-1].growth_pct)
        add("stalled client closed by the server after s (code)", _closed(self.faults.get("stalled", {})))
        add("flooding client closed by the server after s (code)", _closed(self.faults.get("flooding", {})))
        judge(rows, TARGETS)
        extra = {
            "params": self.params, "start_seqs": self.start, "final_seqs": final, "faults": self.faults,
            "drills": self.drills, "failures": report.failures, "error_samples": report.error_samples[:10],
            "rss_kib": {life.label: life.samples for life in lives},
        }  # fmt: skip
        return BenchResult("soak", rows, "soak drills: " + "; ".join(self.drills), extra)


def _mib_pair(life: MemoryLife) -> str:
    start, end = life.start_kib, life.end_kib
    if start is None or end is None:
        return f"(not warm; peak {life.peak_kib / 1024:.1f})"
    return f"{start / 1024:.1f} -> {end / 1024:.1f}"


def _closed(conn: dict[str, Any]) -> str | None:
    if not conn:
        return None
    if conn.get("closed_after_s") is None:
        return f"still open ({conn.get('messages')} messages read)"
    return f"{conn['closed_after_s']} ({conn.get('close_code')})"
