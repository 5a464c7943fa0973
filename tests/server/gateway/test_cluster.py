"""A real 3-master Redis Cluster: publishing, sharded live feeds, a slot moving, a master failing over."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from publishers import Publisher
from tests.support import async_wait_until
from tests.support.cluster import LocalCluster, cluster_available, wait_cluster_ok
from tests.support.gateway import WsClient, running_gateway

pytestmark = pytest.mark.skipif(
    not cluster_available(), reason="needs the machine's redis-server 7 for a cluster"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with tempfile.TemporaryDirectory() as root:
        local = LocalCluster(Path(root), masters=3, replicas=1).start()
        yield local
        local.stop()


def move_slot(cluster: LocalCluster, key: str) -> int:
    """Migrate the slot holding ``key`` to another master, keys and all; returns the new master's port."""
    source_port = cluster.master_of(key)
    source = redis.Redis(port=source_port)
    slot = int(source.execute_command("CLUSTER", "KEYSLOT", key))
    masters = {int(m[1]) for _, _, m, *_ in source.execute_command("CLUSTER", "SLOTS")}
    target_port = next(p for p in sorted(masters) if p != source_port)
    target = redis.Redis(port=target_port)
    source_id = source.execute_command("CLUSTER", "MYID").decode()
    target_id = target.execute_command("CLUSTER", "MYID").decode()
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    for port in masters:
        redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return target_port


async def steady(url: str, symbols: list[str], stop: asyncio.Event, counts: dict[str, int]) -> None:
    async with Publisher(url, bot="b", strategy="s", retry_attempts=100, retry_timeout_s=30) as pub:
        while not stop.is_set():
            for symbol in symbols:
                counts[symbol] = await pub.signal(symbol, "buy", price=1, confidence=0.5)
            await asyncio.sleep(0.01)


@pytest.fixture
async def gateway(cluster: LocalCluster) -> AsyncIterator[Any]:
    async with running_gateway(cluster.url) as running:
        yield running


async def test_publish_and_fan_out_on_a_cluster(cluster: LocalCluster, gateway: Any, symbol: str) -> None:
    symbols = [f"{symbol}{i}" for i in range(6)]
    assert len({cluster.master_of(f"sp:{{{s}}}:log") for s in symbols}) > 1, "symbols spread over masters"
    client = await WsClient(gateway.ws_url).connect()
    subs = {s: (await client.subscribe(s))["sub"] for s in symbols}
    async with Publisher(cluster.url, bot="b", strategy="s") as pub:
        for _ in range(5):
            for s in symbols:
                await pub.signal(s, "buy", price=1, confidence=0.5)
    for s in symbols:
        await async_wait_until(lambda s=s: client.position(subs[s]) == 5, what=f"{s} events")
        assert client.seqs(subs[s]) == [1, 2, 3, 4, 5]
    assert {
        m.decode()
        for m in redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.alive_port()).smembers(
            "sp:symbols"
        )
    } >= set(symbols)
    await client.close()


async def test_a_slot_moving_mid_stream_loses_nothing(
    cluster: LocalCluster, gateway: Any, symbol: str
) -> None:
    client = await WsClient(gateway.ws_url).connect()
    sub = (await client.subscribe(symbol))["sub"]
    stop, counts = asyncio.Event(), {symbol: 0}
    publishing = asyncio.create_task(steady(cluster.url, [symbol], stop, counts))
    await async_wait_until(lambda: counts[symbol] >= 20, what="publishing")
    await asyncio.to_thread(move_slot, cluster, f"sp:{{{symbol}}}:log")
    await async_wait_until(lambda: counts[symbol] >= 80, timeout=20, what="publishing after the move")
    stop.set()
    await publishing
    await async_wait_until(lambda: client.position(sub) == counts[symbol], timeout=20, what="every event")
    assert client.seqs(sub) == list(range(1, counts[symbol] + 1))
    await client.close()


async def test_a_master_failing_over_loses_nothing(cluster: LocalCluster, gateway: Any, symbol: str) -> None:
    client = await WsClient(gateway.ws_url).connect()
    sub = (await client.subscribe(symbol))["sub"]
    stop, counts = asyncio.Event(), {symbol: 0}
    publishing = asyncio.create_task(steady(cluster.url, [symbol], stop, counts))
    await async_wait_until(lambda: counts[symbol] >= 20, what="publishing")
    before = counts[symbol]
    # Writes are acknowledged by the master before its replica has them (Redis replication is
    # asynchronous): WAIT makes the replica current so the failover itself loses no write.
    master = cluster.master_of(f"sp:{{{symbol}}}:log")
    redis.Redis(port=master).execute_command("WAIT", 1, 1000)
    cluster.kill(master)
    await async_wait_until(
        lambda: cluster.master_of(f"sp:{{{symbol}}}:log") != master, timeout=30, what="a replica to take over"
    )
    wait_cluster_ok(cluster)
    await async_wait_until(
        lambda: counts[symbol] >= before + 40, timeout=30, what="publishing after failover"
    )
    stop.set()
    await publishing
    # Redis replicates asynchronously: writes the dead master acknowledged but had not passed on are
    # gone, and their seqs are given again. The gateway notices the rewritten history, resets its
    # subscribers, and from then on they hold exactly what the cluster holds.
    final = int(
        redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.alive_port()).hget(
            f"sp:{{{symbol}}}:meta", "seq"
        )
    )
    await async_wait_until(lambda: client.position(sub) >= final, timeout=30, what="every event")
    assert client.view(sub) == list(range(1, final + 1))
    await client.close()
