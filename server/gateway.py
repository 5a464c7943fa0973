"""The websocket gateway: connections, the subscribe flow, and writing what the fan-out core builds.

Flow of a subscription (the gap-free invariant, DESIGN.md §2): join the group as
LOADING (the group's batches are kept for it), make sure the symbol's live channel is
joined and the live path primed, send ``subscribed``, read the backfill or resume
position from history, send it, then replay the kept batches from the next seq on and
go live. Holes in the live stream are filled from the log before anything later is
sent; an epoch change sends ``reset`` and a fresh window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, cast

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from publishers import keys
from publishers.config import Settings
from publishers.connection import TRANSIENT_ERRORS, async_client, is_cluster_url
from publishers.errors import BusError, ProtocolError, SignalpushError
from publishers.script import parse_live_message
from server.bus import Batch, RedisBus
from server.bus_cluster import ShardedBus
from server.fanout import (
    Diverged,
    EpochChanged,
    Fanout,
    GroupBatch,
    Hole,
    Member,
    MemberState,
    Message,
    Outgoing,
)
from server.filters import EVERYTHING
from server.history_source import HistorySource, LogHistory, read_meta
from server.metrics import GatewayMetrics
from server.protocol import (
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_SLOW,
    CLOSE_UNSUPPORTED,
    HistoryRequest,
    Limits,
    ResumeRequest,
    Subscribe,
    Unsubscribe,
    error_frame,
    events_frame,
    hello_frame,
    history_frame,
    now_ms,
    parse_client_frame,
    pong_frame,
    reset_frame,
    status_frame,
    subscribed_frame,
    unsubscribed_frame,
)
from server.session import Session, TokenBucket

log = logging.getLogger(__name__)

#: Failures of Redis that end one operation, not the gateway.
RECOVERABLE: tuple[type[BaseException], ...] = (BusError, *TRANSIENT_ERRORS)
CATCHUP_ERRORS: tuple[type[BaseException], ...] = (SignalpushError, *TRANSIENT_ERRORS)
#: Events per frame when replaying a resume or a catch-up.
CATCHUP_FRAME_ITEMS = 500


class Gateway:
    """Serve wire protocol v1 on ``/ws`` (and the HTTP routes) for one process."""

    def __init__(self, settings: Settings, *, redis_url: str, history: HistorySource | None = None) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.redis: aioredis.Redis = async_client(
            redis_url, socket_timeout_s=settings.redis.socket_timeout_s, name="signalpush-gateway"
        )
        self.history: HistorySource = history or LogHistory(self.redis)
        self.fanout = Fanout()
        self.metrics = GatewayMetrics()
        bus_class = ShardedBus if is_cluster_url(redis_url) else RedisBus
        self.bus: RedisBus | ShardedBus = bus_class(
            redis_url,
            on_batch=self._on_batch,
            on_state=self._on_bus_state,
            batch_window_s=settings.server.batch_ms / 1000,
        )
        self.sessions: dict[ServerConnection, Session] = {}
        #: Open connections per remote address (for server.max_connections_per_ip).
        self.per_address: dict[str, int] = {}
        self.limits = Limits(
            max_minutes=settings.history.max_minutes,
            max_points=settings.history.max_points * 10,
            default_points=settings.history.max_points,
        )
        self.http: Any = None  # server.http.HttpRoutes, set by the runner
        self._primed: dict[str, asyncio.Event] = {}
        self._held: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
        self._lagging: set[Member] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None
        self._bus_was_up = False
        self._stopping = False
        self.started_at = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------

    async def start(
        self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False
    ) -> int:
        """Listen and start the bus; returns the bound port."""
        server = self.settings.server
        self._tasks = [
            asyncio.create_task(self.bus.run(), name="signalpush-bus"),
            asyncio.create_task(self._housekeeping(), name="signalpush-housekeeping"),
        ]
        self._server = await serve(
            self._handle,
            host or server.host,
            server.port if port is None else port,
            process_request=self._process_request,
            compression="deflate" if server.compression else None,
            max_size=server.max_frame_bytes,
            ping_interval=server.heartbeat_s,
            ping_timeout=server.heartbeat_s,
            close_timeout=2,
            max_queue=64,
            reuse_port=reuse_port,
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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.redis.aclose()

    # -- connections ----------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.http is not None:
            response: Response | None = await self.http.handle(connection, request)
            return response
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
        try:
            await ws.send(hello_frame(server.heartbeat_s))
            if not self.bus.up and self._bus_was_up:
                await ws.send(status_frame(False))
            async for message in ws:
                if not isinstance(message, str):
                    await ws.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
                    break
                if not session.bucket.take():
                    session.rate_violations += 1
                    if session.rate_violations > server.message_burst:
                        await ws.close(CLOSE_POLICY, "message flood")
                        break
                    await self._error(ws, None, "rate_limited", f"over {server.message_rate:g} messages/s")
                    continue
                await self._dispatch(session, message)
        except ConnectionClosed:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            self._drop_session(session)

    async def _dispatch(self, session: Session, text: str) -> None:
        ws = session.ws
        try:
            message = parse_client_frame(text, self.limits)
        except ProtocolError as exc:
            await self._error(ws, exc.ref, exc.code, exc.message)
            return
        try:
            if isinstance(message, Subscribe):
                await self._subscribe(session, message)
            elif isinstance(message, Unsubscribe):
                self._unsubscribe(session, message)
            else:
                await ws.send(pong_frame(message.ref))
        except ProtocolError as exc:
            await self._error(ws, message.ref, exc.code, exc.message)

    async def _error(self, ws: ServerConnection, ref: str | None, code: str, message: str) -> None:
        self.metrics.protocol_errors += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(error_frame(ref, code, message))

    def _schedule_expiry(self, ws: ServerConnection) -> asyncio.TimerHandle | None:
        """Close the connection with 4003 the moment its token expires."""
        if self.http is None:
            return None
        left = self.http.principal_of(ws).seconds_left()
        if left is None:
            return None
        return asyncio.get_running_loop().call_later(
            max(0.0, left), lambda: self._spawn(ws.close(CLOSE_TOKEN_EXPIRED, "token expired"))
        )

    def _drop_session(self, session: Session) -> None:
        self.sessions.pop(session.ws, None)
        count = self.per_address.get(session.address, 1) - 1
        if count > 0:
            self.per_address[session.address] = count
        else:
            self.per_address.pop(session.address, None)
        if self.http is not None:
            self.http.forget(session.ws)
        for sub in list(session.members):
            self._leave(session, sub)

    def _leave(self, session: Session, sub: str) -> None:
        session.cancel(sub)
        member = session.members.pop(sub, None)
        session.history.pop(sub, None)
        if member is None:
            return
        self._lagging.discard(member)
        symbol = member.group.symbol
        if self.fanout.leave(member):
            self.bus.unsubscribe(symbol)
            self._primed.pop(symbol, None)
            self._held.pop(symbol, None)

    def _unsubscribe(self, session: Session, message: Unsubscribe) -> None:
        if message.sub not in session.members:
            raise ProtocolError("bad_request", f"sub: no subscription {message.sub!r} on this connection")
        self._leave(session, message.sub)
        self._send_now(session.ws, unsubscribed_frame(message.ref, message.sub))

    # -- the subscribe flow -----------------------------------------------------------

    async def _subscribe(self, session: Session, request: Subscribe) -> None:
        if self.http is not None:
            self.http.authorize_symbol(session.ws, request.symbol)
        member, new_symbol = self.fanout.join(session.ws, request.symbol, request.filter, time.monotonic())
        sub = member.sub
        if sub not in session.members and len(session.members) >= self.settings.server.max_subscriptions:
            self.fanout.leave(member)
            raise ProtocolError("too_many", f"at most {self.settings.server.max_subscriptions} subscriptions")
        session.cancel(sub)
        session.members[sub] = member
        session.history[sub] = request.history
        try:
            await self._ensure_primed(request.symbol, new_symbol)
        except RECOVERABLE as exc:
            self._leave(session, sub)
            raise ProtocolError("internal", f"the event bus is unavailable: {exc}") from None
        state = self.fanout.symbols[request.symbol]
        await session.ws.send(
            subscribed_frame(request.ref, sub, request.symbol, state.epoch, member.position)
        )
        session.tasks[sub] = asyncio.create_task(
            self._catch_up(session, member, member.generation, request.history, request.resume),
            name=f"signalpush-catchup-{sub}",
        )

    async def _ensure_primed(self, symbol: str, new_symbol: bool) -> None:
        event = self._primed.get(symbol)
        if event is None or new_symbol:
            event = self._primed[symbol] = asyncio.Event()
            await self.bus.subscribe(symbol)
            epoch, seq = await read_meta(self.redis, symbol)
            self.fanout.prime(symbol, epoch, seq)
            held = self._held.pop(symbol, [])
            if held:
                await self._process(symbol, held)
            event.set()
        else:
            await asyncio.wait_for(event.wait(), self.settings.redis.socket_timeout_s * 2)

    async def _catch_up(
        self,
        session: Session,
        member: Member,
        generation: int,
        history: HistoryRequest | None,
        resume: ResumeRequest | None,
        reset_reason: str | None = None,
    ) -> None:
        """Bring one member from nothing (or a resume position) to live."""
        ws, group = session.ws, member.group
        try:
            while True:
                if reset_reason is not None:
                    await ws.send(reset_frame(group.id, group.symbol, reset_reason))
                    self.metrics.resets += 1
                    history = history or self._default_history()
                position = member.position
                if resume is not None and reset_reason is None:
                    after = await self.history.after(
                        group.symbol, group.filter, epoch=resume.epoch, seq=resume.seq
                    )
                    if after.reset_reason is not None:
                        reset_reason, resume = after.reset_reason, None
                        continue
                    await self._send_events(
                        ws, group.id, group.symbol, after.epoch, resume.seq, after.to_seq, after.events
                    )
                    position = after.to_seq
                elif history is not None:
                    window = await self.history.window(
                        group.symbol, group.filter, minutes=history.minutes, max_points=history.max_points
                    )
                    figure = await self._figure(group.symbol, window) if history.figure else None
                    await ws.send(
                        history_frame(
                            group.id,
                            group.symbol,
                            window.epoch,
                            window.to_seq,
                            window.data,
                            reset=reset_reason is not None,
                            truncated=window.truncated,
                            omitted=window.omitted,
                            figure=figure,
                        )
                    )
                    position = window.to_seq
                out = self.fanout.finish_loading(member, position, generation)
                if out is not None:
                    self._write(out)
                    return
                # Its kept batches overflowed while loading: continue from where it got to.
                resume, reset_reason = (
                    ResumeRequest(self.fanout.symbols[group.symbol].epoch or "", position),
                    None,
                )
        except ConnectionClosed:
            return
        except CATCHUP_ERRORS as exc:
            log.warning("catch-up failed", extra={"sub": group.id, "symbol": group.symbol, "error": str(exc)})
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CLOSE_RESTART, "history unavailable, resume later")

    async def _figure(self, symbol: str, window: Any) -> dict[str, Any] | None:
        if self.http is None:
            return None
        figure: dict[str, Any] | None = await self.http.figure_for(symbol, window)
        return figure

    def _default_history(self) -> HistoryRequest:
        history = self.settings.history
        return HistoryRequest(history.default_minutes, history.max_points)

    async def _send_events(
        self,
        ws: ServerConnection,
        sub: str,
        symbol: str,
        epoch: str | None,
        after_seq: int,
        to_seq: int,
        events: list[tuple[int, str]],
    ) -> None:
        start = after_seq
        for index in range(0, max(len(events), 1), CATCHUP_FRAME_ITEMS):
            chunk = events[index : index + CATCHUP_FRAME_ITEMS]
            last_chunk = index + CATCHUP_FRAME_ITEMS >= len(events)
            end = to_seq if last_chunk else chunk[-1][0]
            if end <= start:
                return
            await ws.send(events_frame(sub, symbol, epoch, start + 1, end, [raw for _, raw in chunk]))
            start = end

    # -- the live path ------------------------------------------------------------------

    async def _on_batch(self, batch: Batch) -> None:
        per_symbol: dict[str, list[tuple[str, int, str]]] = {}
        oldest = 0
        for channel, payload in batch:
            epoch, seq, published, raw = parse_live_message(payload)
            per_symbol.setdefault(keys.symbol_of(channel), []).append((epoch, seq, raw))
            oldest = oldest or published

        for symbol, messages in per_symbol.items():
            if symbol not in self.fanout.symbols:
                continue
            if not self.fanout.is_primed(symbol):
                self._held[symbol].extend(messages)
                continue
            await self._process(symbol, messages)
        if oldest:
            age_ms = now_ms() - oldest
            if age_ms >= 0:
                self.metrics.latency.observe(age_ms / 1000)

    async def _process(self, symbol: str, messages: list[tuple[str, int, str]]) -> None:
        now = time.monotonic()
        for epoch, run in itertools.groupby(messages, key=lambda m: m[0]):
            pending: list[Message] = [(seq, raw) for _, seq, raw in run]
            while symbol in self.fanout.symbols:
                checked = self.fanout.check(symbol, epoch, pending)
                if isinstance(checked, EpochChanged):
                    self._reset_symbol(symbol, checked.epoch, "epoch changed")
                    continue
                if isinstance(checked, Diverged):
                    self._rewind(symbol, epoch, checked.seq)
                    continue
                if isinstance(checked, Hole):
                    filled = await self._fill(symbol, epoch, checked)
                    if filled is None:
                        self._reset_symbol(symbol, epoch, "events lost on the bus could not be recovered")
                        self.fanout.symbols[symbol].last_seq = checked.last
                        continue
                    pending = sorted({**dict(filled), **dict(pending)}.items())
                    continue
                self._write(self.fanout.ingest(symbol, epoch, checked, now))
                self.metrics.events_in += len(checked)
                break

    async def _fill(self, symbol: str, epoch: str, hole: Hole) -> list[Message] | None:
        wanted = list(range(hole.first, hole.last + 1))
        entries = await self.history.read_log(symbol, hole.first, hole.last)
        if [seq for seq, _ in entries] != wanted:
            after = await self.history.after(symbol, EVERYTHING, epoch=epoch, seq=hole.first - 1)
            entries = [(seq, raw) for seq, raw in after.events if seq <= hole.last]
            if after.reset_reason is not None or [seq for seq, _ in entries] != wanted:
                log.error(
                    "hole could not be filled",
                    extra={"symbol": symbol, "first": hole.first, "last": hole.last},
                )
                return None
        self.metrics.gaps_filled += 1
        self.metrics.gap_events_filled += len(entries)
        return entries

    def _rewind(self, symbol: str, epoch: str, seq: int) -> None:
        """Redis lost writes we already sent (a failover): every subscriber gets reset and a fresh window."""
        log.warning("history rewritten in Redis; resetting subscribers", extra={"symbol": symbol, "seq": seq})
        self._reset_symbol(symbol, epoch, "events lost in a Redis failover")
        state = self.fanout.symbols[symbol]
        state.last_seq = seq - 1
        state.recent = {s: raw for s, raw in state.recent.items() if s < seq}

    def _reset_symbol(self, symbol: str, epoch: str, reason: str) -> None:
        for member in self.fanout.reset_symbol(symbol, epoch):
            session = self.sessions.get(_ws(member))
            if session is None:
                continue
            session.cancel(member.sub)
            self._lagging.discard(member)
            session.tasks[member.sub] = asyncio.create_task(
                self._catch_up(
                    session, member, member.generation, session.history.get(member.sub), None, reason
                ),
                name=f"signalpush-reset-{member.sub}",
            )

    async def _on_bus_state(self, up: bool) -> None:
        if up and self._bus_was_up:
            self.metrics.bus_reconnects += 1
            await self._resync()
        if up or self._bus_was_up:
            self._broadcast_all(status_frame(up))
        self._bus_was_up = self._bus_was_up or up

    async def _resync(self) -> None:
        """After a reconnect: fill each symbol from the log up to its current seq (or reset its epoch)."""
        for symbol in list(self.fanout.symbols):
            state = self.fanout.symbols.get(symbol)
            if state is None or state.last_seq is None:
                continue
            try:
                epoch, seq = await read_meta(self.redis, symbol)
            except RECOVERABLE as exc:
                log.warning("resync failed", extra={"symbol": symbol, "error": str(exc)})
                continue
            if epoch is None:
                continue
            if state.epoch is not None and epoch != state.epoch:
                self._reset_symbol(symbol, epoch, "epoch changed")
                continue
            last = state.last_seq
            # Compare what we sent lately with what Redis holds now: a failover may have lost writes.
            since = max(min(state.recent, default=last + 1), 1)
            stored = await self.history.read_log(symbol, since, last) if since <= last else []
            diverged = state.diverges(stored)
            if diverged is None and seq < last:
                diverged = seq + 1
            if diverged is not None:
                self._rewind(symbol, epoch, diverged)
                last = diverged - 1
            if seq > last:
                await self._process(symbol, await self._tail(symbol, epoch, last, seq))

    async def _tail(self, symbol: str, epoch: str, after: int, last: int) -> list[tuple[str, int, str]]:
        filled = await self._fill(symbol, epoch, Hole(after + 1, last))
        if filled is None:
            self._reset_symbol(symbol, epoch, "events lost on the bus could not be recovered")
            return []
        return [(epoch, seq, raw) for seq, raw in filled]

    # -- writing ---------------------------------------------------------------------------

    def _write(self, out: Outgoing) -> None:
        limit = self.settings.server.max_buffer_bytes
        now = time.monotonic()
        metrics = self.metrics
        for batch in out.broadcasts:
            live = cast(set[ServerConnection], batch.group.live)
            slow = [ws for ws in live if _buffered(ws) > limit]
            for ws in slow:
                self._lag(batch, ws, now)
            data = batch.text.encode()
            broadcast(live, data, text=True)
            metrics.frames_out += 1
            metrics.deliveries += len(live)
            metrics.bytes_out += len(data) * len(live)
        for member, text in out.sends:
            ws = _ws(member)
            if _buffered(ws) > limit:
                self.fanout.mark_lagging(member, _as_batch(member, text), now)
                self._lagging.add(member)
                continue
            self._send_now(ws, text)

    def _lag(self, batch: GroupBatch, ws: Any, now: float) -> None:
        member = batch.group.members[ws]
        self.fanout.mark_lagging(member, batch, now)
        self._lagging.add(member)

    def _send_now(self, ws: ServerConnection, text: str) -> None:
        data = text.encode()
        broadcast([ws], data, text=True)
        self.metrics.frames_out += 1
        self.metrics.deliveries += 1
        self.metrics.bytes_out += len(data)

    def _broadcast_all(self, text: str) -> None:
        broadcast(list(self.sessions), text)

    # -- housekeeping: quiet groups, slow clients -------------------------------------------

    async def _housekeeping(self) -> None:
        server = self.settings.server
        while True:
            await asyncio.sleep(min(0.25, server.heartbeat_s / 4))
            now = time.monotonic()
            self._write(self.fanout.idle_frames(now, server.heartbeat_s))
            for member in list(self._lagging):
                self._check_lagging(member, now)

    def _check_lagging(self, member: Member, now: float) -> None:
        session = self.sessions.get(_ws(member))
        if session is None or member.state is not MemberState.LAGGING:
            self._lagging.discard(member)
            return
        ws = session.ws
        if now - member.lagging_since > self.settings.server.slow_client_timeout_s:
            self._lagging.discard(member)
            self.metrics.slow_closes += 1
            self._spawn(ws.close(CLOSE_TOO_SLOW, "too slow: resume"))
            return
        if _buffered(ws) <= self.settings.server.max_buffer_bytes // 4:
            self._lagging.discard(member)
            self.metrics.slow_catchups += 1
            self.fanout.restart_loading(member)
            epoch = self.fanout.symbols[member.group.symbol].epoch or ""
            session.cancel(member.sub)
            session.tasks[member.sub] = asyncio.create_task(
                self._catch_up(
                    session, member, member.generation, None, ResumeRequest(epoch, member.position)
                ),
                name=f"signalpush-slow-{member.sub}",
            )

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
            "lagging_connections": (len(self._lagging), "Subscriptions paused for a full send buffer"),
            "bus_up": (1.0 if self.bus.up else 0.0, "1 while the Redis bus is connected"),
        }


def _ws(member: Member) -> ServerConnection:
    return cast(ServerConnection, member.conn)


def _buffered(ws: ServerConnection) -> int:
    transport = ws.transport
    return transport.get_write_buffer_size() if transport is not None else 0


def _as_batch(member: Member, text: str) -> GroupBatch:
    frame = json.loads(text)
    return GroupBatch(member.group, frame.get("epoch"), frame["from_seq"], frame["to_seq"], (), text)
