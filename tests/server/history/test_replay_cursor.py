"""The flight recorder's reads: the exact stored text in seq order across SQL and the log, in
small pages, and positions found by time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.filters import EVERYTHING, parse_filter
from server.history.replay_cursor import End, Events, ReplayCursor
from server.history.replay_store import Position, ReplayStore
from tests.support.fixtures_store import T0, log_json, publish, random_events, running_recorder
from tests.support.replay_stream import forget_symbol


@pytest.fixture(autouse=True)
async def _forget_the_symbol(redis_url: str, symbol: str) -> AsyncIterator[None]:
    yield
    await forget_symbol(redis_url, symbol)


async def read_all(cursor: ReplayCursor) -> list[tuple[int, int, str]]:
    items: list[tuple[int, int, str]] = []
    while True:
        step = await cursor.next()
        if isinstance(step, End):
            return items
        assert isinstance(step, Events)
        items.extend(step.items)


@pytest.mark.parametrize("page_rows", [7, 5000])
async def test_the_cursor_gives_the_logs_exact_text_from_sql_and_the_log_tail(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str, page_rows: int
) -> None:
    events = random_events(symbol, 300, seed=4)  # meta objects, non-ASCII text, null pnl/equity
    await publish(redis_url, events[:200])
    logged = await log_json(redis_client, symbol)
    async with running_recorder(redis_url, engine, [symbol]) as recorder:
        await recorder.caught_up(symbol, 200)
    await publish(redis_url, events[200:])  # only in the log
    logged.update(await log_json(redis_client, symbol))
    store = ReplayStore(engine, redis_client)
    start = await store.locate(symbol, T0)
    end = await store.end_mark(symbol, T0 + 10**9)
    assert start.seq == 0 and end is not None and end.seq == 300
    items = await read_all(ReplayCursor(store, symbol, EVERYTHING, start, end, page_rows=page_rows))
    assert [seq for seq, _, _ in items] == list(range(1, 301))
    assert all(text == logged[seq] for seq, _, text in items), "byte for byte the log's text"
    signals = await read_all(
        ReplayCursor(store, symbol, parse_filter({"kinds": ["signal"]}), start, end, page_rows=page_rows)
    )
    assert [s for s, _, _ in signals] == [i + 1 for i, e in enumerate(events) if e.kind == "signal"]


async def test_a_position_is_the_last_event_before_the_time(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    events = random_events(symbol, 100, seed=6)
    await publish(redis_url, events)
    async with running_recorder(redis_url, engine, [symbol]) as recorder:
        await recorder.caught_up(symbol, 100)
    store = ReplayStore(engine, redis_client)
    epoch = (await store.mark_at(symbol, T0 + 10**9)).epoch  # type: ignore[union-attr]
    for at in (T0 + 1, T0 + 30_500, T0 + 99_000):
        position = await store.locate(symbol, at)
        before = max((e.ts, i + 1) for i, e in enumerate(events) if e.ts < at)
        assert position == Position(epoch, before[1], at)


# Only SQLite stores text in an integer column: the hostile row is written there.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_row_sql_should_not_hold_is_left_out_and_the_replay_goes_on(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    from sqlalchemy import text

    from server.history import replay_reads

    events = random_events(symbol, 40, seed=8)
    await publish(redis_url, events)
    async with running_recorder(redis_url, engine, [symbol]) as recorder:
        await recorder.caught_up(symbol, 40)
    async with engine.begin() as connection:  # someone with write access to the database
        await connection.execute(
            text(
                "UPDATE signals SET ts = 'soon' WHERE symbol = :s"
                " AND seq = (SELECT min(seq) FROM signals WHERE symbol = :s)"
            ),
            {"s": symbol},
        )  # fmt: skip
    before = replay_reads.dropped_rows
    store = ReplayStore(engine, redis_client)
    end = await store.end_mark(symbol, T0 + 10**9)
    assert end is not None and end.seq == 40
    items = await read_all(ReplayCursor(store, symbol, EVERYTHING, Position(end.epoch, 0, T0), end))
    assert replay_reads.dropped_rows == before + 1
    assert len(items) == 39 and all(text_.startswith('{"seq":') for _, _, text_ in items)
