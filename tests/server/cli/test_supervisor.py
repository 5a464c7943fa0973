"""`serve --workers 2`: two gateways on one port; a killed worker is replaced and its clients resume."""

from __future__ import annotations

import os
import signal

import psutil

from publishers import Publisher
from tests.support import async_wait_until
from tests.support.gateway import WsClient
from tests.support.process import ServerProcess


def _worker_pids(supervisor_pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(supervisor_pid).children() if "--worker" in child.cmdline()}


async def test_workers_share_the_port_and_a_killed_one_is_replaced_without_loss(
    redis_url: str, symbol: str
) -> None:
    with ServerProcess("serve", "--redis-url", redis_url, "--workers", "2") as server:
        await async_wait_until(lambda: len(_worker_pids(server.pid)) == 2, what="2 workers")
        clients: list[WsClient] = []

        async def both_workers_answer() -> bool:
            # A worker still starting does not listen yet: the kernel sends everyone to the other.
            clients.append(await WsClient(server.ws_url).connect())
            return len({c.frames[0]["instance"] for c in clients}) == 2 and len(clients) >= 16

        await async_wait_until(both_workers_answer, timeout=30, what="connections on both workers")
        instances = {c.frames[0]["instance"] for c in clients}
        subs = [(await c.subscribe(symbol))["sub"] for c in clients]
        async with Publisher(redis_url, bot="b", strategy="s") as pub:
            for _ in range(5):
                await pub.signal(symbol, "buy", price=1, confidence=0.5)
            for client, sub in zip(clients, subs, strict=True):
                await async_wait_until(lambda c=client, s=sub: c.position(s) == 5, what="first 5")
            epoch = next(f["epoch"] for f in clients[0].frames if f.get("op") == "events")

            victim = int(sorted(instances)[0].rsplit(":", 1)[1])
            os.kill(victim, signal.SIGKILL)
            orphaned = [c for c in clients if c.frames[0]["instance"].endswith(f":{victim}")]
            for client in orphaned:
                await async_wait_until(
                    lambda c=client: c.close_code is not None, what="the dead worker's clients"
                )
            for _ in range(5):
                await pub.signal(symbol, "buy", price=1, confidence=0.5)
            resumed = []
            for client, sub in zip(clients, subs, strict=True):
                if client in orphaned:
                    again = await WsClient(server.ws_url).connect()
                    reply = await again.subscribe(
                        symbol, resume={"epoch": epoch, "seq": client.position(sub)}
                    )
                    resumed.append((client, sub, again, reply["sub"]))
            for _ in range(5):
                await pub.signal(symbol, "buy", price=1, confidence=0.5)
        for client, sub in zip(clients, subs, strict=True):
            if client not in orphaned:
                await async_wait_until(
                    lambda c=client, s=sub: c.position(s) == 15, what="survivors get all 15"
                )
                assert client.seqs(sub) == list(range(1, 16))
        for old, old_sub, again, new_sub in resumed:
            await async_wait_until(lambda c=again, s=new_sub: c.position(s) == 15, what="resumed clients")
            assert old.seqs(old_sub) + again.seqs(new_sub) == list(range(1, 16)), (
                "nothing lost, nothing twice"
            )
        await async_wait_until(
            lambda: len(_worker_pids(server.pid)) == 2 and victim not in _worker_pids(server.pid),
            what="the supervisor to replace the killed worker",
        )
        for client in clients:
            await client.close()
        for _, _, again, _ in resumed:
            await again.close()
