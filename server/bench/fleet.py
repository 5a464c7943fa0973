"""The controller's side of the load and publisher processes (see ``load.py`` and ``pubload.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.bench.procs import BenchError, JsonChild, child_env, python_module, stop_process
from server.bench.stats import LatencyHistogram
from server.cli.embedded import die_with_parent_hook

#: One planned connection: its symbol and the subscribe frame it sends.
ConnPlan = tuple[str, dict[str, Any]]


@dataclass
class FleetReport:
    """Counters of every load process of a phase, merged."""

    items: int = 0
    frames: int = 0
    bytes: int = 0
    duplicates: int = 0
    holes: int = 0
    resets: int = 0
    errors: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: symbol -> (items received once, summed over its connections; connections)
    unique: dict[str, tuple[int, int]] = field(default_factory=dict)
    connections: int = 0
    open: int = 0
    closed: int = 0
    reconnected: int = 0
    gave_up: int = 0
    not_live: int = 0
    live_ns: list[int] = field(default_factory=list)
    #: (reconnected ns, live ns, connection attempts) of each connection that reconnected
    timeline: list[tuple[int, int, int]] = field(default_factory=list)
    #: Failed reconnect attempts by exception name.
    failures: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    #: With ``report(final)``: seqs each connection missed, summed; connections retired by ``churn``.
    accounted_lost: int = 0
    retired: int = 0

    def add(self, reply: dict[str, Any]) -> None:
        for name in ("items", "frames", "bytes", "duplicates", "holes", "resets", "errors"):
            setattr(self, name, getattr(self, name) + int(reply[name]))
        for name in ("connections", "open", "closed", "reconnected", "gave_up", "not_live"):
            setattr(self, name, getattr(self, name) + int(reply[name]))
        if reply["first_ns"]:
            self.first_ns = min(self.first_ns or reply["first_ns"], reply["first_ns"])
        self.last_ns = max(self.last_ns, reply["last_ns"])
        self.latency.merge(LatencyHistogram.from_json(reply["latency"]))
        for symbol, (count, conns) in reply["unique"].items():
            before = self.unique.get(symbol, (0, 0))
            self.unique[symbol] = (before[0] + count, before[1] + conns)
        self.live_ns.extend(reply["live_ns"])
        for reason, count in reply["failures"].items():
            self.failures[reason] = self.failures.get(reason, 0) + count
        self.timeline.extend((int(a), int(b), int(c)) for a, b, c in reply["timeline"])
        self.error_samples.extend(reply["error_samples"])
        self.accounted_lost += int(reply.get("lost", 0))
        self.retired += int(reply.get("retired", 0))

    def lost(self, published: dict[str, int]) -> int:
        """Events expected but not received: ``published[symbol]`` events for each of its connections."""
        return sum(max(0, published.get(s, 0) * conns - count) for s, (count, conns) in self.unique.items())


@dataclass
class ConnectResult:
    ok: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    max_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class LoadFleet:
    """Several load processes, each holding a share of the connections."""

    def __init__(self, processes: int, workdir: Path, name: str = "load") -> None:
        self.children = [
            JsonChild(
                python_module("server.bench.load"),
                name=f"{name}-{i}",
                cwd=workdir,
                log_path=workdir / f"{name}-{i}.log",
            )
            for i in range(processes)
        ]

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children]

    def _all(self, message: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        for child in self.children:
            child.send(message)
        return [child.receive(timeout_s) for child in self.children]

    def connect(
        self,
        port: int,
        plan: Sequence[ConnPlan],
        *,
        concurrency: int = 64,
        reconnect: bool = False,
        resume: bool = False,
        expect_history: bool = False,
        timeout_s: float = 120.0,
    ) -> ConnectResult:
        """Open ``plan``'s connections, spread round-robin over the processes."""
        shares: list[list[ConnPlan]] = [[] for _ in self.children]
        for index, conn in enumerate(plan):
            shares[index % len(shares)].append(conn)
        started = time.monotonic()
        for child, share in zip(self.children, shares, strict=True):
            child.send(
                {
                    "cmd": "connect",
                    "host": "127.0.0.1",
                    "port": port,
                    "conns": share,
                    "concurrency": concurrency,
                    "reconnect": reconnect,
                    "resume": resume,
                    "expect_history": expect_history,
                    "timeout_s": 30.0,
                }
            )
        result = ConnectResult()
        for child in self.children:
            reply = child.receive(timeout_s)
            result.ok += reply["ok"]
            result.failed += reply["failed"]
            result.max_s = max(result.max_s, reply["max_s"] or 0.0)
            result.errors.extend(reply["errors"])
        result.elapsed_s = time.monotonic() - started
        return result

    def flow(self, redis_url: str, key: str) -> None:
        for index, child in enumerate(self.children):
            child.request({"cmd": "flow", "redis_url": redis_url, "key": key, "name": str(index)}, 30)

    def mark(self, *, latency: bool = False) -> None:
        self._all({"cmd": "mark", "latency": latency}, 30)

    def wait(self, final: dict[str, int], timeout_s: float) -> int:
        """Wait until every connection reached ``final[symbol]``; returns how many did not."""
        replies = self._all({"cmd": "wait", "final": final, "timeout_s": timeout_s}, timeout_s + 30)
        return sum(int(r["behind"]) for r in replies)

    def report(self, final: dict[str, int] | None = None) -> FleetReport:
        """The merged counters; with ``final`` (each symbol's last seq) also what each connection missed."""
        report = FleetReport()
        for reply in self._all({"cmd": "report", **({"final": final} if final is not None else {})}, 60):
            report.add(reply)
        return report

    def churn(self, *, drop: int, retire: int) -> None:
        """Drop ``drop`` connections (they reconnect and resume) and close ``retire`` for good, spread over
        the processes."""
        count = len(self.children)
        for index, child in enumerate(self.children):
            shares = {"drop": _share(drop, count, index), "retire": _share(retire, count, index)}
            child.send({"cmd": "churn", **shares})
        for child in self.children:
            child.receive(30)

    def close(self) -> None:
        for child in self.children:
            try:
                child.request({"cmd": "close"}, 15)
            except BenchError:
                pass
            child.stop()


