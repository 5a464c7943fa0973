"""Recorder batches: closed by count or by time, one commit each; bots written only on change."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers.events import BotStatus, Signal
from server.history.models import BotRow
from tests.support.fixtures_store import T0, publish, running_recorder


def _signals(symbol: str, count: int, start: int = 0) -> list[Signal]:
    return [
        Signal(
            symbol=symbol,
            ts=T0 + 1_000 * (start + i),
            bot="momo",
            strategy="s",
            type="buy",
            price=1.0,
            confidence=0.5,
        )
        for i in range(count)
    ]


async def test_a_batch_closes_at_batch_size(redis_url: str, engine: AsyncEngine, symbol: str) -> None:
    seqs = await publish(redis_url, _signals(symbol, 500))
    # A wait far longer than the test: only the count can close these batches.
    async with running_recorder(redis_url, engine, [symbol], batch_size=100, batch_wait_ms=10_000) as running:
        await running.caught_up(symbol, seqs[-1])
        stats = running.recorder.stats()
    assert stats["events_recorded"] == 500 and stats["batches"] == 5


async def test_events_arriving_within_the_wait_share_one_commit(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    async with running_recorder(redis_url, engine, [symbol], batch_size=1000, batch_wait_ms=3_000) as running:
        seqs: list[int] = []
        for i in range(20):  # twenty publish calls, each one event
            seqs += await publish(redis_url, _signals(symbol, 1, start=i))
        await running.caught_up(symbol, seqs[-1])
        stats = running.recorder.stats()
    assert stats["events_recorded"] == 20
    assert stats["batches"] <= 2  # the first read opens the batch; the rest joins it within 3 s


async def test_the_bot_row_is_current_after_the_batches(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    events = [
        *_signals(symbol, 300),
        BotStatus(symbol=symbol, ts=T0 + 400_000, bot="momo", strategy="s", status="paused", equity=2.0),
    ]
    seqs = await publish(redis_url, events)
    async with running_recorder(redis_url, engine, [symbol], batch_size=50) as running:
        await running.caught_up(symbol, seqs[-1])
    async with engine.connect() as connection:
        rows = (await connection.execute(select(BotRow.__table__).where(BotRow.name == "momo"))).all()
    # Other bots may be there: the recorder copies the shared Redis's bot registry (other tests').
    (row,) = rows
    assert (row.first_seen, row.last_seen, row.status, row.equity) == (T0, T0 + 400_000, "paused", 2.0)
