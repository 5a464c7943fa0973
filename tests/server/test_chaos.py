"""The gap-free invariant under chaos: steady publishing, 50 churning clients, gateway SIGKILLs.

Seeded and bounded: every client's received events must equal the published events of
its symbol under its filter after its starting position, with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from publishers import Publisher
from publishers.events import BotStatus, Event, Signal, Trade, now_ms
from tests.support import async_wait_until, scaled
from tests.support.chaos import FILTERS, ChaosClient, expected, stop_all
from tests.support.process import ServerProcess

SEED = 20261126


def _next_event(rng: random.Random, symbol: str, n: int) -> Event:
    bot, strategy = rng.choice([("chaos-1", "s1"), ("chaos-2", "s2"), ("chaos-3", "s1")])
    roll = rng.random()
    if roll < 0.6:
        return Signal(
            symbol=symbol,
            ts=now_ms(),
            bot=bot,
            strategy=strategy,
            type=rng.choice(["buy", "sell", "hold"]),
            price=100 + rng.random(),
            confidence=round(rng.random(), 2),
        )
    if roll < 0.9:
        return Trade(
            symbol=symbol,
            ts=now_ms(),
            bot=bot,
            strategy=strategy,
            side=rng.choice(["buy", "sell"]),
            action=rng.choice(["entry", "exit"]),
            price=100 + rng.random(),
            qty=1.0,
            position=f"p{n}",
            pnl=round(rng.uniform(-5, 5), 2),
        )
    return BotStatus(symbol=symbol, ts=now_ms(), bot=bot, strategy=strategy, status="active", equity=1000.0)


async def _publish(
    url: str,
    symbols: list[str],
    rng: random.Random,
    stop: asyncio.Event,
    published: list[dict[str, Any]],
    rate: float,
) -> None:
    async with Publisher(url) as pub:
        n = 0
        while not stop.is_set():
            symbol = rng.choice(symbols)
            event = _next_event(rng, symbol, n)
            seq = await pub.publish(event)
            published.append(event.to_dict(seq))
            n += 1
            await asyncio.sleep(1 / rate)


@pytest.mark.slow
async def test_clients_get_exactly_their_events_through_gateway_kills(redis_url: str, symbol: str) -> None:
    rng = random.Random(SEED)
    symbols = [f"{symbol}{suffix}" for suffix in "ABC"]
    env = {"SIGNALPUSH_SERVER_HEARTBEAT_S": "1"}
    gateway = ServerProcess("serve", "--redis-url", redis_url, env=env)
    gateway.start()
    published: list[dict[str, Any]] = []
    stop_publishing, stop_clients = asyncio.Event(), asyncio.Event()
    publisher = asyncio.create_task(
        _publish(redis_url, symbols, random.Random(rng.random()), stop_publishing, published, rate=150)
    )
    await async_wait_until(
        lambda: {e["symbol"] for e in published} == set(symbols), what="every symbol published"
    )
    clients = [
        ChaosClient(
            f"c{i}", gateway.ws_url, rng.choice(symbols), rng.choice(FILTERS), random.Random(rng.random())
        )
        for i in range(50)
    ]
    tasks = [asyncio.create_task(c.run(stop_clients, churn=0.3)) for c in clients]
    try:
        for pause in (3.0, 3.0):
            await asyncio.sleep(pause)
            gateway.kill()  # SIGKILL: no goodbye to anyone
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            await asyncio.to_thread(gateway.start)
        await asyncio.sleep(3.0)
        stop_publishing.set()
        await publisher
        last = {s: max(e["seq"] for e in published if e["symbol"] == s) for s in symbols}
        await async_wait_until(
            lambda: all(c.start is not None and c.position >= last[c.symbol] for c in clients),
            timeout=30,
            what="every client to reach the last seq of its symbol",
        )
    finally:
        stop_clients.set()
        await asyncio.wait_for(stop_all(tasks), scaled(20))
        gateway.kill()
    for client in clients:
        assert client.problems == [], f"{client.name}: {client.problems[:3]}"
        got = [item["seq"] for item in client.items]
        assert got == expected(client, published), f"{client.name} ({client.filter}) differs"
    assert sum(c.connects for c in clients) > 150, "the clients really did churn and reconnect"
    assert len(published) > 500
