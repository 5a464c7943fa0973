"""``signalpush bench soak``: the failure drills under steady load, counted event by event.

A gateway (``serve`` in its default configuration: its recorder a child process), an
embedded Redis with its append-only file and a SQLite (or
``--database-url``) store run on loopback. One publisher process publishes signals, trades
and bot status at a steady rate through the public :class:`~publishers.Publisher`. Clients
subscribe with history and churn: every few seconds some drop (they reconnect with backoff
and resume from their position) and a few leave for good, replaced by new ones
subscribing with history. A fault schedule runs the drills in turn: gateway SIGKILL and
restart, Redis restart, a client that stops reading, recorder SIGKILL and restart, a
client that floods.

At the end every connection is checked seq by seq (nothing filtered, so each must have
every seq from where it was first counted up to the last one published, or up to where it
left): lost and duplicated must be 0. SQL must hold every event exactly once. The RSS of
each gateway and recorder life is reported from warm (after ``--warmup``) to its end.

There is no baseline: the baseline has neither resume nor history, so it cannot be
gap-free through these drills (``bench reconnect`` measures it through a restart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from sqlalchemy import text

from server.bench import BenchResult, positive_float, positive_int, share
from server.bench.fleet import ConnPlan, LoadFleet
from server.bench.procs import (
    BenchError,
    JsonChild,
    ServerChild,
    child_env,
    memory_kib,
    python_module,
    stop_process,
    workdir,
)
from server.bench.rig import Rig
from server.bench.soakplan import MemoryLife, fault_schedule
from server.bench.soakreport import SoakOutcome
from server.cli.embedded import EmbeddedRedis, free_port
from server.history.engine import create_engine

DESCRIPTION = "soak: steady publishing, churning clients, gateway/Redis/recorder drills; lost, dups, RSS"

_SAMPLE_EVERY_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    number, count = positive_float, positive_int
    parser.add_argument("--minutes", type=number, default=10.0, help="length of the run (default: 10)")
    parser.add_argument("--symbols", type=count, default=4, help="symbols (default: 4)")
    parser.add_argument("--rate", type=number, default=40.0, help="events/s over all symbols (default: 40)")
    parser.add_argument("--clients", type=count, default=200, help="subscribed clients (default: 200)")
    parser.add_argument(
        "--history-minutes", type=number, default=5.0,
        help="history each client subscribes with, published before the run (default: 5)",
    )  # fmt: skip
    parser.add_argument("--churn-every", type=number, default=5.0, help="seconds between churns (default: 5)")
    parser.add_argument(
        "--churn", type=share, default=0.05, help="share of the clients dropped per churn (default: 0.05)"
    )
    parser.add_argument(
        "--replace", type=share, default=0.01, help="share leaving for good per churn, replaced (0.01)"
    )
    parser.add_argument(
        "--fault-every", type=float, help="seconds between drills (default: the run / 6; 0: none)"
    )
    parser.add_argument("--redis-down", type=number, default=2.0, help="seconds Redis is down (default: 2)")
    parser.add_argument("--warmup", type=float, help="seconds before a process's RSS counts (default: 30)")
    parser.add_argument("--redis-url", help="use this Redis (then the Redis restart drill is skipped)")
    parser.add_argument("--database-url", help="history store (default: SQLite in the scratch dir)")
    parser.add_argument("--per-process", type=count, default=2500, help="connections per load process")
    parser.add_argument("--keep-logs", action="store_true", help="keep the scratch dir with every log")


class ServeRecorder:
    """The recorder child of the soak's ``serve`` (its default, ``recorder.process``), SIGKILLed
    by a drill: ``serve`` restarts it (with backoff) and the new child, under the same consumer
    name, re-reads what the killed one held."""

    def __init__(self, server: ServerChild) -> None:
        self.server = server
        self.killed = 0

    @property
    def pid(self) -> int:
        """The child's pid now (0 while there is none: serve is restarting it)."""
        pids = self.server.recorder_pids()
        return pids[0] if pids else 0

    def start(self, timeout_s: float = 60.0) -> None:
        """Wait until serve runs a recorder child (another than the one killed)."""
        deadline = time.monotonic() + timeout_s
        while self.pid in (0, self.killed):
            if time.monotonic() > deadline:
                raise BenchError(f"serve started no recorder child within {timeout_s:g}s")
            time.sleep(0.05)

    def kill(self) -> None:
        self.killed = self.pid
        if self.killed:
            os.kill(self.killed, signal.SIGKILL)


