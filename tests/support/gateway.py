"""A real gateway on a free port and a real websocket test client that records every frame."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.cli.runner import compose_gateway
from server.core.chunks import Reassembler
from server.gateway.http import HttpRoutes
from server.gateway.server import Gateway
from server.settings import Settings, load_settings
from tests.support import async_wait_until


def gateway_settings(**sections: dict[str, Any]) -> Settings:
    return load_settings(env={}, overrides=sections)


@dataclass
class RunningGateway:
    gateway: Gateway
    port: int
    #: The HTTP routes of its port (None: composed by the runner, not reachable here).
    routes: HttpRoutes | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_gateway(redis_url: str, settings: Settings | None = None) -> AsyncIterator[RunningGateway]:
    composed = compose_gateway(settings or gateway_settings(), redis_url)
    gateway = composed.gateway
    port = await gateway.start(host="127.0.0.1", port=0, http=composed.routes.handle)
    try:
        await async_wait_until(lambda: gateway.bus.up, what="the gateway's bus to connect")
        yield RunningGateway(gateway, port, composed.routes)
    finally:
        await gateway.stop()


@dataclass
class WsClient:
    """Connects, records every frame, and checks the client-side rules of docs/protocol.md."""

    url: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    #: Wall-clock receive time (ms) of each frame, parallel to ``frames``.
    received_at: list[int] = field(default_factory=list)
    ws: ClientConnection | None = None
    close_code: int | None = None
    _reader: asyncio.Task[None] | None = None
    _refs: int = 0
    #: chunk frames received (reassembled into the frames they stand for)
    chunks: int = 0

    async def connect(self, **kwargs: Any) -> WsClient:
        self.ws = await connect(self.url, **kwargs)
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda f: f["op"] == "hello")
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            chunks = Reassembler()
            async for message in self.ws:
                frame = json.loads(message)
                if frame.get("op") == "chunk":  # a frame over max_send_frame_bytes, in pieces
                    self.chunks += 1
                    whole = chunks.feed(frame)
                    if whole is None:
                        continue
                    frame = json.loads(whole)
                self.frames.append(frame)
                self.received_at.append(time.time_ns() // 1_000_000)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    async def subscribe(self, symbol: str, **extra: Any) -> dict[str, Any]:
        self._refs += 1
        ref = f"r{self._refs}"
        await self.send({"op": "subscribe", "ref": ref, "symbol": symbol, **extra})
        reply = await self.wait_for(lambda f: f.get("ref") == ref)
        assert reply["op"] == "subscribed", reply
        return reply

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((f for f in self.frames if predicate(f)), None)

        return await async_wait_until(found, timeout, what="a matching frame")

    def seqs(self, sub: str) -> list[int]:
        """Seqs delivered for ``sub`` (history then events), checking contiguity on the way."""
        return [event["seq"] for event in self.events(sub)]

    def events(self, sub: str) -> list[dict[str, Any]]:
        position: int | None = None
        out: list[dict[str, Any]] = []
        for frame in self.frames:
            if frame.get("sub") != sub:
                continue
            if frame["op"] == "subscribed":
                position = frame["seq"]
            elif frame["op"] == "history":
                position = frame["to_seq"]
            elif frame["op"] == "events":
                assert position is not None, "events before subscribed"
                assert frame["from_seq"] <= position + 1, f"hole: {frame['from_seq']} after {position}"
                for item in frame["items"]:
                    assert item["seq"] > position or item["seq"] > (out[-1]["seq"] if out else 0), "duplicate"
                    out.append(item)
                position = max(position, frame["to_seq"])
        seqs = [e["seq"] for e in out]
        assert seqs == sorted(set(seqs)), "in order, each once"
        return out

    def view(self, sub: str) -> list[int]:
        """Seqs the subscription holds now: the last history (reset replaces all) plus later events."""
        held: list[int] = []
        for frame in self.frames:
            if frame.get("sub") != sub:
                continue
            if frame["op"] == "history":
                held = sorted(
                    seq
                    for kind in ("signal", "trade", "bot")
                    for seq in frame["data"].get(kind, {}).get("seq", [])
                    if seq is not None  # a row of an older epoch
                )
            elif frame["op"] == "reset":
                held = []
            elif frame["op"] == "events":
                for item in frame["items"]:
                    assert not held or item["seq"] > held[-1], f"duplicate or out of order: {item['seq']}"
                    held.append(item["seq"])
        return held

    def position(self, sub: str) -> int:
        position = 0
        for frame in self.frames:
            if frame.get("sub") != sub:
                continue
            if frame["op"] == "subscribed":
                position = frame["seq"]
            elif frame["op"] == "history":
                position = frame["to_seq"]
            elif frame["op"] == "events":
                position = max(position, frame["to_seq"])
        return position

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


@contextlib.asynccontextmanager
async def serving(
    redis_url: str, database_url: str, **sections: dict[str, Any]
) -> AsyncIterator[RunningGateway]:
    """What ``signalpush serve`` runs (gateway, HTTP API, history store and workers, recorder),
    composed by the same code (server.cli.runner), on a free port of 127.0.0.1."""
    import gc

    from server.cli import runner

    server = {"port": 0, **sections.pop("server", {})}
    settings = gateway_settings(database={"url": database_url}, server=server, **sections)
    try:
        async with runner.running_gateway(settings, redis_url) as (gateway, port):
            await async_wait_until(lambda: gateway.bus.up, what="the gateway's bus to connect")
            yield RunningGateway(gateway, port)
    finally:
        gc.unfreeze()  # serve freezes what start-up allocated; a test process starts many gateways


@dataclass
class HttpReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def http_get(port: int, target: str, headers: list[tuple[str, str]] | None = None) -> HttpReply:
    """GET ``target`` from 127.0.0.1:``port`` with exactly these ``headers`` (repeats kept; a
    ``Host`` among them replaces the default one). Blocking: call it through asyncio.to_thread."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        names = {name.lower() for name, _ in headers or []}
        connection.putrequest("GET", target, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers or []:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return HttpReply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


async def get(port: int, target: str, headers: list[tuple[str, str]] | None = None) -> HttpReply:
    return await asyncio.to_thread(http_get, port, target, headers)
