"""History amplification bounds: the build budget (pure), busy at the edge, builds in worker processes."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
import redis.asyncio as aioredis

from publishers import Publisher
from publishers.events import now_ms
from server.bench.procs import children_of
from server.cli.runner import compose_gateway
from server.core.filters import EventFilter
from server.errors import ProtocolError
from server.gateway.builds import POOL_IDLE_S, HistoryBudget
from server.history.source import LogHistory, Window
from tests.support import async_wait_until
from tests.support.gateway import RunningGateway, WsClient, gateway_settings, get, serving

# -- the budget (no sockets) ----------------------------------------------------------------


async def test_builds_take_turns_first_come_first_served() -> None:
    budget = HistoryBudget(builds=1, max_waiting=10, max_bytes=1 << 20)
    order: list[int] = []
    gate = asyncio.Event()

    async def build(index: int) -> None:
        async with budget.slot():
            order.append(index)
            await gate.wait()

    tasks = [asyncio.create_task(build(i)) for i in range(4)]
    await async_wait_until(lambda: budget.waiting == 3, what="three waiting")
    assert order == [0] and budget.running == 1
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3] and budget.running == 0


async def test_past_max_waiting_new_requests_are_busy() -> None:
    budget = HistoryBudget(builds=1, max_waiting=2, max_bytes=1 << 20)
    await budget.acquire()
    waiters = [asyncio.create_task(budget.acquire()) for _ in range(2)]
    await async_wait_until(lambda: budget.waiting == 2, what="two waiting")
    with pytest.raises(ProtocolError) as caught:
        budget.admit()
    assert caught.value.code == "busy" and caught.value.message.startswith("history:")
    waiters[0].cancel()  # a cancelled waiter leaves the queue: room again
    await async_wait_until(lambda: budget.waiting == 1, what="one waiting")
    budget.admit()
    budget.release()
    await waiters[1]
    assert budget.running == 1


async def test_no_build_starts_while_frames_in_flight_pass_the_bytes_budget() -> None:
    budget = HistoryBudget(builds=4, max_waiting=10, max_bytes=1000)
    budget.hold(1500)  # a big frame not yet written out
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done() and budget.running == 0
    budget.drop(1500)
    await waiter
    assert budget.running == 1


async def test_a_slot_granted_to_a_cancelled_waiter_is_passed_on() -> None:
    budget = HistoryBudget(builds=1, max_waiting=10, max_bytes=1 << 20)
    await budget.acquire()
    first = asyncio.create_task(budget.acquire())
    second = asyncio.create_task(budget.acquire())
    await async_wait_until(lambda: budget.waiting == 2, what="two waiting")
    budget.release()  # granted to first ...
    first.cancel()  # ... which is cancelled before it runs
    await second
    assert budget.running == 1


# -- busy at the edge (a real gateway; builds held open by a gated history source) ------------


class GatedHistory(LogHistory):
    """The Redis log's history, each window held until ``gate`` opens (a build that takes long)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.gate = asyncio.Event()
        self.started = 0

    async def window(self, symbol: str, flt: EventFilter, *, minutes: int, max_points: int) -> Window:
        self.started += 1
        await self.gate.wait()
        return await super().window(symbol, flt, minutes=minutes, max_points=max_points)


async def test_history_requests_past_the_waiting_cap_get_busy_and_others_are_served(
    redis_url: str, symbol: str
) -> None:
    settings = gateway_settings(history={"workers": 0, "max_waiting": 1})
    history_redis = aioredis.Redis.from_url(redis_url)
    gated = GatedHistory(history_redis)
    composed = compose_gateway(settings, redis_url, history=gated)
    gateway = composed.gateway
    port = await gateway.start(host="127.0.0.1", port=0, http=composed.routes.handle)
    running = RunningGateway(gateway, port, composed.routes)
    try:
        await async_wait_until(lambda: gateway.bus.up, what="bus")
        clients = [await WsClient(running.ws_url).connect() for _ in range(3)]
        history = {"minutes": 60}
        await clients[0].subscribe(symbol, history=history)  # building
        await async_wait_until(lambda: gated.started == 1, what="the first build")
        await clients[1].subscribe(symbol, history=history)  # waiting: the cap
        await async_wait_until(lambda: gateway.builds.budget.waiting == 1, what="one waiting")
        await clients[2].send({"op": "subscribe", "ref": "late", "symbol": symbol, "history": history})
        error = await clients[2].wait_for(lambda f: f.get("ref") == "late")
        assert (error["op"], error["code"]) == ("error", "busy"), error
        assert gateway.metrics.history_busy == 1
        assert (await clients[2].subscribe(symbol))["op"] == "subscribed", "live needs no build"
        gated.gate.set()
        for client in clients[:2]:
            await client.wait_for(lambda f: f["op"] == "history")
        metrics = (await get(port, "/metrics")).body.decode()
        assert "signalpush_history_busy_total 1" in metrics
        for client in clients:
            await client.close()
    finally:
        await gateway.stop()
        await history_redis.aclose()


# -- builds in worker processes (what serve runs) ----------------------------------------------


async def test_histories_and_figures_are_built_in_a_worker_process(
    redis_url: str, store_url: str, symbol: str
) -> None:
    start = now_ms() - 40 * 60_000
    async with Publisher(redis_url, bot="momo-1", strategy="momentum") as bot:
        for i in range(30):
            await bot.candle(
                symbol,
                ts=start + i * 60_000,
                tf="1m",
                open=100.0 + i,
                high=101.0 + i,
                low=99.0 + i,
                close=100.5 + i,
                volume=1.0,
            )
            await bot.signal(symbol, "buy", price=100.0 + i, confidence=0.7)
    async with serving(redis_url, store_url) as running:
        builds = running.gateway.builds
        assert builds.pool is not None and not builds.pool.started
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol, history={"minutes": 60, "figure": True}))["sub"]
        frame = await client.wait_for(lambda f: f["op"] == "history", timeout=60)
        assert frame["sub"] == sub and frame["to_seq"] == 60
        assert len(frame["data"]["signal"]["seq"]) == 30 and frame["figure"]["figure"]["data"]
        workers = builds.pool.pids()
        assert workers and set(workers) <= set(children_of(os.getpid())), "a worker process built it"
        assert builds.budget.running == 0 and builds.budget.bytes_in_flight == 0

        api = (await get(running.port, f"/api/history?symbol={symbol}&minutes=60")).json()
        assert api["data"] == frame["data"] and api["to_seq"] == 60
        figure = await get(running.port, f"/api/figure?symbol={symbol}&minutes=60")
        assert figure.status == 200 and json.loads(figure.body)["figure"]["data"]

        builds.tidy(builds.pool.last_used + POOL_IDLE_S + 1)  # idle: the workers stop, memory goes back
        assert not builds.pool.started
        await client.subscribe(symbol, history={"minutes": 60}, filter={"kinds": ["signal"]})
        again = await client.wait_for(
            lambda f: f["op"] == "history" and "candle" not in f["data"], timeout=60
        )
        assert len(again["data"]["signal"]["seq"]) == 30
        await client.close()