@dataclass
class Soak:
    """A running soak: its processes, the drills done, each process life's RSS."""

    args: argparse.Namespace
    redis: EmbeddedRedis | None
    symbols: list[str]
    server: ServerChild
    recorder: ServeRecorder
    faults: JsonChild
    began: float = field(default_factory=time.monotonic)
    gateway_lives: list[MemoryLife] = field(default_factory=list)
    recorder_lives: list[MemoryLife] = field(default_factory=list)
    drills: list[str] = field(default_factory=list)
    flooding: bool = False

    @property
    def warmup_s(self) -> float:
        return float(self.args.warmup) if self.args.warmup is not None else 30.0

    def now(self) -> float:
        return time.monotonic() - self.began

    def new_lives(self, gateway: bool = True, recorder: bool = True) -> None:
        if gateway:
            self.gateway_lives.append(
                MemoryLife(f"gateway {len(self.gateway_lives) + 1}", self.now(), self.warmup_s)
            )
        if recorder:
            self.recorder_lives.append(
                MemoryLife(f"recorder {len(self.recorder_lives) + 1}", self.now(), self.warmup_s)
            )

    def sample(self) -> None:
        at = self.now()
        self.gateway_lives[-1].add(at, memory_kib(self.server.pid).get("VmRSS", 0))
        recorder = self.recorder.pid
        if recorder:  # none for a moment while serve restarts it
            self.recorder_lives[-1].add(at, memory_kib(recorder).get("VmRSS", 0))

    def drill(self, name: str) -> None:
        started = self.now()
        if name.startswith("gateway"):
            self.sample()
            self.recorder.killed = self.recorder.pid  # it ends with its serve
            self.server.kill()
            self.server.spawn()
            self.new_lives()  # the new serve has a new recorder child
            self.server.wait_healthy(60)
            self.recorder.start()
        elif name.startswith("Redis"):
            if self.redis is None:
                self.drills.append(f"{started:.0f}s {name}: skipped (--redis-url: not ours to restart)")
                return
            self.redis.stop()
            time.sleep(self.args.redis_down)
            self.redis.start()
            self.server.wait_healthy(60)
        elif name.startswith("recorder"):
            self.sample()
            self.recorder.kill()
            self.recorder.start()
            self.new_lives(gateway=False)
        elif name == "client stops reading":
            self.faults.request(
                {"cmd": "stall", "host": "127.0.0.1", "port": self.server.port, "symbols": self.symbols,
                 "subscriptions": 40, "history_minutes": max(1, round(self.args.history_minutes))},
                30,
            )  # fmt: skip
        elif name == "client floods":
            if self.flooding:
                self.faults.receive(60)
            self.faults.send({"cmd": "flood", "host": "127.0.0.1", "port": self.server.port, "seconds": 10})
            self.flooding = True
        self.drills.append(f"{started:.0f}s {name} ({self.now() - started:.1f}s)")
        print(f"  soak {started:.0f}s: {name}", file=sys.stderr, flush=True)


def plan(symbols: list[str], count: int, minutes: float, offset: int = 0) -> list[ConnPlan]:
    history = {"minutes": max(1, round(minutes))}
    return [
        (symbols[(offset + i) % len(symbols)], {
            "op": "subscribe", "symbol": symbols[(offset + i) % len(symbols)], "history": history,
        })
        for i in range(count)
    ]  # fmt: skip


async def _stored(database_url: str, symbols: list[str]) -> dict[str, tuple[int, int]]:
    """Per symbol: (rows, distinct seqs) over the event tables."""
    engine = create_engine(database_url)
    query = text(
        "SELECT count(*), count(DISTINCT seq) FROM (SELECT seq FROM signals WHERE symbol = :s"
        " UNION ALL SELECT seq FROM trades WHERE symbol = :s"
        " UNION ALL SELECT seq FROM bot_status WHERE symbol = :s) t"
    )
    try:
        async with engine.connect() as connection:
            out: dict[str, tuple[int, int]] = {}
            for symbol in symbols:
                rows, distinct = (await connection.execute(query, {"s": symbol})).one()
                out[symbol] = (int(rows), int(distinct))
            return out
    finally:
        await engine.dispose()


