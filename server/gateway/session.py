"""Per-connection state: its subscriptions, catch-up tasks and message-rate limit."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from websockets.asyncio.server import ServerConnection

from server.core.fanout import Member
from server.core.protocol import HistoryRequest

#: Subscribes and unsubscribes a connection may have waiting; past that a subscribe is ``busy``.
MAX_PENDING_OPS: Final = 64


class Admission(enum.Enum):
    """What to do with a client message: handle it, refuse it (``error rate_limited``), or close (1008)."""

    ACCEPT = "accept"
    REFUSE = "refuse"
    FLOOD = "flood"


class TokenBucket:
    """``rate`` messages per second with bursts of ``burst``, and a flood rule whose violations decay.

    A message finding no token is refused; each refusal adds one to a violation level that
    drains at ``rate / 2`` per second. A connection is flooding when the level passes
    ``burst``: only a sustained excess gets there (docs/protocol.md gives the times), so a
    client sending bursts a little over its bucket now and then is never closed.
    """

    __slots__ = ("_burst", "_clock", "_rate", "_stamp", "_tokens", "_violations")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._violations = 0.0
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Take a token if there is one (no verdict on floods: see :meth:`admit`)."""
        return self.admit() is Admission.ACCEPT

    def admit(self) -> Admission:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._violations = max(0.0, self._violations - elapsed * self._rate / 2)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Admission.ACCEPT
        self._violations += 1.0
        return Admission.FLOOD if self._violations > self._burst else Admission.REFUSE

    @property
    def violations(self) -> float:
        """The violation level (refusals not yet forgiven) as of the last message."""
        return self._violations


@dataclass(eq=False)
class Session:
    """One websocket connection and what it subscribed to."""

    ws: ServerConnection
    bucket: TokenBucket
    #: sub (group id) -> this connection's membership in it
    members: dict[str, Member] = field(default_factory=dict)
    #: sub -> the history the client asked for (re-sent after a reset)
    history: dict[str, HistoryRequest | None] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    address: str = ""
    #: Since when the send buffer has stayed above its high-water mark (None: it is not).
    stalled_since: float | None = None
    #: Being closed as stalled (closed once).
    closing: bool = False
    _catchup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Subscribes and unsubscribes run one after the other, off the connection's reader, so a
    #: subscribe waiting for Redis holds up no ping (docs/protocol.md, "Order of replies").
    _ops_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _ops: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def pending_ops(self) -> int:
        """Subscribes and unsubscribes received and not finished yet."""
        return len(self._ops)

    def in_order(self, op: Callable[[], Awaitable[None]]) -> bool:
        """Run ``op`` after this connection's earlier ordered ops, without holding up its reader;
        False (nothing started) when ``MAX_PENDING_OPS`` already wait."""
        if len(self._ops) >= MAX_PENDING_OPS:
            return False

        async def in_turn() -> None:
            async with self._ops_lock:
                await op()

        task = asyncio.create_task(in_turn())
        self._ops.add(task)
        task.add_done_callback(self._ops.discard)
        return True

    def cancel_ops(self) -> None:
        """The connection is gone: its waiting and running ops stop."""
        for task in list(self._ops):
            task.cancel()

    def cancel(self, sub: str) -> None:
        task = self.tasks.pop(sub, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def start_catch_up(self, sub: str, catch_up: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``catch_up`` (as the task of ``sub``) after this connection's earlier catch-ups.

        Each catch-up builds a history frame and waits for it to drain; run side by side, a
        client that subscribes 100 times and stops reading would hold 100 of them in memory.
        """

        async def in_turn() -> None:
            async with self._catchup_lock:
                await catch_up()

        self.tasks[sub] = asyncio.create_task(in_turn(), name=name)
