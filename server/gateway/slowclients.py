"""The slow-client rules, in one place.

A client that reads slower than its symbols publish is handled in two steps:

1. **Lagging** (a subscription): a broadcast finds more than ``server.max_buffer_bytes``
   waiting in the connection's buffer. The outbox skips it and calls :meth:`SlowClients.lag`;
   the core marks the member LAGGING at its position. Once the buffer drains below a quarter
   of the limit, the subscription catches up from the log (exactly once, no gap). Lagging for
   longer than ``server.slow_client_timeout_s``: the connection is closed (4008, "resume").
2. **Stalled** (a connection): its buffer stayed above the transport's high-water mark at
   every check for ``server.slow_client_timeout_s``: the client stopped reading. Closed the
   same way; if even the close frame cannot get through, the socket is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection

from server.core.fanout import Fanout, Member, MemberState
from server.core.protocol import CLOSE_TOO_SLOW
from server.gateway.metrics import GatewayMetrics
from server.gateway.outbox import buffered, ws_of
from server.gateway.session import Session


class SlowClients:
    """Lagging subscriptions and stalled connections: when to pause, catch up, or close."""

    def __init__(
        self,
        fanout: Fanout,
        metrics: GatewayMetrics,
        *,
        max_buffer_bytes: int,
        timeout_s: float,
        catch_up: Callable[[Session, Member], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        close_timeout_s: float,
    ) -> None:
        self.fanout = fanout
        self.metrics = metrics
        self.max_buffer_bytes = max_buffer_bytes
        self.timeout_s = timeout_s
        self._catch_up = catch_up
        self._spawn = spawn
        self._close_timeout_s = close_timeout_s
        #: Members paused because their send buffer was full.
        self.lagging: set[Member] = set()
        self._next_stall_check = 0.0

    def __repr__(self) -> str:
        return f"SlowClients(lagging={len(self.lagging)}, timeout_s={self.timeout_s})"

    def lag(self, member: Member, position: int, now: float) -> None:
        """The outbox skipped ``member`` (full buffer): pause it after ``position``."""
        self.fanout.mark_lagging(member, position, now)
        self.lagging.add(member)

    def forget(self, member: Member) -> None:
        """``member`` left, or its symbol was reset: no catch-up for it from here."""
        self.lagging.discard(member)

    def tick(self, sessions: Mapping[ServerConnection, Session], now: float) -> None:
        """Catch up drained subscriptions, close the too slow (called by the housekeeping)."""
        for member in list(self.lagging):
            self._check_lagging(sessions, member, now)
        if now >= self._next_stall_check:
            self._next_stall_check = now + 1.0
            for session in stalled_sessions(sessions.values(), now, self.timeout_s):
                self.close(session)

    def close(self, session: Session) -> None:
        """4008 (resume later); aborted if the close frame cannot get through the full buffer either."""
        if not session.closing:
            session.closing = True
            self.metrics.slow_closes += 1
            timeout = 2 * self._close_timeout_s
            self._spawn(close_stalled(session.ws, CLOSE_TOO_SLOW, "too slow: resume", timeout))

    def _check_lagging(
        self, sessions: Mapping[ServerConnection, Session], member: Member, now: float
    ) -> None:
        session = sessions.get(ws_of(member))
        if session is None or member.state is not MemberState.LAGGING:
            self.lagging.discard(member)
            return
        if now - member.lagging_since > self.timeout_s:
            self.lagging.discard(member)
            self.close(session)
            return
        if buffered(session.ws) <= self.max_buffer_bytes // 4:
            self.lagging.discard(member)
            self.metrics.slow_catchups += 1
            self.fanout.restart_loading(member)
            self._catch_up(session, member)


def write_blocked(ws: ServerConnection) -> bool:
    """The send buffer is above its high-water mark: writers wait until the client reads."""
    transport = ws.transport
    return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]


def stalled_sessions(
    sessions: Iterable[Session],
    now: float,
    timeout_s: float,
    blocked: Callable[[ServerConnection], bool] = write_blocked,
) -> list[Session]:
    """Sessions whose send buffer was above its high-water mark at every check for ``timeout_s``.

    Those clients stopped reading. Keepalive does not catch them: websockets' ping (and
    close) waits for the buffer to drain before its timeout starts, so without this such a
    connection, and what is buffered for it, would stay forever.
    """
    found: list[Session] = []
    for session in sessions:
        if session.closing:
            continue
        if not blocked(session.ws):
            session.stalled_since = None
        elif session.stalled_since is None:
            session.stalled_since = now
        elif now - session.stalled_since > timeout_s:
            found.append(session)
    return found


async def close_stalled(ws: ServerConnection, code: int, reason: str, timeout_s: float) -> None:
    """Close with ``code``; if the close frame cannot get through the full buffer in time, reset.

    The reset (SO_LINGER 0) frees the kernel's send buffer at once: a plain close would leave
    an orphan socket holding it (megabytes on loopback) until zero-window probing gives up.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await ws.close(code, reason)
    except TimeoutError:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()
