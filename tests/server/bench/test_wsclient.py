"""The raw load client against a real websockets server: handshake, text, pings, close."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve

from server.bench.wsclient import open_websocket


async def test_raw_client_talks_to_a_real_server() -> None:
    received: list[str] = []
    got_pong = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        received.append(str(await ws.recv()))
        await ws.send("x" * 70_000)  # a 64-bit length header
        await ws.send("short")
        await asyncio.wait_for(await ws.ping(), 5)
        got_pong.set()
        await ws.close(1012, "restart")

    messages: list[bytes] = []
    closed: list[int | None] = []
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = await open_websocket(
            "127.0.0.1", port, "/", lambda data, _: messages.append(data), closed.append
        )
        client.send_text('{"op":"subscribe"}')
        await asyncio.wait_for(got_pong.wait(), 5)
        for _ in range(200):
            if closed:
                break
            await asyncio.sleep(0.01)
    assert received == ['{"op":"subscribe"}']
    assert [len(m) for m in messages] == [70_000, 5]
    assert closed == [1012]
