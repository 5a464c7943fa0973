"""``signalpush bench hostile``: honest publishers and checked clients while each attack of issue 15 runs.

A real ``signalpush serve`` (default configuration: recording on into SQLite, its own Redis)
serves checked clients (:mod:`server.bench.hostileclient`: every events frame kept, judged seq
by seq) on ``--symbols`` symbols fed by honest publishers (:mod:`server.bench.hostilepub`, the
project's ``Publisher``). A fourth symbol holds 30 days of history for the history-pull attack.
A quiet window comes first (the baseline: p99, RSS); then each attack
(:mod:`server.bench.hostilebus`, :mod:`server.bench.hostileedge`) runs for
``--seconds-per-attack`` while the honest feed goes on, what it left in Redis is removed, and
the bench waits (at most ``--settle`` s) for the clients and the recorder to catch up.

Each row says, for the honest events published during the attack: how many a checked client
never got (lost) or got twice (dup), what reached clients that no honest publisher sent
(forged), unparseable frames, holes, resets, honest connections closed; whether the gateway
and the recorder kept working (during the attack, and after it), what ``/healthz`` said at
both moments against that truth, the serve's RSS, other clients' p99, and the attack's own
outcome. A serve found down after an attack is restarted before the next one (so the rows
stay independent), and the row says so. At the end SQL must hold every honest event once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import redis

from server.bench import BenchResult, positive_float, positive_int
from server.bench.attack import Attack, AttackContext, Outcome, poll
from server.bench.honest import HonestRecord
from server.bench.hostilebus import BUS_ATTACKS
from server.bench.hostileedge import EDGE_ATTACKS
from server.bench.hostilereport import Moment, Rss, attack_row, sql_check
from server.bench.hostilesql import honest_in_sql, seed_history, sql_seqs
from server.bench.procs import (
    BenchError,
    JsonChild,
    ServerChild,
    bench_redis,
    child_env,
    memory_kib,
    python_module,
    stop_process,
    workdir,
)
from server.bench.rig import Rig
from server.cli.acl import setuser_command, user_url

_S = 1_000_000_000  # ns

DESCRIPTION = "hostile: honest publishers and checked clients while each attack of issue 15 runs in turn"


async def _quiet(ctx: AttackContext) -> Outcome:
    return Outcome("no attack: the reference for p99 and RSS")


BASELINE = Attack("none (baseline)", _quiet)
ATTACKS: tuple[Attack, ...] = BUS_ATTACKS + EDGE_ATTACKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    number, count = positive_float, positive_int
    parser.add_argument(
        "--seconds-per-attack", type=number, default=4.0, help="how long each attack runs (default: 4)"
    )
    parser.add_argument(
        "--settle", type=number, default=8.0, help="seconds at most to catch up after an attack (default: 8)"
    )
    parser.add_argument("--symbols", type=count, default=3, help="honest symbols (default: 3)")
    parser.add_argument(
        "--clients", type=count, default=3, help="checked connections per symbol (default: 3)"
    )
    parser.add_argument(
        "--rate", type=number, default=30.0, help="honest events/s, all symbols (default: 30)"
    )
    parser.add_argument(
        "--history-rows", type=count, default=200_000,
        help="events in the 30-day history the pulls ask for (default: 200,000)",
    )  # fmt: skip
    parser.add_argument(
        "--attacks", help="comma-separated parts of attack names to run (default: all); e.g. 'live:,flood'"
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="serve with auth on (a JWT secret; the clients hold a static token)",
    )
    parser.add_argument(
        "--redis-url",
        help="use this Redis (default: an embedded one on a free port); not a shared one: the attacks "
        "write into sp:symbols, which every recorder on it reads",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the scratch dir with every log")


def selected(spec: str | None) -> list[Attack]:
    """The attacks whose names contain one of the comma-separated parts of ``spec`` (all without one)."""
    if not spec:
        return list(ATTACKS)
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    chosen = [a for a in ATTACKS if any(p in a.name.lower() for p in parts)]
    if not chosen:
        raise BenchError(f"no attack matches {spec!r}; attacks: {', '.join(a.name for a in ATTACKS)}")
    return chosen


def run(args: argparse.Namespace) -> BenchResult:
    attacks = selected(args.attacks)
    with workdir(keep=bool(args.keep_logs)) as path, bench_redis(args.redis_url, path) as (url, pid):
        rig = Rig(url, pid, path)
        try:
            return asyncio.run(Hostile(args, rig).run(attacks))
        finally:
            if pid is None:
                rig.cleanup()


class Hostile:
    def __init__(self, args: argparse.Namespace, rig: Rig) -> None:
        self.args, self.rig = args, rig
        self.path = rig.workdir
        self.database_url = f"sqlite+aiosqlite:///{self.path / 'hostile.db'}"
        self.record_path = self.path / "honest.txt"
        self.record = HonestRecord(self.record_path)
        self.symbols = rig.symbols("HON", args.symbols)
        self.history_symbol = rig.symbols("HIST", 1)[0]
        self.token = secrets.token_urlsafe(24) if args.auth else None
        self.server: ServerChild | None = None
        self.publisher: subprocess.Popen[bytes] | None = None
        self.clients: JsonChild | None = None
        self.load: JsonChild | None = None
        self.attacker: tuple[str, str] | None = None
        self.needs_restart = False

    # -- the run ---------------------------------------------------------------------------

    async def run(self, attacks: list[Attack]) -> BenchResult:
        rows: list[dict[str, Any]] = []
        try:
            await self.setup()
            rows.append(await self.window(BASELINE))
            for attack in attacks:
                rows.append(await self.window(attack))
            end = await self.finish()
        finally:
            self.teardown()
        failed = [row["attack"] for row in rows if row["verdict"] != "ok"]
        summary = (
            f"hostile ({self._title()}): {len(rows) - 1} attacks, {len(failed)} failed"
            f"{': ' + '; '.join(failed) if failed else ''}. {end['text']}"
        )
        return BenchResult("hostile", rows, summary, {"params": _params(self.args), "sql": end})

    def _title(self) -> str:
        auth = "auth on (JWT secret + a static token)" if self.token else "auth as shipped (off)"
        return (
            f"serve with recording into SQLite, {auth}; {len(self.symbols)} symbols x {self.args.clients} "
            f"checked clients, {self.args.rate:g} honest events/s; "
            f"{self.args.seconds_per_attack:g}s per attack"
        )

    async def setup(self) -> None:
        await seed_history(self.database_url, self.rig.redis_url, self.history_symbol, self.args.history_rows)
        self.attacker = self._attacker_user()
        self.server = ServerChild("signalpush", self.rig.redis_url, self.path, env=self._serve_env())
        await asyncio.to_thread(self.server.start, 60)
        publisher = self.publisher = self._start_publisher()
        if not await poll(
            lambda: all(self.rig.seqs(self.symbols).values()) or publisher.poll() is not None, 30
        ):
            raise BenchError("the honest publisher did not publish; run with --keep-logs, see publisher.log")
        if publisher.poll() is not None:
            raise BenchError("the honest publisher exited; run with --keep-logs, see publisher.log")
        self.clients = JsonChild(
            python_module("server.bench.hostileclient"), name="checked clients", cwd=self.path,
            log_path=self.path / "clients.log",
        )  # fmt: skip
        self.load = JsonChild(
            python_module("server.bench.load"),
            name="attacker",
            cwd=self.path,
            log_path=self.path / "attacker.log",
        )
        await self._connect_clients()

    async def _connect_clients(self) -> None:
        assert self.clients is not None and self.server is not None
        reply = await asyncio.to_thread(
            self.clients.request,
            {"cmd": "connect", "port": self.server.port, "path": self._path("/ws"), "symbols": self.symbols,
             "per_symbol": self.args.clients},
            60,
        )  # fmt: skip
        if reply["failed"]:
            raise BenchError(f"checked clients could not subscribe: {reply['errors']}")

    def _start_publisher(self) -> subprocess.Popen[bytes]:
        with (self.path / "publisher.log").open("ab") as log:
            return subprocess.Popen(
                python_module("server.bench.hostilepub", "--redis-url", self.rig.redis_url,
                              "--symbols", ",".join(self.symbols), "--rate", str(self.args.rate),
                              "--record", str(self.record_path), "--seconds", "3600"),
                stdout=subprocess.PIPE, stderr=log, cwd=self.path, env=child_env(),
            )  # fmt: skip

    def _serve_env(self) -> dict[str, str]:
        env = {"SIGNALPUSH_DATABASE_URL": self.database_url, "SIGNALPUSH_LOG_LEVEL": "info"}
        if self.token:
            env["SIGNALPUSH_AUTH_ENABLED"] = "true"
            env["SIGNALPUSH_AUTH_JWT_SECRET"] = secrets.token_urlsafe(32)
            env["SIGNALPUSH_AUTH_TOKENS"] = json.dumps([{"name": "bench", "token": self.token}])
        return env

    def _path(self, path: str) -> str:
        return f"{path}?token={self.token}" if self.token else path

    def _attacker_user(self) -> tuple[str, str]:
        """A ``publisher`` ACL user for the Redis-side attacks: (its name, a URL logging in as it)."""
        admin = redis.Redis.from_url(self.rig.redis_url)
        try:
            major = int(str(admin.info("server")["redis_version"]).split(".")[0])
            name, password = f"sp-bench-attacker-{self.rig.tag.lower()}", secrets.token_hex(16)
            admin.execute_command(*setuser_command("publisher", name, password, redis_major=major))  # type: ignore[no-untyped-call]
        finally:
            admin.close()
        return name, user_url(self.rig.redis_url, name, password)

    # -- one window ------------------------------------------------------------------------

    async def window(self, attack: Attack) -> dict[str, Any]:
        assert self.server is not None and self.load is not None and self.attacker is not None
        restarted = await self.ensure_serving()
        await asyncio.sleep(0.5)
        rss_before = _rss_mib(self.server.pid)
        sampler = asyncio.create_task(_peak_rss(self.server.pid))
        ctx = AttackContext(
            redis_url=self.rig.redis_url, attacker_url=self.attacker[1], host="127.0.0.1",
            port=self.server.port, symbols=self.symbols, history_symbol=self.history_symbol,
            seconds=self.args.seconds_per_attack, token=self.token, load=self.load,
            serve_log=self.server.log_path, tag=self.rig.tag,
        )  # fmt: skip
        print(f"  hostile: {attack.name}", flush=True, file=sys.stderr)
        since, began = time.time_ns(), time.monotonic()
        try:
            outcome = await asyncio.wait_for(attack.run(ctx), ctx.seconds + 180)
        except Exception as exc:  # a broken attack is reported in its row; the run goes on
            outcome = Outcome(f"the attack failed: {type(exc).__name__}: {exc}", ["attack did not run"])
        # Every window carries at least --seconds-per-attack of honest traffic.
        await asyncio.sleep(max(0.0, began + ctx.seconds - time.monotonic()))
        until = time.time_ns()
        during = await self.at_attack_end(since, until)
        if attack.undo is not None:
            await attack.undo(ctx)
        verdict, after = await self.settle(since, until)
        if attack.repair is not None:
            await attack.repair(ctx)
        sampler.cancel()
        rss = Rss(rss_before, await _result(sampler), _rss_mib(self.server.pid))
        process = self.server.process
        self.needs_restart = (
            not (after.gateway and after.recorder) or process is None or process.poll() is not None
        )
        self.record.refresh()
        return attack_row(
            attack, outcome, verdict, (during, after), rss,
            publish_failures=self.record.failures(since, until), restarted=restarted,
        )  # fmt: skip

    async def ensure_serving(self) -> bool:
        """Restart the serve (SIGTERM: its recorder finishes its batch) if the last window left
        something down, and replace the clients' closed connections."""
        assert self.server is not None and self.clients is not None
        restart = self.needs_restart or self.server.process is None or self.server.process.poll() is not None
        if restart:
            self.server.stop()
            await asyncio.to_thread(self.server.start, 60)
            self.needs_restart = False
        await asyncio.to_thread(self.clients.request, {"cmd": "reopen"}, 60)
        return restart

    async def verdict(self, since: int, until: int, alive_after: int | None = None) -> dict[str, Any]:
        assert self.clients is not None
        command = {"cmd": "verdict", "record": str(self.record_path), "since_ns": since, "until_ns": until}
        if alive_after is not None:
            command["alive_after_ns"] = alive_after
        reply: dict[str, Any] = await asyncio.to_thread(self.clients.request, command, 60)
        return reply

    def _serving(self) -> bool:
        return (
            self.server is not None and self.server.process is not None and self.server.process.poll() is None
        )

    async def at_attack_end(self, since: int, until: int) -> Moment:
        """At the end of an attack: did the honest events of its last seconds reach the clients
        (within 1.5 s) and SQL (within 2 s), and what does /healthz say?"""
        assert self.server is not None
        self.record.refresh()
        gateway: bool | None = None
        recent_since, recent_until = max(since, until - 3 * _S), until - 3 * _S // 2
        if recent_until > recent_since:
            gateway = self._serving() and (await self.verdict(recent_since, recent_until))["lost"] == 0
        recorder = await honest_in_sql(self.database_url, self.record, since, until - 2 * _S)
        return Moment(gateway, recorder, _healthz(self.server.port))

    async def settle(self, since: int, until: int) -> tuple[dict[str, Any], Moment]:
        """Wait at least 4 s (so events published after the attack are judged too) and at most
        ``--settle`` until: every client has every honest event of the window, events published
        after it reach every symbol's clients, and SQL holds every honest event older than 3 s.
        Then what /healthz says."""
        assert self.server is not None
        began = time.monotonic()
        least = min(4.0, self.args.settle)
        while True:
            self.record.refresh()
            verdict = await self.verdict(since, until, alive_after=until)
            recorder = await honest_in_sql(
                self.database_url, self.record, since, max(until, time.time_ns() - 3 * _S)
            )
            flowing = {
                s for s, events in self.record.events.items() if events and events[-1].stamp_ns > until
            }
            gateway = (self._serving() and flowing <= set(verdict["alive_symbols"])) if flowing else None
            waited = time.monotonic() - began
            caught_up = verdict["lost"] == 0 and recorder and gateway
            if (caught_up and waited >= least) or waited > self.args.settle:
                return verdict, Moment(gateway, recorder, _healthz(self.server.port))
            await asyncio.sleep(0.5)

    # -- the end ---------------------------------------------------------------------------

    async def finish(self) -> dict[str, Any]:
        if self.publisher is not None:
            stop_process(self.publisher, 30)
        self.record.refresh()
        await poll(lambda: honest_in_sql(self.database_url, self.record, 0, 2**63), self.args.settle, 0.5)
        stored = await sql_seqs(self.database_url, self.symbols)
        return sql_check(stored, {s: set(self.record.seqs.get(s, {})) for s in self.symbols})

    def teardown(self) -> None:
        for child in (self.clients, self.load):
            if child is not None:
                child.stop()
        if self.publisher is not None:
            stop_process(self.publisher)
        if self.server is not None:
            self.server.stop()
        if self.attacker is not None:
            admin = redis.Redis.from_url(self.rig.redis_url)
            try:
                admin.execute_command("ACL", "DELUSER", self.attacker[0])  # type: ignore[no-untyped-call]
            finally:
                admin.close()


def _healthz(port: int) -> int:
    """The status /healthz answers (0: no answer)."""
    try:
        with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return int(response.status)
    except HTTPError as exc:
        return exc.code
    except (URLError, OSError):
        return 0


def _rss_mib(pid: int) -> float:
    return memory_kib(pid).get("VmRSS", 0) / 1024


async def _peak_rss(pid: int) -> float:
    peak = 0.0
    try:
        while True:
            peak = max(peak, _rss_mib(pid))
            await asyncio.sleep(0.2)
    except asyncio.CancelledError:
        return max(peak, _rss_mib(pid))


async def _result(task: asyncio.Task[float]) -> float:
    try:
        return await task
    except asyncio.CancelledError:
        return 0.0


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("handler",)}
