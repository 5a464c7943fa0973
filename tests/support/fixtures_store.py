"""History-store fixtures: a migrated, empty schema per test, an async Redis client, and
helpers to publish realistic events and record them."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers.connection import async_client
from publishers.events import BotStatus, Candle, Event, Signal, Trade
from server.history.engine import create_engine
from server.history.migrate import upgrade_database
from server.history.models import Base
from server.history.recorder import Recorder
from server.settings import RecorderSettings
from tests.support import async_wait_until

BOTS = (("momo-1", "momentum"), ("ema-1", "ema_crossover"), ("mr-1", "mean_reversion"))
T0 = 1_732_560_000_000


async def reset_schema(url: str) -> None:
    """Drop every signalpush table and the migration history (PostgreSQL is shared between tests)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.drop_all)
            await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await engine.dispose()


@pytest.fixture
async def store_url(database_url: str) -> str:
    """``database_url`` with a freshly migrated, empty schema."""
    await reset_schema(database_url)
    await upgrade_database(database_url)
    return database_url


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = async_client(redis_url)
    yield client
    await client.aclose()


def random_events(symbol: str, count: int, seed: int, *, t0: int = T0) -> list[Event]:
    """A mixed, realistic-looking stream: candles with live updates, signals, trades, statuses."""
    rng = random.Random(seed)
    events: list[Event] = []
    price, candle_ts = 100.0, t0
    for i in range(count):
        ts = t0 + i * 1000
        bot, strategy = rng.choice(BOTS)
        who = {"symbol": symbol, "ts": ts, "bot": bot, "strategy": strategy}
        roll = rng.random()
        price *= 1 + rng.uniform(-0.01, 0.01)
        if roll < 0.4:
            if rng.random() < 0.5:
                candle_ts += 60_000  # else: an update of the live candle
            close = price * rng.uniform(0.995, 1.005)
            volume = round(rng.uniform(0, 5), 3)
            ohlc = {"open": price, "high": price * 1.01, "low": price * 0.99, "close": close}
            events.append(Candle(symbol=symbol, ts=candle_ts, tf="1m", volume=volume, **ohlc))
        elif roll < 0.7:
            kind = rng.choice(("buy", "sell", "hold"))
            confidence = rng.choice((0.0, 0.25, 0.5, 0.75, 1.0, rng.random()))
            meta = {"i": i, "note": "ü"} if rng.random() < 0.2 else {}
            events.append(Signal(**who, type=kind, price=price, confidence=confidence, meta=meta))
        elif roll < 0.9:
            exit_ = rng.random() < 0.5
            events.append(
                Trade(
                    **who,
                    side=rng.choice(("buy", "sell")),
                    action="exit" if exit_ else "entry",
                    price=price,
                    qty=rng.uniform(0.1, 2),
                    fee=0.01,
                    pnl=rng.uniform(-5, 5) if exit_ else None,
                    position=f"p-{i}",
                )
            )
        else:
            equity = rng.choice((None, 10_000 + rng.uniform(-100, 100)))
            events.append(BotStatus(**who, status=rng.choice(("active", "paused")), equity=equity))
    return events


async def publish(redis_url: str, events: Sequence[Event]) -> list[int]:
    from publishers.publisher import Publisher

    async with Publisher(redis_url) as publisher:
        return await publisher.publish_many(events)


async def log_json(client: aioredis.Redis, symbol: str) -> dict[int, str]:
    """seq -> the event JSON exactly as the log holds it."""
    from publishers import keys

    entries = await client.xrange(keys.log_key(symbol))
    return {int(entry_id.decode().split("-")[0]): fields[b"e"].decode() for entry_id, fields in entries}


@dataclass
class RunningRecorder:
    recorder: Recorder
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def caught_up(self, symbol: str, seq: int, timeout: float = 20.0) -> None:
        await async_wait_until(
            lambda: self.recorder.committed().get(symbol, 0) >= seq,
            timeout=timeout,
            what=f"the recorder to commit {symbol} up to {seq}",
        )


@contextlib.asynccontextmanager
async def running_recorder(
    redis_url: str, database: str | AsyncEngine, symbols: Sequence[str] | None, **options: Any
) -> AsyncIterator[RunningRecorder]:
    """A Recorder running in a task (stopped, and awaited, on exit)."""
    settings = RecorderSettings(
        batch_size=options.pop("batch_size", 200),
        batch_wait_ms=options.pop("batch_wait_ms", 200),
        block_ms=50,
        trim=options.pop("trim", True),
    )
    recorder = Recorder(redis_url, database, settings, symbols=symbols, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        yield RunningRecorder(recorder, stop, task)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
