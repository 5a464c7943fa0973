"""The conformance suite's harness: the server side only. It runs what ``signalpush serve`` runs
(gateway, history store, recorder) and publishes events as bots do; the tests themselves
talk to it through the wire format alone (tests/conformance/wire.py, no project imports)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from publishers import Publisher, keys
from publishers.connection import async_client
from publishers.events import Candle, Event, Signal, now_ms
from server.cli.embedded import EmbeddedRedis
from server.history.engine import create_engine
from server.history.models import TABLES
from tests.conformance.wire import CLIENTS, Conn, open_conn
from tests.support import async_wait_until
from tests.support.gateway import serving


@dataclass
class Harness:
    """A running server and the bots' side of it."""

    ws_url: str
    redis_url: str
    database_url: str

    def symbol(self) -> str:
        return f"C{secrets.token_hex(4).upper()}"

    async def publish(self, events: list[Event]) -> list[int]:
        async with Publisher(self.redis_url) as publisher:
            return await publisher.publish_many(events)

    async def signals(
        self,
        symbol: str,
        count: int,
        *,
        pad: int = 0,
        bot: str = "momo-1",
        strategy: str = "momentum",
        t0: int | None = None,
    ) -> list[int]:
        """``count`` signals (``pad`` bytes of meta each, to make big frames); returns their seqs."""
        start = (t0 or now_ms()) - count
        meta = {"note": "x" * pad} if pad else {}
        return await self.publish(
            [
                Signal(symbol=symbol, ts=start + i, bot=bot, strategy=strategy, type="buy",
                       price=100.0 + i, confidence=0.5, meta=meta)
                for i in range(count)
            ]
        )  # fmt: skip

    async def candles(self, symbol: str, count: int) -> list[int]:
        start = now_ms() - count * 60_000
        return await self.publish(
            [
                Candle(symbol=symbol, ts=start + i * 60_000, tf="1m", open=1.0, high=2.0, low=0.5,
                       close=1.5, volume=3.0)
                for i in range(count)
            ]
        )  # fmt: skip

    async def wait_recorded(self, symbol: str, count: int) -> None:
        """Until SQL holds ``count`` signals of ``symbol`` (the recorder's work)."""
        engine = create_engine(self.database_url)
        table = TABLES["signal"]

        async def recorded() -> bool:
            async with engine.connect() as connection:
                statement = select(func.count()).select_from(table).where(table.c.symbol == symbol)
                return (await connection.scalar(statement) or 0) >= count

        try:
            await async_wait_until(recorded, timeout=20, what=f"{count} signals of {symbol} in SQL")
        finally:
            await engine.dispose()

    async def lose_state(self, symbol: str) -> None:
        """What a Redis reset does to a symbol: its meta and log are gone (a new epoch follows)."""
        client = async_client(self.redis_url)
        try:
            await client.delete(keys.meta_key(symbol), keys.log_key(symbol))
        finally:
            await client.aclose()


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    """Every conformance test runs with both client implementations."""
    return str(request.param)


@pytest.fixture
async def harness(redis_url: str, store_url: str) -> AsyncIterator[Harness]:
    async with serving(redis_url, store_url) as running:
        yield Harness(running.ws_url, redis_url, store_url)


@pytest.fixture
async def own_harness(
    own_redis: EmbeddedRedis, store_url: str
) -> AsyncIterator[tuple[Harness, EmbeddedRedis]]:
    """A server on a Redis the test may stop."""
    async with serving(own_redis.url, store_url) as running:
        yield Harness(running.ws_url, own_redis.url, store_url), own_redis


@pytest.fixture
async def connect(client_kind: str) -> AsyncIterator[Callable[[str], Awaitable[Conn]]]:
    opened: list[Conn] = []

    async def open_one(url: str) -> Conn:
        conn = await open_conn(client_kind, url)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        await conn.close()  # also after the server closed it (the client's own resources)
