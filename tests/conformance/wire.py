"""An outsider's client, written from docs/protocol.md alone: two implementations (``websockets``
and ``aiohttp``) behind one small interface. It imports nothing from the project
(tests/conformance/test_outsider.py checks), so the document, not our client library, is
what the conformance tests exercise.

Both libraries keep a 1 MiB receive limit, the common default the protocol promises to stay
under (docs/protocol.md, "Frame size"); chunk frames are joined as the document says.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: The receive limit of both clients (Python websockets' default).
RECEIVE_LIMIT = 2**20
CLIENTS = ("websockets", "aiohttp")


class Conn:
    """One protocol connection: frames in arrival order (chunks joined), sizes of what came."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.sizes: list[int] = []  # bytes of every websocket message received
        self.chunks = 0
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._pieces: dict[Any, dict[int, str]] = {}
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    # -- what each library implements --------------------------------------------------------

    async def _open(self, url: str) -> None:
        raise NotImplementedError

    async def send_text(self, text: str) -> None:
        raise NotImplementedError

    async def send_binary(self, data: bytes) -> None:
        raise NotImplementedError

    async def _messages(self) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------

    async def start(self, url: str) -> Conn:
        await self._open(url)
        self._reader = asyncio.create_task(self._read())
        await self.expect(lambda f: f["op"] == "hello")
        return self

    async def _read(self) -> None:
        try:
            async for text in self._messages():
                self.sizes.append(len(text.encode()))
                self._take(json.loads(text))
        finally:
            self.closed.set()
            self._arrived.set()

    def _take(self, frame: dict[str, Any]) -> None:
        if frame.get("op") == "chunk":  # docs/protocol.md, "Frame size"
            self.chunks += 1
            pieces = self._pieces.setdefault(frame["id"], {})
            pieces[frame["index"]] = frame["data"]
            if len(pieces) < frame["count"]:
                return
            del self._pieces[frame["id"]]
            frame = json.loads("".join(pieces[i] for i in range(frame["count"])))
        self.frames.append(frame)
        self._arrived.set()

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.send_text(frame if isinstance(frame, str) else json.dumps(frame))

    async def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0, start: int = 0
    ) -> dict[str, Any]:
        """The first frame (from index ``start``) that ``predicate`` accepts, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames[start:]:
                if predicate(frame):
                    return frame
            if self.closed.is_set():
                raise AssertionError(f"connection closed ({self.close_code}) before the frame came")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching frame in {timeout}s; got {self.frames[-5:]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass

    async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send ``frame`` and return the reply carrying its ``ref``."""
        start = len(self.frames)
        await self.send(frame)
        ref = frame["ref"]
        return await self.expect(
            lambda f: "ref" in f and f["ref"] == ref and type(f["ref"]) is type(ref), timeout, start
        )

    def of(self, sub: str, op: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("sub") == sub and (op is None or f["op"] == op)]


class WebsocketsConn(Conn):
    _ws: ClientConnection

    async def _open(self, url: str) -> None:
        self._ws = await connect(url, max_size=RECEIVE_LIMIT)

    async def send_text(self, text: str) -> None:
        await self._ws.send(text)

    async def send_binary(self, data: bytes) -> None:
        await self._ws.send(data)

    async def _messages(self) -> Any:
        try:
            async for message in self._ws:
                assert isinstance(message, str), "the protocol sends text frames only"
                yield message
        except ConnectionClosed:
            pass
        self.close_code = self._ws.close_code

    async def close(self) -> None:
        await self._ws.close()
        if self._reader is not None:
            await self._reader


class AiohttpConn(Conn):
    _session: aiohttp.ClientSession
    _ws: aiohttp.ClientWebSocketResponse

    async def _open(self, url: str) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(url, max_msg_size=RECEIVE_LIMIT, autoping=True)

    async def send_text(self, text: str) -> None:
        await self._ws.send_str(text)

    async def send_binary(self, data: bytes) -> None:
        await self._ws.send_bytes(data)

    async def _messages(self) -> Any:
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                yield message.data
            elif message.type == aiohttp.WSMsgType.ERROR:
                break
            else:
                raise AssertionError(f"unexpected websocket message {message.type}")
        self.close_code = self._ws.close_code

    async def close(self) -> None:
        await self._ws.close()
        if self._reader is not None:
            await self._reader
        await self._session.close()


async def open_conn(kind: str, url: str) -> Conn:
    conn: Conn = WebsocketsConn() if kind == "websockets" else AiohttpConn()
    return await conn.start(url)
