"""What the gateway needs from its collaborators, as small Protocols.

The runner (server/cli/runner.py, the one composition root) builds the collaborators and
hands them to :class:`server.gateway.server.Gateway`; the gateway never builds or patches
them. Tests hand in their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from server.gateway.auth import Principal
from server.gateway.bus import Batch
from server.history.source import Window


class Authorizer(Protocol):
    """Who each websocket connection is (set at the handshake) and what it may read."""

    def principal_of(self, ws: ServerConnection) -> Principal: ...

    def forget(self, ws: ServerConnection) -> None: ...

    def authorize_symbol(self, ws: ServerConnection, symbol: str) -> None:
        """Raise ProtocolError(forbidden) if ``ws`` may not read ``symbol``."""


class Acknowledger(Protocol):
    """Acknowledges active alerts (server/gateway/alert_api.py): the ``ack`` op."""

    async def acknowledge_id(self, alert_id: str, principal: Principal) -> int:
        """The seq of the ``acked`` event; ProtocolError not_found / forbidden."""
        ...


class FigureSource(Protocol):
    """The Plotly figure of a history window (None: this process builds no figures)."""

    async def figure_for(self, symbol: str, window: Window) -> dict[str, Any] | None: ...


class Bus(Protocol):
    """The Redis listener feeding the live path (RedisBus, ShardedBus)."""

    up: bool

    def is_healthy(self, max_silence_s: float) -> bool: ...

    async def run(self) -> None: ...

    async def subscribe(self, symbol: str, timeout_s: float = ...) -> None: ...

    def unsubscribe(self, symbol: str) -> None: ...


#: Delivers one batch of live messages to the live path.
BatchHandler = Callable[[Batch], Awaitable[None]]
#: Told when the bus goes up (True) or down (False).
StateHandler = Callable[[bool], Awaitable[None]]
#: Builds the bus once the gateway's live path exists: (on_batch, on_state) -> bus.
BusFactory = Callable[[BatchHandler, StateHandler], Bus]

#: Answers an HTTP request on the gateway's port (None: go on with the /ws handshake).
RequestHandler = Callable[[ServerConnection, Request], Awaitable[Response | None]]


class NoFigures:
    """A process without a history store: subscriptions that ask for a figure get none."""

    async def figure_for(self, symbol: str, window: Window) -> dict[str, Any] | None:
        return None
