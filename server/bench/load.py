"""Load processes: many raw websocket connections per asyncio process, driven over JSON lines.

``python -m server.bench.load`` reads one command per line on stdin and answers each
with one JSON line on stdout. The controller side is :class:`LoadFleet` (one object for
every load process of a run). Commands:

``connect``  open connections and subscribe (bounded concurrency); answers timings.
``flow``     write each symbol's slowest position to a Redis hash every few ms (the
             publishers' flow control).
``mark``     start a measurement phase (counters to zero); ``latency`` turns latency on.
``wait``     until every connection reached the given seq of its symbol (or a timeout).
``report``   the phase's counters, per-symbol unique items, reconnect timeline; with
             ``final`` also the seqs each connection missed (the soak's check).
``churn``    drop some connections (they reconnect and resume) and retire others for good.
``stall``    open a connection that subscribes with history and then stops reading.
``flood``    open a connection that sends pings as fast as it can.
``faults``   what became of the stalled and the flooding connection.
``close``    close everything and exit.

Connections that drop reconnect when asked to: exponential backoff with full jitter
(0.5 s doubling to 20 s, as docs/protocol.md advises), then subscribe again, with
``resume`` from their position on signalpush.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from publishers.backoff import Backoff, Retries
from publishers.connection import async_client
from server.bench.faultconn import FaultConn, flood, stall
from server.bench.loadclient import ConnState, FrameCache, Tally
from server.bench.wsclient import RawWebSocket, open_websocket

#: Reconnect backoff (docs/protocol.md): first cap, ceiling, attempts before giving up.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 20.0
MAX_ATTEMPTS = 30


class LoadConn:
    """A load connection: socket + state + how to subscribe again."""

    __slots__ = (
        "attempts",
        "closed_ns",
        "reconnected_ns",
        "reconnects",
        "request",
        "retired",
        "state",
        "worker",
        "ws",
    )

    def __init__(self, worker: LoadWorker, state: ConnState, request: dict[str, Any]) -> None:
        self.worker = worker
        self.state = state
        self.request = request
        self.ws: RawWebSocket | None = None
        self.closed_ns = 0
        self.reconnected_ns = 0
        self.reconnects = 0
        self.attempts = 0
        #: Closed for good by ``churn``: no reconnect; checked up to where it got.
        self.retired = False

    async def open(self) -> None:
        worker = self.worker
        self.ws = await open_websocket(
            worker.host, worker.port, worker.path, self.state.on_message, self._closed, worker.timeout_s
        )
        self.ws.send_text(json.dumps(self.request))

    def _closed(self, code: int | None) -> None:
        self.closed_ns = time.time_ns()
        self.worker.closed += 1
        reason = f"closed {code}"
        self.worker.failures[reason] = self.worker.failures.get(reason, 0) + 1
        if self.worker.reconnect and not self.worker.stopping and not self.retired:
            self.worker.spawn(self._reconnect())

    def retry_later(self) -> None:
        self.worker.retries += 1
        self.worker.spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        """The server could not serve the subscription now: ask again after a jittered pause."""
        await asyncio.sleep(random.uniform(0, BACKOFF_FIRST_S * 2))
        if self.ws is not None and self.ws.open and not self.worker.stopping:
            self.state.resubscribing()
            self.ws.send_text(json.dumps(self.resume_request()))

    def resume_request(self) -> dict[str, Any]:
        """The subscribe frame to send again: with ``resume`` from the position (signalpush)."""
        state = self.state
        request = dict(self.request)
        if self.worker.resume and state.epoch is not None:
            request.pop("history", None)
            request["resume"] = {"epoch": state.epoch, "seq": state.position}
        return request

    async def _reconnect(self) -> None:
        retries = Retries(Backoff(first_s=BACKOFF_FIRST_S, max_s=BACKOFF_MAX_S))
        for _ in range(MAX_ATTEMPTS):
            await retries.wait()
            self.attempts += 1
            if self.worker.stopping:
                return
            state = self.state
            request = self.resume_request()
            state.resubscribing()
            try:
                self.ws = await open_websocket(
                    self.worker.host,
                    self.worker.port,
                    self.worker.path,
                    state.on_message,
                    self._closed,
                    self.worker.timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                reason = type(exc).__name__
                self.worker.failures[reason] = self.worker.failures.get(reason, 0) + 1
                continue
            self.reconnects += 1
            self.reconnected_ns = time.time_ns()
            self.ws.send_text(json.dumps(request))
            return
        self.worker.gave_up += 1


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LoadWorker:
    def __init__(self) -> None:
        self.cache = FrameCache()
        self.tally = Tally()
        self.conns: list[LoadConn] = []
        self.host, self.port, self.path = "127.0.0.1", 0, "/ws"
        self.timeout_s = 10.0
        self.reconnect = False
        self.resume = False
        self.stopping = False
        self.closed = 0
        self.gave_up = 0
        self.retries = 0
        #: Failed reconnect attempts by exception name.
        self.failures: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flow: asyncio.Task[None] | None = None
        self._redis: aioredis.Redis | None = None
        self.stalled: FaultConn | None = None
        self.flooder: FaultConn | None = None

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        self.host, self.port = command["host"], int(command["port"])
        self.path = command.get("path", "/ws")
        self.timeout_s = float(command.get("timeout_s", 10.0))
        self.reconnect = bool(command.get("reconnect", False))
        self.resume = bool(command.get("resume", False))
        expect_history = bool(command.get("expect_history", False))
        limit = asyncio.Semaphore(int(command.get("concurrency", 64)))
        durations: list[float] = []
        errors: list[str] = []
        began = time.monotonic()

        async def one(symbol: str, request: dict[str, Any]) -> None:
            async with limit:
                start = time.monotonic()
                loop = asyncio.get_running_loop()
                ready: asyncio.Future[None] = loop.create_future()
                state = ConnState(
                    symbol,
                    self.tally,
                    self.cache,
                    expects_history=expect_history and "history" in request,
                    on_ready=lambda: _resolve(ready),
                )
                conn = LoadConn(self, state, request)
                state.on_retry = conn.retry_later
                try:
                    await conn.open()
                    await asyncio.wait_for(ready, self.timeout_s)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    if conn.ws is not None:
                        conn.ws.abort()
                    return
                state.on_ready = None
                state.mark()  # a connection joining a running phase is checked from here on
                self.conns.append(conn)
                durations.append(time.monotonic() - start)

        await asyncio.gather(*(one(symbol, request) for symbol, request in command["conns"]))
        durations.sort()
        return {
            "ok": len(durations),
            "failed": len(errors),
            "errors": errors[:5],
            "elapsed_s": time.monotonic() - began,
            "p50_s": durations[len(durations) // 2] if durations else None,
            "max_s": durations[-1] if durations else None,
        }

    def positions(self) -> dict[str, int]:
        lowest: dict[str, int] = {}
        for conn in self.conns:
            if conn.retired:
                continue
            state = conn.state
            progress = state.progress
            if progress < lowest.get(state.symbol, progress + 1):
                lowest[state.symbol] = progress
        return lowest

    async def flow(self, command: dict[str, Any]) -> dict[str, Any]:
        self._redis = async_client(command["redis_url"], name="signalpush-bench-flow")
        key, name = command["key"], command["name"]
        interval = float(command.get("interval_ms", 5)) / 1000

        async def report() -> None:
            assert self._redis is not None
            while not self.stopping:
                positions = self.positions()
                if positions:
                    await self._redis.hset(key, mapping={f"{s}|{name}": p for s, p in positions.items()})
                await asyncio.sleep(interval)

        self._flow = asyncio.create_task(report())
        return {"ok": True}

    def mark(self, command: dict[str, Any]) -> dict[str, Any]:
        self.tally = Tally(measure_latency=bool(command.get("latency", False)))
        for conn in self.conns:
            conn.state.tally = self.tally
            conn.state.mark()
        return {"ok": True}

    async def wait(self, command: dict[str, Any]) -> dict[str, Any]:
        final: dict[str, int] = command["final"]
        deadline = time.monotonic() + float(command.get("timeout_s", 30))
        while True:
            behind = sum(
                1 for c in self.conns if not c.retired and c.state.progress < final.get(c.state.symbol, 0)
            )
            if not behind or time.monotonic() > deadline:
                return {"behind": behind}
            await asyncio.sleep(0.01)

    def report(self, final: dict[str, int] | None = None) -> dict[str, Any]:
        unique: dict[str, list[int]] = {}
        live: list[int] = []
        timeline: list[tuple[int, int, int]] = []
        for conn in self.conns:
            state = conn.state
            entry = unique.setdefault(state.symbol, [0, 0])
            entry[0] += state.unique - state.unique_at_mark
            entry[1] += 1
            if conn.reconnects:
                live.append(state.live_at_ns)
                timeline.append((conn.reconnected_ns, state.live_at_ns, conn.attempts))
        return {
            **self.tally.to_json(),
            "unique": unique,
            "connections": len(self.conns),
            "open": sum(1 for c in self.conns if c.ws is not None and c.ws.open),
            "closed": self.closed,
            "reconnected": sum(1 for c in self.conns if c.reconnects),
            "gave_up": self.gave_up,
            "live_ns": live,
            "timeline": timeline,
            "failures": {
                **self.failures,
                **({"internal error, subscribed again": self.retries} if self.retries else {}),
            },
            "not_live": sum(1 for c in self.conns if c.reconnects and not c.state.live_at_ns),
            "frames_parsed": self.cache.parsed,
            **(self.accounting(final) if final is not None else {}),
        }

    def accounting(self, final: dict[str, int]) -> dict[str, Any]:
        """Per connection: seqs missed since it was marked (up to ``final``, or where it was retired)."""
        lost = behind = retired = 0
        for conn in self.conns:
            state = conn.state
            if conn.retired:
                retired += 1
                lost += state.lost(state.progress)
                continue
            up_to = final.get(state.symbol, 0)
            lost += state.lost(up_to)
            behind += state.progress < up_to
        return {"lost": lost, "behind": behind, "retired": retired}

    def churn(self, command: dict[str, Any]) -> dict[str, Any]:
        """Drop ``drop`` random live connections (they reconnect and resume) and retire ``retire``."""
        active = [c for c in self.conns if not c.retired and c.ws is not None and c.ws.open]
        random.shuffle(active)
        drop, retire = int(command.get("drop", 0)), int(command.get("retire", 0))
        for conn in active[:retire]:
            conn.retired = True
            assert conn.ws is not None
            conn.ws.close()
        for conn in active[retire : retire + drop]:
            assert conn.ws is not None
            conn.ws.abort()
        return {"dropped": len(active[retire : retire + drop]), "retired": len(active[:retire])}

    async def stall(self, command: dict[str, Any]) -> dict[str, Any]:
        self.stalled = await stall(self._address(command), command)
        return {"ok": True}

    async def flood(self, command: dict[str, Any]) -> dict[str, Any]:
        self.flooder = await FaultConn.open("flooding", self._address(command))
        return await flood(self.flooder, float(command.get("seconds", 10.0)))

    def _address(self, command: dict[str, Any]) -> tuple[str, int, str, float]:
        self.host, self.port = command.get("host", self.host), int(command.get("port", self.port))
        self.path = command.get("path", self.path)
        return self.host, self.port, self.path, self.timeout_s

    def faults(self) -> dict[str, Any]:
        conns = (("stalled", self.stalled), ("flooding", self.flooder))
        return {name: conn.to_json() for name, conn in conns if conn is not None}

    async def close(self) -> dict[str, Any]:
        self.stopping = True
        if self._flow is not None:
            self._flow.cancel()
        for conn in self.conns:
            if conn.ws is not None:
                conn.ws.close()
        for task in list(self._tasks):
            task.cancel()
        if self._redis is not None:
            await self._redis.aclose()
        await asyncio.sleep(0.05)
        return {"ok": True}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "connect":
            return await self.connect(command)
        if name == "flow":
            return await self.flow(command)
        if name == "mark":
            return self.mark(command)
        if name == "wait":
            return await self.wait(command)
        if name == "report":
            return self.report(command.get("final"))
        if name == "churn":
            return self.churn(command)
        if name == "stall":
            return await self.stall(command)
        if name == "flood":
            return await self.flood(command)
        if name == "faults":
            return self.faults()
        if name == "close":
            return await self.close()
        return {"error": f"unknown command {name!r}"}


async def serve_commands() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = LoadWorker()
    while True:
        line = await reader.readline()
        if not line:
            await worker.close()
            return
        command = json.loads(line)
        reply = await worker.handle(command)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if command.get("cmd") == "close":
            return


def main() -> int:
    asyncio.run(serve_commands())
    return 0


if __name__ == "__main__":
    sys.exit(main())