def _share(total: int, parts: int, index: int) -> int:
    """``index``'s share when ``total`` is split over ``parts`` as evenly as possible."""
    return total // parts + (1 if index < total % parts else 0)


@dataclass
class PublishResult:
    events: int
    elapsed_s: float
    began_ns: int
    cpu_s: float
    last_seq: dict[str, int]

    @property
    def rate(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Publishers:
    """Publisher processes running in the background (symbols split between them)."""

    def __init__(
        self,
        redis_url: str,
        symbols: Sequence[str],
        *,
        mode: str,
        seconds: float,
        workdir: Path,
        processes: int = 1,
        rate: float = 200.0,
        per_call: int = 20,
        window: int = 500,
        flow_key: str = "",
        max_events: int = 0,
        register: bool = False,
    ) -> None:
        processes = max(1, min(processes, len(symbols)))
        self.seconds = seconds
        self.workdir = workdir
        start_at = time.time() + 0.3
        self.children: list[subprocess.Popen[bytes]] = []
        for index in range(processes):
            share = list(symbols[index::processes])
            argv = python_module(
                "server.bench.pubload",
                "--redis-url", redis_url,
                "--symbols", ",".join(share),
                "--mode", mode,
                "--seconds", str(seconds),
                "--rate", str(rate / processes),
                "--per-call", str(per_call),
                "--window", str(window),
                "--flow-key", flow_key,
                "--max-events", str(max_events),
                "--start-at", str(start_at),
                *(["--register"] if register else []),
            )  # fmt: skip
            log = (workdir / f"publisher-{index}.log").open("ab")
            try:
                self.children.append(
                    subprocess.Popen(
                        argv,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        cwd=workdir,
                        env=child_env(),
                        preexec_fn=die_with_parent_hook() if sys.platform == "linux" else None,
                    )
                )
            finally:
                log.close()

    def stop(self) -> None:
        """End them now (when what they published is read from Redis, not from them)."""
        for child in self.children:
            stop_process(child)

    def finish(self) -> PublishResult:
        """Wait for every publisher to end; their figures merged."""
        results: list[dict[str, Any]] = []
        try:
            for child in self.children:
                out, _ = child.communicate(timeout=self.seconds + 60)
                if child.returncode != 0 or not out.strip():
                    raise BenchError(
                        f"a publisher failed (exit {child.returncode}); see {self.workdir}/publisher-*.log"
                    )
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for child in self.children:
                stop_process(child)
        last_seq: dict[str, int] = {}
        for result in results:
            last_seq.update(result["last_seq"])
        return PublishResult(
            events=sum(r["events"] for r in results),
            elapsed_s=max(r["elapsed_s"] for r in results),
            began_ns=min(r["began_ns"] for r in results),
            cpu_s=sum(r["cpu_s"] for r in results),
            last_seq=last_seq,
        )


def run_publishers(redis_url: str, symbols: Sequence[str], **options: Any) -> PublishResult:
    """Run publisher processes to the end (options: see :class:`Publishers`)."""
    return Publishers(redis_url, symbols, **options).finish()
