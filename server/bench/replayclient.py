"""The clients of ``signalpush bench replay``, in their own process (the gateway's process measures
only the gateway). Prints one JSON line with what it measured.

``python -m server.bench.replayclient stream URL SYMBOL FROM TO``: one replay at speed max,
counting the events received (without decoding the frames: the items are counted in the text).
``... seek URL SYMBOL FROM TO MINUTES T1,T2,...``: one paused replay, then a seek to each
time; the time from the seek to its ``history`` frame. ``... hold URL SYMBOL FROM TO N``: N
replays at speed 1, each waiting until its first events frame arrived; then holds them
open until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

_MAX_SIZE = 64 * 1024 * 1024


async def _subscribe(ws: ClientConnection, symbol: str, replay: dict[str, Any], minutes: int = 10) -> None:
    request = {
        "op": "subscribe",
        "ref": 1,
        "symbol": symbol,
        "history": {"minutes": minutes},
        "replay": replay,
    }
    await ws.send(json.dumps(request))


async def stream(url: str, symbol: str, start: int, end: int) -> dict[str, Any]:
    async with connect(url, max_size=_MAX_SIZE, compression=None) as ws:
        await _subscribe(ws, symbol, {"from": start, "to": end, "speed": "max"}, minutes=1)
        events, frames, began = 0, 0, 0.0
        async for message in ws:
            text = message if isinstance(message, str) else message.decode()
            if text.startswith('{"op":"events"'):
                if not began:
                    began = time.perf_counter()
                events += text.count('{"seq":')
                frames += 1
            elif text.startswith('{"op":"replay"') and '"state":"end"' in text:
                break
            elif text.startswith('{"op":"error"'):
                raise SystemExit(text)
        seconds = time.perf_counter() - began if began else 0.0
    return {"events": events, "frames": frames, "seconds": seconds}


async def seek(url: str, symbol: str, start: int, end: int, minutes: int, times: list[int]) -> dict[str, Any]:
    latencies: list[float] = []
    async with connect(url, max_size=_MAX_SIZE, compression=None) as ws:
        await _subscribe(ws, symbol, {"from": start, "to": end, "speed": 1}, minutes=minutes)
        sub = None
        async for message in ws:
            frame = json.loads(message)
            if frame["op"] == "subscribed":
                sub = frame["sub"]
            if frame["op"] == "history":
                break
        await ws.send(json.dumps({"op": "replay_control", "sub": sub, "action": "pause"}))
        for at in times:
            sent = time.perf_counter()
            await ws.send(json.dumps({"op": "replay_control", "sub": sub, "action": "seek", "to": at}))
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                if text.startswith('{"op":"history"'):
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
    return {"seek_ms": latencies}


async def hold(url: str, symbol: str, start: int, end: int, count: int) -> None:
    ready = 0
    done = asyncio.Event()

    async def one() -> None:
        nonlocal ready
        async with connect(url, max_size=_MAX_SIZE, compression=None) as ws:
            await _subscribe(ws, symbol, {"from": start, "to": end, "speed": 1}, minutes=1)
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                if text.startswith('{"op":"events"'):
                    break
            ready += 1
            if ready == count:
                print(json.dumps({"ready": count}), flush=True)
            await done.wait()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str]) -> None:
    mode, url, symbol, start, end, *rest = argv
    if mode == "stream":
        print(json.dumps(asyncio.run(stream(url, symbol, int(start), int(end)))), flush=True)
    elif mode == "seek":
        times = [int(t) for t in rest[1].split(",")]
        print(
            json.dumps(asyncio.run(seek(url, symbol, int(start), int(end), int(rest[0]), times))), flush=True
        )
    else:
        asyncio.run(hold(url, symbol, int(start), int(end), int(rest[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
