"""Per-connection state: its subscriptions, catch-up tasks and message-rate limit."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection

from server.fanout import Member
from server.protocol import HistoryRequest


class TokenBucket:
    """``rate`` messages per second with bursts of ``burst``."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


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
    rate_violations: int = 0
    address: str = ""

    def cancel(self, sub: str) -> None:
        task = self.tasks.pop(sub, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