def wait_stored(database_url: str, final: dict[str, int], timeout_s: float) -> dict[str, tuple[int, int]]:
    """Poll the store until it holds every published seq (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored = asyncio.run(_stored(database_url, list(final)))
        if all(stored[s][1] >= final[s] for s in final) or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def run(args: argparse.Namespace) -> BenchResult:
    with workdir(keep=bool(args.keep_logs)) as path:
        redis: EmbeddedRedis | None = None
        url = args.redis_url
        if not url:
            redis = EmbeddedRedis(port=free_port(), data_dir=path / "redis", appendonly=True)
            url = redis.start()
        bench = Rig(url, redis.pid if redis else None, path)
        try:
            return soak(args, bench, redis)
        finally:
            if redis is not None:
                redis.stop()
            else:
                bench.cleanup()


def soak(args: argparse.Namespace, bench: Rig, redis: EmbeddedRedis | None) -> BenchResult:
    duration = args.minutes * 60
    path = bench.workdir
    database_url = args.database_url or f"sqlite+aiosqlite:///{path / 'soak.db'}"
    subprocess.run(
        python_module("server.cli.main", "db", "upgrade", "--database-url", database_url),
        check=True, cwd=path, env=child_env(), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    symbols = bench.symbols("SOAK", args.symbols)
    # The default configuration: serve records in its child process (the recorder drill kills it).
    server = ServerChild("signalpush", bench.redis_url, path, env={"SIGNALPUSH_DATABASE_URL": database_url})
    recorder = ServeRecorder(server)
    faults = JsonChild(
        python_module("server.bench.load"), name="faults", cwd=path, log_path=path / "faults.log"
    )
    fleet = LoadFleet(max(1, -(-args.clients // args.per_process)), path)
    publisher: subprocess.Popen[bytes] | None = None
    state = Soak(args, redis, symbols, server, recorder, faults)
    try:
        server.start(60)
        recorder.start()
        state.began = time.monotonic()
        state.new_lives()
        with (path / "publisher.log").open("ab") as log:
            publisher = subprocess.Popen(
                python_module("server.bench.soakpub", "--redis-url", bench.redis_url,
                              "--symbols", ",".join(symbols), "--seconds", str(duration),
                              "--rate", str(args.rate), "--seed-minutes", str(args.history_minutes)),
                stdout=subprocess.PIPE, stderr=log, cwd=path, env=child_env(),
            )  # fmt: skip
        start = _wait_published(bench, symbols, int(args.history_minutes * 60 * args.rate), 120)
        connected = fleet.connect(server.port, plan(symbols, args.clients, args.history_minutes),
                                  reconnect=True, resume=True, expect_history=True)  # fmt: skip
        fleet.mark(latency=True)
        schedule = fault_schedule(duration, args.fault_every)
        joined = 0
        next_churn, next_sample = args.churn_every, 0.0
        while state.now() < duration:
            at = state.now()
            if schedule and at >= schedule[0].at_s:
                state.drill(schedule.pop(0).name)
            elif at >= next_churn:
                next_churn = at + args.churn_every
                leaving = int(args.clients * args.replace + 0.5)
                fleet.churn(drop=int(args.clients * args.churn + 0.5), retire=leaving)
                if leaving:
                    fleet.connect(server.port, plan(symbols, leaving, args.history_minutes, joined),
                                  reconnect=True, resume=True, expect_history=True)  # fmt: skip
                    joined += leaving
            if at >= next_sample:
                next_sample = at + _SAMPLE_EVERY_S
                state.sample()
            time.sleep(0.1)
        out, _ = publisher.communicate(timeout=120)
        final = bench.seqs(symbols)
        behind = fleet.wait(final, 60)
        state.sample()
        report = fleet.report(final)
        if state.flooding:
            faults.receive(60)
        fault_report = faults.request({"cmd": "faults"}, 30)
        stored = wait_stored(database_url, final, 60)
        published = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        return SoakOutcome(
            params={k: v for k, v in vars(args).items() if k not in ("handler", "json")},
            report=report, faults=fault_report, stored=stored, start=start, final=final,
            counts={"behind": behind, "subscribed": connected.ok, "joined": joined},
            published=published, gateway_lives=state.gateway_lives,
            recorder_lives=state.recorder_lives, drills=state.drills,
        ).result()  # fmt: skip
    finally:
        fleet.close()
        faults.stop()
        if publisher is not None:
            stop_process(publisher)
        server.stop()


def _wait_published(bench: Rig, symbols: list[str], seeded: int, timeout_s: float) -> dict[str, int]:
    """Until the history seed is published and every symbol has an event; returns the seqs then."""
    deadline = time.monotonic() + timeout_s
    while True:
        seqs = bench.seqs(symbols)
        if all(seqs.values()) and sum(seqs.values()) >= seeded:
            return seqs
        if time.monotonic() > deadline:
            raise BenchError(
                f"the soak publisher did not publish its {seeded:,} history events within {timeout_s:g}s "
                f"(Redis has {sum(seqs.values()):,}); run with --keep-logs and see publisher.log"
            )
        time.sleep(0.1)
