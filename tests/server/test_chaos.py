"""The gap-free invariant under chaos: steady publishing, 50 churning clients, gateway SIGKILLs.

Seeded and bounded: every client's received events must equal the published events of
its symbol under its filter after its starting position, with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from publishers import Publisher
from publishers.events import BotStatus, Event, Signal, Trade, now_ms
from server.cli.embedded import die_with_parent_hook
from server.history.engine import create_engine
from tests.support import async_wait_until, scaled
from tests.support.chaos import FILTERS, ChaosClient, expected, stop_all
from tests.support.process import REPO, ServerProcess

SEED = 20261126


class RecorderProcess:
    """``signalpush record`` as a child process we can SIGKILL and start again."""

    def __init__(self, redis_url: str, env: dict[str, str], log_path: Path) -> None:
        self.command = [sys.executable, "-m", "server.cli.main", "record", "--redis-url", redis_url]
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent_hook(),
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


async def stored_rows(database_url: str, symbols: list[str]) -> list[tuple[str, str, int]]:
    engine = create_engine(database_url)
    rows: list[tuple[str, str, int]] = []
    try:
        async with engine.connect() as connection:
            for kind, table in (("signal", "signals"), ("trade", "trades"), ("bot", "bot_status")):
                query = text(f"SELECT symbol, seq FROM {table} WHERE symbol IN :symbols").bindparams(
                    bindparam("symbols", expanding=True)
                )
                rows += [
                    (kind, row[0], int(row[1]))
                    for row in await connection.execute(query, {"symbols": symbols})
                ]
    finally:
        await engine.dispose()
    return rows


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
async def test_clients_get_exactly_their_events_through_gateway_and_recorder_kills(
    redis_url: str, store_url: str, symbol: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    symbols = [f"{symbol}{suffix}" for suffix in "ABC"]
    env = {
        "SIGNALPUSH_SERVER_HEARTBEAT_S": "1",
        "SIGNALPUSH_DATABASE_URL": store_url,
        "SIGNALPUSH_RECORDER_ENABLED": "0",
        "SIGNALPUSH_RECORDER_CLAIM_IDLE_MS": "500",
    }
    gateway = ServerProcess("serve", "--redis-url", redis_url, env=env)
    gateway.start()
    recorder = RecorderProcess(
        redis_url, {**env, "SIGNALPUSH_RECORDER_ENABLED": "1"}, tmp_path / "recorder.log"
    )
    recorder.start()
    try:
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
            for round_number, pause in enumerate((3.0, 3.0)):
                await asyncio.sleep(pause)
                gateway.kill()  # SIGKILL: no goodbye to anyone
                if round_number == 0:
                    recorder.kill()  # mid-batch or not: SQL must still hold everything exactly once
                await asyncio.sleep(rng.uniform(0.2, 1.0))
                await asyncio.to_thread(gateway.start)
                if round_number == 0:
                    recorder.start()
            await asyncio.sleep(3.0)
            stop_publishing.set()
            await publisher
            last = {s: max(e["seq"] for e in published if e["symbol"] == s) for s in symbols}
            try:
                await async_wait_until(
                    lambda: all(c.start is not None and c.position >= last[c.symbol] for c in clients),
                    timeout=30,
                    what="every client to reach the last seq of its symbol",
                )
            except AssertionError as exc:
                behind = [
                    (c.name, c.symbol, c.filter, c.position, last[c.symbol], c.connects, c.problems[:2])
                    for c in clients
                    if c.start is None or c.position < last[c.symbol]
                ]
                raise AssertionError(f"{exc}; behind: {behind}; server log: {gateway.log_path}") from None
        finally:
            stop_clients.set()
            await asyncio.wait_for(stop_all(tasks), scaled(20))
            gateway.kill()
        try:
            expected_rows = sorted((e["kind"], e["symbol"], e["seq"]) for e in published)

            async def recorded() -> bool:
                return sorted(await stored_rows(store_url, symbols)) == expected_rows

            await async_wait_until(recorded, timeout=30, what="SQL to hold every published event")
        finally:
            recorder.kill()
        rows = await stored_rows(store_url, symbols)
        assert len(rows) == len(set(rows)) == len(published), "every event exactly once in SQL"
        for client in clients:
            assert client.problems == [], f"{client.name}: {client.problems[:3]}"
            got = [item["seq"] for item in client.items]
            assert got == expected(client, published), f"{client.name} ({client.filter}) differs"
        assert sum(c.connects for c in clients) > 150, "the clients really did churn and reconnect"
        assert len(published) > 500
    finally:
        recorder.kill()
        gateway.kill()
