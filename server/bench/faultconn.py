"""The soak's misbehaving connections: one that stops reading, one that floods.

Neither is checked for what it receives; what matters is that the server closes them
(the slow-client and message-flood rules, docs/protocol.md) and nobody else notices.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Final

from server.bench.wsclient import RawWebSocket, open_websocket

#: (host, port, path, timeout_s) of the server under test.
Address = tuple[str, int, str, float]


class FaultConn:
    """A misbehaving connection of the soak (it stops reading, or floods): when the server closed it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.opened_ns = time.time_ns()
        self.closed_ns = 0
        self.close_code: int | None = None
        self.messages = 0
        self.sent = 0
        self.ws: RawWebSocket
        self.watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, name: str, address: Address, receive_buffer: int | None = None) -> FaultConn:
        """Connect; with ``receive_buffer`` the kernel's receive buffer is set that small before
        connecting (the window is agreed at connect), as on a slow far-away client."""
        host, port, path, timeout_s = address
        conn = cls(name)
        sock = None
        if receive_buffer is not None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout_s)
            except BaseException:
                sock.close()
                raise
        conn.ws = await open_websocket(host, port, path, conn.on_message, conn.on_close, timeout_s, sock=sock)
        return conn

    def on_message(self, payload: bytes, received_ns: int) -> None:
        self.messages += 1

    def on_close(self, code: int | None) -> None:
        self.closed_ns = time.time_ns()
        self.close_code = code

    def to_json(self) -> dict[str, Any]:
        return {
            "closed_after_s": round((self.closed_ns - self.opened_ns) / 1e9, 1) if self.closed_ns else None,
            "close_code": self.close_code,
            "messages": self.messages,
            "sent": self.sent,
        }


async def stall(address: Address, command: dict[str, Any]) -> FaultConn:
    """Subscribe with history under many filters (each its own group and history frame), then stop reading."""
    # A small receive window: loopback's kernel buffers would otherwise absorb megabytes first.
    conn = await FaultConn.open("stalled", address, receive_buffer=4096)
    symbols: list[str] = command["symbols"]
    for index in range(int(command.get("subscriptions", 40))):
        request = {
            "op": "subscribe",
            "symbol": symbols[index % len(symbols)],
            "filter": {"min_confidence": round(index / 1000, 3)},
            "history": {"minutes": int(command.get("history_minutes", 60))},
        }
        conn.ws.send_text(json.dumps(request))
    assert conn.ws.transport is not None
    conn.ws.transport.pause_reading()
    conn.watch = asyncio.create_task(_watch_tcp_state(conn))
    return conn


#: Linux ``tcpi_state`` values (include/net/tcp_states.h).
_TCP_ESTABLISHED: Final = 1


async def _watch_tcp_state(conn: FaultConn, every_s: float = 0.25) -> None:
    """Notice the server closing a connection this side no longer reads, from the kernel's TCP state.

    With reading paused asyncio sees neither the FIN nor the RST; TCP_INFO does.
    """
    assert conn.ws.transport is not None
    sock = conn.ws.transport.get_extra_info("socket")
    while not conn.closed_ns:
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except OSError:
            state = 0
        if state != _TCP_ESTABLISHED:
            conn.closed_ns = time.time_ns()
            return
        await asyncio.sleep(every_s)


async def flood(conn: FaultConn, seconds: float) -> dict[str, Any]:
    """Send pings as fast as the loop allows for ``seconds`` or until the server closes."""
    deadline = time.monotonic() + seconds
    ping = json.dumps({"op": "ping"})
    while conn.ws.open and time.monotonic() < deadline:
        for _ in range(100):
            conn.ws.send_text(ping)
        conn.sent += 100
        await asyncio.sleep(0)
    closed_by_server = not conn.ws.open
    conn.ws.close()
    return {"sent": conn.sent, "closed_by_server": closed_by_server}
