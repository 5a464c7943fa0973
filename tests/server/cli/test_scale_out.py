"""Scale out on a real Redis Cluster: two gateways and two recorders (one group), SQL exactly once,
and a killed gateway's clients resuming on the other with nothing lost."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from publishers import Publisher
from publishers.events import Signal, Trade, now_ms
from server.history.engine import create_engine
from tests.support import async_wait_until, scaled
from tests.support.chaos import FILTERS, ChaosClient, expected, stop_all
from tests.support.cluster import LocalCluster, cluster_available
from tests.support.process import ServerProcess

pytestmark = pytest.mark.skipif(
    not cluster_available(), reason="needs the machine's redis-server 7 for a cluster"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with tempfile.TemporaryDirectory() as root:
        local = LocalCluster(Path(root), masters=3).start()
        yield local
        local.stop()


async def _publish(
    url: str, symbols: list[str], stop: asyncio.Event, published: list[dict[str, Any]]
) -> None:
    rng = random.Random(9)
    async with Publisher(url, retry_attempts=100, retry_timeout_s=30) as pub:
        n = 0
        while not stop.is_set():
            symbol = symbols[n % len(symbols)]
            bot, strategy = rng.choice([("chaos-1", "s1"), ("chaos-2", "s2")])
            if rng.random() < 0.7:
                event: Signal | Trade = Signal(
                    symbol=symbol,
                    ts=now_ms(),
                    bot=bot,
                    strategy=strategy,
                    type=rng.choice(["buy", "sell", "hold"]),
                    price=100.0,
                    confidence=round(rng.random(), 2),
                )
            else:
                event = Trade(
                    symbol=symbol,
                    ts=now_ms(),
                    bot=bot,
                    strategy=strategy,
                    side="buy",
                    action="entry",
                    price=100.0,
                    qty=1.0,
                    position=f"p{n}",
                )
            published.append(event.to_dict(await pub.publish(event)))
            n += 1
            await asyncio.sleep(0.005)


async def _stored(database_url: str, symbols: list[str]) -> list[tuple[str, int]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows: list[tuple[str, int]] = []
            for table in ("signals", "trades"):
                query = text(f"SELECT symbol, seq FROM {table} WHERE symbol IN :symbols").bindparams(
                    bindparam("symbols", expanding=True)
                )
                found = await connection.execute(query, {"symbols": symbols})
                rows += [(row[0], int(row[1])) for row in found]
        return rows
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_two_gateways_and_two_recorders_on_a_cluster(
    cluster: LocalCluster, store_url: str, symbol: str
) -> None:
    env = {
        "SIGNALPUSH_DATABASE_URL": store_url,
        "SIGNALPUSH_SERVER_HEARTBEAT_S": "1",
        "SIGNALPUSH_RECORDER_CLAIM_IDLE_MS": "1000",
    }
    gateways = [ServerProcess("serve", "--redis-url", cluster.url, env=env).start() for _ in range(2)]
    symbols = [f"{symbol}{suffix}" for suffix in "XYZ"]
    rng = random.Random(5)
    published: list[dict[str, Any]] = []
    stop_publishing, stop_clients = asyncio.Event(), asyncio.Event()
    publisher = asyncio.create_task(_publish(cluster.url, symbols, stop_publishing, published))
    await async_wait_until(
        lambda: {e["symbol"] for e in published} == set(symbols), what="every symbol published"
    )
    clients = [
        ChaosClient(
            f"c{i}", gateways[i % 2].ws_url, rng.choice(symbols), rng.choice(FILTERS), random.Random(i)
        )
        for i in range(20)
    ]
    tasks = [asyncio.create_task(c.run(stop_clients, churn=0.0)) for c in clients]
    try:
        # Generous: 20 subscribes with history, built by two fresh processes' workers on a busy CI.
        await async_wait_until(
            lambda: all(c.start is not None for c in clients), timeout=40, what="every client subscribed"
        )
        await asyncio.sleep(1.0)
        gateways[0].kill()  # SIGKILL: its recorder dies with it, mid-batch or not
        for client in clients:
            client.url = gateways[1].ws_url  # the proxy in front would send them to the survivor
        await asyncio.sleep(2.0)
        stop_publishing.set()
        await publisher
        last = {s: max(e["seq"] for e in published if e["symbol"] == s) for s in symbols}
        await async_wait_until(
            lambda: all(c.position >= last[c.symbol] for c in clients),
            timeout=30,
            what="every client at its symbol's last seq",
        )
        expected_rows = sorted((e["symbol"], e["seq"]) for e in published)

        async def recorded() -> bool:
            return sorted(await _stored(store_url, symbols)) == expected_rows

        await async_wait_until(recorded, timeout=30, what="SQL to hold every event")
    finally:
        stop_clients.set()
        await asyncio.wait_for(stop_all(tasks), scaled(20))
        for gateway in gateways:
            gateway.kill()
    stored = await _stored(store_url, symbols)
    assert len(stored) == len(set(stored)) == len(published), "every event exactly once in SQL"
    for client in clients:
        assert client.problems == [], f"{client.name}: {client.problems[:3]}"
        assert [item["seq"] for item in client.items] == expected(client, published), client.name
    moved = [c for c in clients if c.connects > 1]
    assert moved, "the killed gateway's clients reconnected to the other one"
