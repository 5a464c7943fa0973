"""The websocket gateway: connections, their lifecycle, and writing what the fan-out core builds.

Each connection's text frames go to :class:`~server.gateway.ops.ClientOps` (the subscribe
flow and the other ops). Holes in the live stream are filled from the log before anything
later is sent (server/gateway/livepath.py); an epoch change sends ``reset`` and a fresh window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from publishers.events import now_ms
from server.core.fanout import Fanout, Member
from server.core.protocol import (
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_UNSUPPORTED,
    Limits,
    ResumeRequest,
    extract_ref,
    hello_frame,
    status_frame,
)
from server.gateway.builds import HistoryBuilds
from server.gateway.catchup import CatchUp
from server.gateway.displays import DisplayHub
from server.gateway.livepath import LivePath
from server.gateway.metrics import GatewayMetrics
from server.gateway.ops import ClientOps
from server.gateway.outbox import Outbox, ws_of
from server.gateway.perf import PerfFeed
from server.gateway.ports import Acknowledger, Authorizer, Bus, BusFactory, FigureSource, RequestHandler
from server.gateway.replay import Replays
from server.gateway.session import Admission, Session, TokenBucket
from server.gateway.slowclients import SlowClients
from server.gateway.tasks import SupervisedTask
from server.history.replay_store import ReplayStore
from server.history.source import HistorySource
from server.settings import Settings

log = logging.getLogger(__name__)
# host:pid in the hello frame: which gateway process a client reached.
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"
#: websockets' close timeout: how long a closing handshake may take before the socket is dropped.
CLOSE_TIMEOUT_S = 2.0


class Gateway:
    """Serve wire protocol v1 on ``/ws`` (and the HTTP routes) for one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis_url: str,
        redis: aioredis.Redis,
        history: HistorySource,
        access: Authorizer,
        figures: FigureSource,
        make_bus: BusFactory,
        builds_database_url: str | None = None,
        alerts: Acknowledger | None = None,
        perf: PerfFeed | None = None,
    ) -> None:
        """Collaborators come from the composition root (server/cli/runner.py).

        ``builds_database_url``: history builds run in worker processes reading that database
        (when ``history.workers`` > 0); None builds them in this process. ``perf``: the live
        signal-quality feed of the ``perf`` op (None: the op is refused; it needs SQL).
        """
        self.settings = settings
        self.redis_url = redis_url
        self.redis = redis
        self.history = history
        self.access = access
        self.figures = figures
        #: Acknowledges alerts for the ``ack`` op (None: the op answers bad_request).
        self.alerts = alerts
        self.perf = perf
        self.fanout = Fanout()
        self.metrics = GatewayMetrics()
        self.sessions: dict[ServerConnection, Session] = {}
        self.slow = SlowClients(
            self.fanout,
            self.metrics,
            max_buffer_bytes=settings.server.max_buffer_bytes,
            timeout_s=settings.server.slow_client_timeout_s,
            catch_up=self._catch_up_drained,
            spawn=self._spawn,
            close_timeout_s=CLOSE_TIMEOUT_S,
        )
        self.outbox = Outbox(
            self.metrics,
            settings.server.max_buffer_bytes,
            self.slow.lag,
            settings.server.max_send_frame_bytes,
        )
        self.live = LivePath(
            fanout=self.fanout,
            history=self.history,
            redis=self.redis,
            metrics=self.metrics,
            outbox=self.outbox,
            restart_member=self._restart_member,
            announce=lambda up: self.outbox.broadcast_all(self.sessions, status_frame(up, now_ms())),
            confirm_every_batch=settings.server.confirm_live,
        )
        self.builds = HistoryBuilds.create(
            settings.history,
            redis_url=redis_url,
            database_url=builds_database_url,
            source=self.history,
            figure=self.figures.figure_for,
            metrics=self.metrics,
        )
        self.catchup = CatchUp(
            fanout=self.fanout,
            history=self.history,
            outbox=self.outbox,
            metrics=self.metrics,
            defaults=settings.history,
            builds=self.builds,
        )
        self.bus: Bus = make_bus(self.live.on_batch, self.live.on_bus_state)
        engine = getattr(history, "engine", None)  # replays need the SQL store (StoreHistory)
        self.replays = Replays(
            store=None if engine is None else ReplayStore(engine, redis),
            outbox=self.outbox,
            budget=self.builds.budget,
            defaults=settings.history,
            subscribe_live=lambda session, message: self.ops.subscribe_in_order(session, message),
        )
        #: Open connections per remote address (for server.max_connections_per_ip).
        self.per_address: dict[str, int] = {}
        self.limits = Limits(
            max_minutes=settings.history.max_minutes,
            max_points=settings.history.max_points * 10,
            default_points=settings.history.max_points,
        )
        #: The process's long-running tasks by name (restarted if they end; /healthz shows them).
        self.tasks: dict[str, SupervisedTask] = {}
        self._http: RequestHandler | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None
        self._stopping = False
        self.started_at = time.monotonic()
        #: The walls whose sockets this process holds (docs/walls.md).
        self.displays = DisplayHub(redis, redis_url, settings.walls, INSTANCE, self.outbox.send_now)
        #: What the connections' text frames ask for (server/gateway/ops.py).
        self.ops = ClientOps(
            settings,
            limits=self.limits,
            access=access,
            fanout=self.fanout,
            bus=self.bus,
            live=self.live,
            outbox=self.outbox,
            metrics=self.metrics,
            slow=self.slow,
            builds=self.builds,
            catchup=self.catchup,
            replays=self.replays,
            displays=self.displays,
            alerts=alerts,
            perf=perf,
            spawn=self._spawn,
        )

    def __repr__(self) -> str:
        symbols = len(self.fanout.symbols)
        return f"Gateway(connections={len(self.sessions)}, symbols={symbols}, bus={self.bus!r})"

    # -- lifecycle ------------------------------------------------------------------

    async def start(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        reuse_port: bool = False,
        http: RequestHandler | None = None,
        sock: socket.socket | None = None,
    ) -> int:
        """Listen and start the bus; returns the bound port.

        ``http`` answers the port's other routes (server/gateway/http.py); without it only
        ``/ws`` is served. ``sock``: a socket already listening (bound before start-up, so
        connections queue instead of being refused while the process starts).
        """
        server = self.settings.server
        self._http = http
        self.supervise(SupervisedTask("bus", self.bus.run))
        self.supervise(SupervisedTask("housekeeping", self._housekeeping))
        self.supervise(SupervisedTask("displays", self.displays.run))
        if self.perf is not None:
            self.supervise(SupervisedTask("perf", self.perf.run))
        where: dict[str, Any] = (
            {"sock": sock}
            if sock is not None
            else {
                "host": host or server.host,
                "port": server.port if port is None else port,
                "reuse_port": reuse_port,
            }
        )
        self._server = await serve(
            self._handle,
            **where,
            backlog=server.listen_backlog,
            process_request=self._process_request,
            compression="deflate" if server.compression else None,
            max_size=server.max_frame_bytes,
            ping_interval=server.heartbeat_s,
            ping_timeout=server.heartbeat_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_queue=64,
        )
        sockets = list(self._server.sockets)
        bound: int = sockets[0].getsockname()[1]
        log.info("gateway listening", extra={"host": host or server.host, "port": bound})
        return bound

    async def stop(self) -> None:
        """Stop accepting, close every connection with 1012 (clients resume elsewhere), stop the bus."""
        self._stopping = True
        timeout = self.settings.server.shutdown_timeout_s
        if self._server is not None:
            self._server.close(close_connections=False)
            closing = [ws.close(CLOSE_RESTART, "server restart") for ws in list(self.sessions)]
            if closing:
                await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout)
        for name in ("bus", "housekeeping", "perf", "displays"):
            task = self.tasks.get(name)
            if task is not None:
                await task.stop()
        self.builds.close()
        await self.redis.aclose()

    def supervise(self, task: SupervisedTask) -> None:
        """Start ``task`` (unless running) and count its restarts; /healthz reports it."""
        self.tasks[task.name] = task
        self.metrics.task_restarts.setdefault(task.name, 0)

        def restarted(name: str) -> None:
            self.metrics.task_restarts[name] = self.metrics.task_restarts.get(name, 0) + 1

        task.on_restart = restarted
        task.start()

    # -- connections ----------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._http is not None:
            return await self._http(connection, request)
        if request.path.split("?", 1)[0] != "/ws":
            return connection.respond(404, "not found\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        server = self.settings.server
        session = Session(ws, TokenBucket(server.message_rate, server.message_burst))
        session.address = str(ws.remote_address[0]) if ws.remote_address else ""
        self.sessions[ws] = session
        self.per_address[session.address] = self.per_address.get(session.address, 0) + 1
        self.metrics.connections_accepted += 1
        expiry = self._schedule_expiry(ws)
        ops = self.ops
        try:
            await ws.send(hello_frame(server.heartbeat_s, INSTANCE))
            if not self.bus.up and self.live.bus_was_up:
                await ws.send(status_frame(False, now_ms()))
            async for message in ws:
                if not isinstance(message, str):
                    await ws.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
                    break
                admission = session.bucket.admit()
                if admission is Admission.FLOOD:
                    await ws.close(CLOSE_POLICY, "message flood")
                    break
                if admission is Admission.REFUSE:
                    refused = f"over {server.message_rate:g} messages/s"
                    await ops.error(ws, extract_ref(message), "rate_limited", refused)
                    continue
                await ops.dispatch_safely(session, message)
        except ConnectionClosed:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            self._drop_session(session)

    def _schedule_expiry(self, ws: ServerConnection) -> asyncio.TimerHandle | None:
        """Close the connection with 4003 the moment its token expires."""
        left = self.access.principal_of(ws).seconds_left()
        if left is None:
            return None
        return asyncio.get_running_loop().call_later(max(0.0, left), lambda: self._spawn(self._expire(ws)))

    async def _expire(self, ws: ServerConnection) -> None:
        """The token ran out: the wall's record says so on /walls, then the socket closes with 4003."""
        await self.displays.mark(ws, "token_expired", self.access.principal_of(ws).name)
        await ws.close(CLOSE_TOKEN_EXPIRED, "token expired")

    def _drop_session(self, session: Session) -> None:
        self.sessions.pop(session.ws, None)
        count = self.per_address.get(session.address, 1) - 1
        if count > 0:
            self.per_address[session.address] = count
        else:
            self.per_address.pop(session.address, None)
        self.access.forget(session.ws)
        self.displays.forget(session.ws)
        if self.perf is not None:
            self.perf.unsubscribe(session.ws)
        session.cancel_ops()
        self.replays.drop(session)
        for sub in list(session.members):
            self.ops.leave(session, sub)

    def _restart_member(self, member: Member, reason: str) -> None:
        """A reset of the member's symbol: send ``reset`` and a fresh window (a new catch-up)."""
        self.slow.forget(member)
        session = self.sessions.get(ws_of(member))
        if session is None:
            return
        session.cancel(member.sub)
        history = session.history.get(member.sub)
        session.start_catch_up(
            member.sub,
            lambda: self.catchup.run(session.ws, member, member.generation, history, None, reason),
            f"signalpush-reset-{member.sub}",
        )

    # -- housekeeping: quiet groups, slow clients (server/gateway/slowclients.py) -------------

    async def _housekeeping(self) -> None:
        server = self.settings.server
        while True:
            await asyncio.sleep(min(0.25, server.heartbeat_s / 4))
            now = time.monotonic()
            self.outbox.write(self.fanout.idle_frames(now, server.heartbeat_s))
            self.builds.tidy(now)
            self.slow.tick(self.sessions, now)

    def _catch_up_drained(self, session: Session, member: Member) -> None:
        """A lagging subscription's buffer drained: catch it up from the log, then live."""
        epoch = self.fanout.symbols[member.group.symbol].epoch or ""
        session.cancel(member.sub)
        resume = ResumeRequest(epoch, member.position)
        session.start_catch_up(
            member.sub,
            lambda: self.catchup.run(session.ws, member, member.generation, None, resume),
            f"signalpush-slow-{member.sub}",
        )

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background, kept referenced until it ends (HTTP routes use it)."""
        self._spawn(coroutine)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- introspection -----------------------------------------------------------------------

    def gauges(self) -> dict[str, tuple[float, str]]:
        subscriptions = sum(len(s.members) for s in self.sessions.values())
        return {
            "connections": (len(self.sessions), "Open websocket connections"),
            "subscriptions": (subscriptions, "Subscriptions across connections"),
            "groups": (len(self.fanout.groups), "Subscription groups (symbol, filter)"),
            "symbols": (len(self.fanout.symbols), "Symbols with live subscriptions"),
            "lagging_connections": (len(self.slow.lagging), "Subscriptions paused for a full send buffer"),
            "bus_up": (1.0 if self.bus.up else 0.0, "1 while the Redis bus is connected"),
            "wall_displays": (len(self.displays.sockets), "Wall displays reporting on this process"),
            **self.builds.budget.gauges(),
            "replays": (self.replays.running, "Replays of past windows running (the flight recorder)"),
        }
