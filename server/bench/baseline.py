"""The bench's baseline: the least a websocket fan-out of these Redis channels can do.

``python -m server.bench.baseline --redis-url URL --port N``. A client sends one
``{"op":"subscribe","symbol":S}`` (other keys are ignored: no filters, no history, no
resume); the baseline joins ``sp:{S}:live`` and answers ``{"op":"subscribed"}``. Every
live message is then sent as it came from Redis (``<epoch> <seq> <publish ms> <event>``),
one frame per message, with ``websockets.broadcast`` to every connection of the symbol:
no seq checks, no batching, no encoding. It reads Redis with the gateway's own bus
reader and serves websockets with the gateway's settings (no compression, the same
heartbeat), so the difference between the two is what signalpush does on top.
``/healthz`` answers ``{"status":"ok"}`` once Redis is connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections import defaultdict
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from publishers import keys
from server.gateway.bus import Batch, RedisBus
from server.settings import load_settings


class Baseline:
    def __init__(self, redis_url: str) -> None:
        self.by_channel: dict[bytes, set[ServerConnection]] = defaultdict(set)
        self.bus = RedisBus(redis_url, on_batch=self.on_batch, on_state=self.on_state)

    async def on_batch(self, batch: Batch) -> None:
        for channel, payload in batch:
            connections = self.by_channel.get(channel)
            if connections:
                broadcast(connections, payload, text=True)

    async def on_state(self, up: bool) -> None:
        return None

    async def handle(self, ws: ServerConnection) -> None:
        channels: list[bytes] = []
        try:
            async for message in ws:
                symbol = json.loads(message).get("symbol")
                if not isinstance(symbol, str):
                    continue
                await self.bus.subscribe(symbol)
                channel = keys.live_channel(symbol).encode()
                self.by_channel[channel].add(ws)
                channels.append(channel)
                await ws.send('{"op":"subscribed"}')
        except ConnectionClosed:
            pass
        finally:
            for channel in channels:
                self.by_channel[channel].discard(ws)

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            status = "ok" if self.bus.up else "down"
            return connection.respond(200 if self.bus.up else 503, json.dumps({"status": status}))
        return None


async def run(redis_url: str, port: int) -> None:
    baseline = Baseline(redis_url)
    server_settings = load_settings(env={}).server
    bus = asyncio.create_task(baseline.bus.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        baseline.handle,
        "127.0.0.1",
        port,
        process_request=baseline.process_request,
        compression=None,
        max_size=server_settings.max_frame_bytes,
        ping_interval=server_settings.heartbeat_s,
        ping_timeout=server_settings.heartbeat_s,
        close_timeout=2,
        max_queue=64,
    ):
        await stop.wait()
    bus.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await bus


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.bench.baseline", description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.redis_url, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
