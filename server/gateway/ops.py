"""The client frames' ops on one gateway: ping, subscribe and unsubscribe (live, replay, perf),
replay_control, display and ack (docs/protocol.md).

Flow of a subscription (the gap-free invariant, docs/design.md, the gap-free invariant): join the group as
LOADING (the group's batches are kept for it), make sure the symbol's live channel is
joined and the live path primed, send ``subscribed``, read the backfill or resume
position from history, send it, then replay the kept batches from the next seq on and
go live. Subscribes and unsubscribes run in order with the connection's others but off its
reader (server/gateway/session.py), so a ping behind a subscribe waiting for Redis is
answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from publishers.events import now_ms
from server.core.fanout import Fanout
from server.core.perfwire import PERF_SUB, PerfSubscribe
from server.core.protocol import (
    Ack,
    Display,
    Limits,
    Ref,
    Subscribe,
    Unsubscribe,
    acked_frame,
    error_frame,
    parse_client_frame,
    pong_frame,
    resolve_resume,
    shown,
    subscribed_frame,
    unsubscribed_frame,
)
from server.core.replay import ReplayControl
from server.errors import ProtocolError, SignalpushError
from server.gateway.builds import HistoryBuilds
from server.gateway.catchup import CatchUp
from server.gateway.displays import DisplayHub
from server.gateway.livepath import RECOVERABLE, LivePath, refuse_if_bus_down
from server.gateway.metrics import GatewayMetrics
from server.gateway.outbox import Outbox
from server.gateway.perf import PerfFeed
from server.gateway.ports import Acknowledger, Authorizer, Bus
from server.gateway.replay import Replays
from server.gateway.session import Session
from server.gateway.slowclients import SlowClients
from server.logs import RateLimitedLog
from server.settings import Settings

log = logging.getLogger(__name__)


class ClientOps:
    """What a connection's text frames ask for, answered with the gateway's collaborators."""

    def __init__(
        self,
        settings: Settings,
        *,
        limits: Limits,
        access: Authorizer,
        fanout: Fanout,
        bus: Bus,
        live: LivePath,
        outbox: Outbox,
        metrics: GatewayMetrics,
        slow: SlowClients,
        builds: HistoryBuilds,
        catchup: CatchUp,
        replays: Replays,
        displays: DisplayHub,
        alerts: Acknowledger | None,
        perf: PerfFeed | None,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        """``alerts``: acknowledges alerts for the ``ack`` op (None: it answers bad_request).
        ``perf``: the live signal-quality feed of the ``perf`` op (None: the op is refused)."""
        self.settings = settings
        self.limits = limits
        self.access = access
        self.fanout = fanout
        self.bus = bus
        self.live = live
        self.outbox = outbox
        self.metrics = metrics
        self.slow = slow
        self.builds = builds
        self.catchup = catchup
        self.replays = replays
        self.displays = displays
        self.alerts = alerts
        self.perf = perf
        self._spawn = spawn
        self._throttle = RateLimitedLog(log)

    def __repr__(self) -> str:
        return f"ClientOps(alerts={self.alerts is not None}, perf={self.perf is not None})"

    # -- dispatch ---------------------------------------------------------------------

    async def dispatch_safely(self, session: Session, text: str) -> None:
        """:meth:`dispatch` with a last resort: a bug answers ``error internal``, the client stays."""
        try:
            await self.dispatch(session, text)
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._throttle.warning(
                f"frame {type(exc).__name__}",
                "client frame crashed its handler",
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
            )
            await self.error(session.ws, None, "internal", "internal error while handling this frame")

    async def dispatch(self, session: Session, text: str) -> None:
        """Parse one text frame of ``session`` and answer it (or start its ordered op)."""
        ws = session.ws
        try:
            message = parse_client_frame(text, self.limits)
        except ProtocolError as exc:
            await self.error(ws, exc.ref, exc.code, exc.message)
            return
        if isinstance(message, ReplayControl):
            try:
                self.replays.control(session, message)
            except ProtocolError as exc:
                await self.error(ws, message.ref, exc.code, exc.message)
            return
        if isinstance(message, Subscribe | Unsubscribe | PerfSubscribe):
            if not session.in_order(lambda: self._ordered(session, message)):
                await self.error(ws, message.ref, "busy", "too many subscribes waiting on this connection")
        elif isinstance(message, Display):
            try:
                await self.displays.report(ws, self.access.principal_of(ws).name, message.report)
            except ProtocolError as exc:
                await self.error(ws, message.ref, exc.code, exc.message)
        elif isinstance(message, Ack):
            await self._ack(ws, message)
        else:
            await ws.send(pong_frame(message.ref, now_ms()))

    async def _ordered(self, session: Session, message: Subscribe | Unsubscribe | PerfSubscribe) -> None:
        """A subscribe or unsubscribe, in order with the connection's others but off its reader (a
        ping behind a subscribe waiting for Redis is answered at once); a bug answers internal."""
        try:
            if isinstance(message, Subscribe) and message.replay is not None:
                self.access.authorize_symbol(session.ws, message.symbol)
                await self.replays.start(session, message)
            elif isinstance(message, Subscribe):
                await self._subscribe(session, message)
            elif isinstance(message, PerfSubscribe):
                await self._perf(session, message)
            elif self.replays.stop(session, message.sub):
                self.outbox.send_now(session.ws, unsubscribed_frame(message.ref, message.sub))
            else:
                self._unsubscribe(session, message)
        except ProtocolError as exc:
            await self.error(session.ws, message.ref, exc.code, exc.message)
        except ConnectionClosed:
            pass
        except Exception as exc:
            self._throttle.warning(
                f"frame {type(exc).__name__}", "client frame crashed its handler", error=str(exc)
            )
            await self.error(session.ws, message.ref, "internal", "internal error while handling this frame")

    def subscribe_in_order(self, session: Session, message: Subscribe) -> None:
        """A subscribe the server makes for the client (a replay handed over to live)."""
        if not session.in_order(lambda: self._ordered(session, message)):
            self._spawn(self.error(session.ws, message.ref, "busy", "too many subscribes waiting"))

    async def error(self, ws: ServerConnection, ref: Ref, code: str, message: str) -> None:
        """Answer ``error`` (counted as a protocol error); a closed connection is not told."""
        self.metrics.protocol_errors += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(error_frame(ref, code, message))

    # -- the ops ----------------------------------------------------------------------

    async def _ack(self, ws: ServerConnection, message: Ack) -> None:
        """The ``ack`` op (docs/alerts.md): the connection's token must read the alert's symbol."""
        if self.alerts is None:
            await self.error(ws, message.ref, "bad_request", "ack: this gateway has no alerts")
            return
        try:
            seq = await self.alerts.acknowledge_id(message.alert_id, self.access.principal_of(ws))
        except ProtocolError as exc:
            await self.error(ws, message.ref, exc.code, exc.message)
            return
        except SignalpushError as exc:
            await self.error(ws, message.ref, "internal", f"ack: {exc}")
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(acked_frame(message.ref, message.alert_id, seq))

    async def _perf(self, session: Session, request: PerfSubscribe) -> None:
        """The signal-quality stream (server/gateway/perf.py): every symbol, so every-symbol tokens only."""
        if self.perf is None:
            raise ProtocolError("bad_request", "perf: this gateway has no history database to follow")
        if self.access.principal_of(session.ws).patterns != ("*",):
            raise ProtocolError("forbidden", "perf: covers every symbol; this token may read only some")
        await self.perf.subscribe(session.ws, request, self.outbox.send_to)

    async def _subscribe(self, session: Session, request: Subscribe) -> None:
        self.access.authorize_symbol(session.ws, request.symbol)
        if request.history is not None:
            self.builds.budget.admit()  # error busy before anything is set up for it
        member, new_symbol = self.fanout.join(session.ws, request.symbol, request.filter, time.monotonic())
        sub = member.sub
        if sub not in session.members and len(session.members) >= self.settings.server.max_subscriptions:
            self.fanout.leave(member)
            raise ProtocolError("too_many", f"at most {self.settings.server.max_subscriptions} subscriptions")
        replaced = sub in session.members
        session.cancel(sub)
        session.members[sub] = member
        session.history[sub] = request.history
        try:
            refuse_if_bus_down(self.bus, self.live)
            await self._ensure_primed(request.symbol, new_symbol)
        except RECOVERABLE as exc:
            self.leave(session, sub)
            raise ProtocolError("internal", f"the event bus is unavailable: {exc}") from None
        state = self.fanout.symbols[request.symbol]
        await session.ws.send(
            subscribed_frame(
                request.ref,
                sub,
                request.symbol,
                state.epoch,
                member.position,
                member.group.filter.to_json(),
                replaced=replaced,
            )
        )
        history, resume = request.history, resolve_resume(request.resume, state.epoch)
        session.start_catch_up(
            sub,
            lambda: self.catchup.run(session.ws, member, member.generation, history, resume),
            f"signalpush-catchup-{sub}",
        )

    async def _ensure_primed(self, symbol: str, new_symbol: bool) -> None:
        await self.live.ensure_primed(
            symbol, new_symbol, self.bus.subscribe, self.settings.redis.socket_timeout_s * 2
        )

    def _unsubscribe(self, session: Session, message: Unsubscribe) -> None:
        if message.sub == PERF_SUB and self.perf is not None and self.perf.unsubscribe(session.ws):
            self.outbox.send_now(session.ws, unsubscribed_frame(message.ref, message.sub))
            return
        if message.sub not in session.members:
            raise ProtocolError(
                "bad_request", f"sub: no subscription {shown(message.sub)} on this connection"
            )
        self.leave(session, message.sub)
        self.outbox.send_now(session.ws, unsubscribed_frame(message.ref, message.sub))

    def leave(self, session: Session, sub: str) -> None:
        """End the live subscription ``sub`` of ``session`` (the symbol's channel too, if its last)."""
        session.cancel(sub)
        member = session.members.pop(sub, None)
        session.history.pop(sub, None)
        if member is None:
            return
        self.slow.forget(member)
        symbol = member.group.symbol
        if self.fanout.leave(member):
            self.bus.unsubscribe(symbol)
            self.live.forget(symbol)
