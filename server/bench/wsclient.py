"""A raw websocket client on ``asyncio.Protocol``: the bench's load connections.

Thousands of these live in one load process, so each is one small object with no task
of its own: the handshake is written by hand, server frames are parsed in place, pings
are answered with pongs, and every text message goes to a callback with the time it
was read. The same client talks to signalpush and to the baseline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Final

from websockets.speedups import apply_mask

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

#: on_message(payload, received_ns)
MessageCallback = Callable[[bytes, int], None]
#: on_close(close code or None when the connection dropped without a close frame)
CloseCallback = Callable[[int | None], None]


class HandshakeError(ConnectionError):
    """The server answered the upgrade request with something else than 101."""


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.3: clients always mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + mask + apply_mask(payload, mask)


class RawWebSocket(asyncio.Protocol):
    """One client connection. Create it with :func:`open_websocket`."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_message: MessageCallback,
        on_close: CloseCallback,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.host, self.port, self.path = host, port, path
        #: Extra handshake headers (``Host`` among them replaces the default one).
        self.headers = tuple(headers)
        self.on_message = on_message
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.open = False
        self.close_code: int | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._was_open = False
        self._closed = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        host = next((v for k, v in self.headers if k.lower() == "host"), f"{self.host}:{self.port}")
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers if k.lower() != "host")
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self._fail(HandshakeError(status.decode(errors="replace")))
                return
            del buffer[: end + 4]
            self.open = self._was_open = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse(time.time_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if self._was_open and not self._closed:
            self._closed = True
            self.on_close(self.close_code)

    # -- sending --------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(OP_TEXT, text.encode()))

    def close(self) -> None:
        """Close without waiting for the server's close frame (load clients do not linger)."""
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.transport.write(_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- frames ---------------------------------------------------------------------------

    def _parse(self, received_ns: int) -> None:
        buffer = self._buffer
        size = len(buffer)
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                head = 10
            if second & 0x80:
                self._fail(ConnectionError("the server sent a masked frame"))
                return
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buffer[pos + head : end])
            pos = end
            opcode = first & 0x0F
            if opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                if not first & 0x80:
                    self._fragments.append(payload)
                    continue
                if self._fragments:
                    payload = b"".join((*self._fragments, payload))
                    self._fragments = []
                self.on_message(payload, received_ns)
            elif opcode == OP_PING:
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.close()
                return
        if pos:
            del buffer[:pos]

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.abort()


async def open_websocket(
    host: str,
    port: int,
    path: str,
    on_message: MessageCallback,
    on_close: CloseCallback,
    timeout_s: float = 10.0,
    sock: socket.socket | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> RawWebSocket:
    """Connect (or use the connected ``sock``) and finish the handshake; raises OSError/ConnectionError/
    TimeoutError on failure."""
    loop = asyncio.get_running_loop()

    def factory() -> RawWebSocket:
        return RawWebSocket(host, port, path, on_message, on_close, headers)

    connecting = (
        loop.create_connection(factory, sock=sock) if sock else loop.create_connection(factory, host, port)
    )
    _, protocol = await asyncio.wait_for(connecting, timeout_s)
    try:
        await asyncio.wait_for(asyncio.shield(protocol.opened), timeout_s)
    except BaseException:
        protocol.abort()
        raise
    return protocol
