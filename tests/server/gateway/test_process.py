"""The gateway as a real process: graceful shutdown, and a client that stops reading under load."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any
from urllib.request import urlopen

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from publishers import Publisher
from server.bench.faultconn import FaultConn
from tests.support import async_wait_until, scaled
from tests.support.gateway import WsClient
from tests.support.process import ServerProcess


async def test_sigterm_closes_every_connection_with_1012_and_exits_in_time(
    redis_url: str, symbol: str
) -> None:
    server = ServerProcess(
        "serve", "--redis-url", redis_url, env={"SIGNALPUSH_SERVER_SHUTDOWN_TIMEOUT_S": "3"}
    )
    with server:
        clients = [await WsClient(server.ws_url).connect() for _ in range(5)]
        for client in clients:
            await client.subscribe(symbol)
        started = time.monotonic()
        code = await asyncio.to_thread(server.terminate, 15)
        assert code == 0
        assert time.monotonic() - started < scaled(8)
        for client in clients:
            await async_wait_until(lambda c=client: c.close_code is not None, what="close")
            assert client.close_code == 1012


def _rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.wait(0.05):
        peak[0] = max(peak[0], process.memory_info().rss)


@pytest.mark.slow  # out of `make quicktest` (under 60 s); `make test` runs it
async def test_a_client_that_stops_reading_costs_bounded_memory_and_loses_nothing(
    redis_url: str, symbol: str
) -> None:
    total = 50_000
    env = {"SIGNALPUSH_SERVER_MAX_BUFFER_BYTES": "65536", "SIGNALPUSH_SERVER_SLOW_CLIENT_TIMEOUT_S": "120"}
    with ServerProcess("serve", "--redis-url", redis_url, env=env) as server:
        fast = await WsClient(server.ws_url).connect()
        fast_sub = (await fast.subscribe(symbol))["sub"]
        # The slow client: a small receive buffer, and it stops reading after subscribing.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", server.port))
        slow = await connect(server.ws_url, sock=raw, max_queue=2)
        await slow.recv()
        await slow.send(json.dumps({"op": "subscribe", "ref": "s", "symbol": symbol}))
        subscribed = json.loads(await slow.recv())
        assert subscribed["op"] == "subscribed"

        start_rss = psutil.Process(server.pid).memory_info().rss
        peak = [start_rss]
        stop = threading.Event()
        sampler = threading.Thread(target=_rss_sampler, args=(server.pid, stop, peak), daemon=True)
        sampler.start()
        async with Publisher(redis_url, bot="flood", strategy="s") as pub:
            for start in range(0, total, 1000):
                await asyncio.gather(
                    *(pub.signal(symbol, "buy", price=1, confidence=0.5) for _ in range(1000))
                )
                await async_wait_until(
                    lambda s=start: fast.position(fast_sub) >= s, timeout=30, what="fast client"
                )
        await async_wait_until(lambda: fast.position(fast_sub) == total, timeout=60, what="fast client done")
        stop.set()
        sampler.join()
        latencies = sorted(
            at - frame["items"][0]["ts"]
            for frame, at in zip(fast.frames, fast.received_at, strict=True)
            if frame["op"] == "events" and frame["items"]
        )
        assert fast.seqs(fast_sub) == list(range(1, total + 1))
        assert latencies[-1] < scaled(5000), (
            f"fast client's worst latency {latencies[-1]} ms (p50 {latencies[len(latencies) // 2]})"
        )
        growth_mb = (peak[0] - start_rss) / 2**20
        assert growth_mb < 80, f"server RSS grew {growth_mb:.1f} MiB while a client did not read"

        # Now the slow client reads again: everything exactly once, in order (or a 4008 close to resume).
        received: list[dict[str, Any]] = []
        position = subscribed["seq"]
        closed_with: int | None = None
        gaps: list[str] = []
        while position < total:
            # Only the server closing us ends the read early: a broken contiguity is recorded and
            # asserted below, never mistaken for "the server closed us".
            try:
                text = await asyncio.wait_for(slow.recv(), scaled(30))
            except ConnectionClosed:
                closed_with = slow.close_code
                break
            frame = json.loads(text)
            if frame["op"] != "events":
                continue
            if frame["from_seq"] > position + 1:
                gaps.append(f"hole: from_seq {frame['from_seq']} after {position}")
            if any(e["seq"] <= position for e in frame["items"]):
                gaps.append(f"duplicate: frame {frame['from_seq']}..{frame['to_seq']} after {position}")
            received.extend(e for e in frame["items"] if e["seq"] > position)
            position = max(position, frame["to_seq"])
        assert gaps == []
        if closed_with is None:
            assert [e["seq"] for e in received] == list(range(1, total + 1))
        else:
            assert closed_with == 4008
        metrics = await asyncio.to_thread(
            lambda: urlopen(f"{server.http_url}/metrics", timeout=5).read().decode()
        )
        assert (
            "signalpush_slow_catchups_total 0" not in metrics
            or "signalpush_slow_closes_total 0" not in metrics
        )
        await slow.close()
        await fast.close()


@pytest.mark.slow  # out of `make quicktest` (under 60 s); `make test` runs it
async def test_a_client_that_stops_reading_during_its_history_is_closed_and_costs_one_frame(
    redis_url: str, symbol: str
) -> None:
    """Keepalive cannot catch it (a ping waits behind the data); the stalled-connection rule does."""
    env = {"SIGNALPUSH_SERVER_SLOW_CLIENT_TIMEOUT_S": "2"}
    with ServerProcess("serve", "--redis-url", redis_url, env=env) as server:
        async with Publisher(redis_url, bot="history", strategy="s") as pub:
            for _ in range(5):
                await asyncio.gather(
                    *(pub.signal(symbol, "buy", price=1, confidence=0.5) for _ in range(1000))
                )
        other = await WsClient(server.ws_url).connect()
        other_sub = (await other.subscribe(symbol))["sub"]
        start_rss = psutil.Process(server.pid).memory_info().rss

        client = await FaultConn.open("stalled", ("127.0.0.1", server.port, "/ws", 10.0), receive_buffer=4096)
        stalled = client.ws
        sock = stalled.transport.get_extra_info("socket")  # type: ignore[union-attr]
        stalled.transport.pause_reading()  # type: ignore[union-attr]
        for index in range(40):  # 40 groups, each with a ~1 MB history frame to send
            stalled.send_text(
                json.dumps(
                    {"op": "subscribe", "symbol": symbol, "filter": {"min_confidence": index / 100},
                     "history": {"minutes": 60}}
                )
            )  # fmt: skip

        def closed_by_server() -> bool:
            state: int = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
            return state != 1  # no longer ESTABLISHED: the server closed or reset it

        peak = [start_rss]
        stop = threading.Event()
        sampler = threading.Thread(target=_rss_sampler, args=(server.pid, stop, peak), daemon=True)
        sampler.start()
        await async_wait_until(closed_by_server, timeout=20, what="the server to drop the stalled client")
        stop.set()
        sampler.join()
        growth_mb = (peak[0] - start_rss) / 2**20
        assert growth_mb < 15, f"server RSS grew {growth_mb:.1f} MiB for one client's 40 history frames"
        metrics = await asyncio.to_thread(
            lambda: urlopen(f"{server.http_url}/metrics", timeout=5).read().decode()
        )
        assert "signalpush_slow_closes_total 1" in metrics
        # Everyone else is served as before.
        async with Publisher(redis_url, bot="history", strategy="s") as pub:
            last = await pub.signal(symbol, "sell", price=2, confidence=0.9)
        await async_wait_until(lambda: other.position(other_sub) == last, what="the other client")
        stalled.abort()
        await other.close()
