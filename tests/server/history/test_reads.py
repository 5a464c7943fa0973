"""load_window / load_after against what was published: SQL part, log part and the boundary between them."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.connection import async_client
from publishers.events import KINDS, SIDES, SIGNAL_TYPES, Candle, Signal
from server.cli.embedded import EmbeddedRedis
from server.core.filters import EVERYTHING, EventFilter, parse_filter
from server.errors import BusError, StoreError
from server.history import reads as history
from server.history.queries import WINDOW_FIELDS
from server.history.reads import AfterResult, history_payload, load_after, load_window
from server.history.writer import insert_events
from tests.support.fixtures_store import (
    BOTS,
    T0,
    log_json,
    publish,
    random_events,
    reset_schema,
    running_recorder,
)

BIG = 10**9


@dataclass
class Published:
    """What a test published on its symbol: event dicts by seq and their exact log JSON."""

    symbol: str
    epoch: str
    events: dict[int, dict[str, Any]]
    json: dict[int, str]

    @property
    def last(self) -> int:
        return max(self.events)


async def publish_and_capture(
    redis_url: str, client: aioredis.Redis, symbol: str, count: int, seed: int, t0: int
) -> Published:
    events = random_events(symbol, count, seed, t0=t0)
    seqs = await publish(redis_url, events)
    logged = await log_json(client, symbol)
    epoch = (await client.hget(keys.meta_key(symbol), "epoch")).decode()
    return Published(
        symbol,
        epoch,
        {seq: event.to_dict(seq) for seq, event in zip(seqs, events, strict=True)},
        {seq: logged[seq] for seq in seqs},
    )


@pytest.fixture
async def split_history(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> Published:
    """300 events recorded into SQL (and trimmed from the log), then 200 more only in the log."""
    first = await publish_and_capture(redis_url, redis_client, symbol, 300, seed=21, t0=T0)
    async with running_recorder(redis_url, engine, [symbol], batch_size=64) as running:
        await running.caught_up(symbol, first.last)
    assert await redis_client.xlen(keys.log_key(symbol)) == 0
    second = await publish_and_capture(redis_url, redis_client, symbol, 200, seed=22, t0=T0 + 300_000)
    assert await redis_client.xlen(keys.log_key(symbol)) == 200
    return Published(symbol, first.epoch, {**first.events, **second.events}, {**first.json, **second.json})


# -- the expected results, computed independently from the published events ---------------------


def expected_window(
    events: dict[int, dict[str, Any]], flt: EventFilter, since_ms: int, max_events: int = BIG, upto: int = BIG
) -> tuple[dict[str, dict[str, list[Any]]], int]:
    chosen = [
        e for seq, e in sorted(events.items()) if seq <= upto and e["ts"] >= since_ms and flt.matches(e)
    ]
    candles: dict[int, dict[str, Any]] = {}
    for event in chosen:
        if event["kind"] == "candle":
            candles[event["ts"]] = event  # a later seq replaces the live candle
    others = sorted((e for e in chosen if e["kind"] != "candle"), key=lambda e: (e["ts"], e["seq"]))
    kept = others[-max_events:]
    data: dict[str, dict[str, list[Any]]] = {}
    for kind in KINDS:
        if not flt.wants_kind(kind):
            continue
        if kind == "candle":
            rows = [candles[ts] for ts in sorted(candles)]
        else:
            rows = [e for e in kept if e["kind"] == kind]
        data[kind] = {name: [row[name] for row in rows] for name in WINDOW_FIELDS[kind]}
    return data, len(others) - len(kept)


def expected_after(published: Published, flt: EventFilter, after: int, upto: int) -> list[str]:
    return [published.json[s] for s in range(after + 1, upto + 1) if flt.matches(published.events[s])]


async def replay(
    engine: AsyncEngine,
    client: aioredis.Redis,
    symbol: str,
    flt: EventFilter,
    epoch: str | None,
    seq: int,
    limit: int,
) -> tuple[list[str], AfterResult]:
    """Call load_after from ``seq`` until complete (as the gateway does); checks each call's contract."""
    events: list[str] = []
    for _ in range(10_000):
        result = await load_after(engine, client, symbol, flt, epoch=epoch, seq=seq, limit=limit)
        assert not result.reset, result.reset_reason
        assert len(result.events) <= limit
        assert result.from_seq == seq + 1 and seq <= result.reached <= result.to_seq
        events.extend(result.events)
        epoch, seq = result.epoch, result.reached
        if result.complete:
            return events, result
    raise AssertionError("load_after made no progress")


filters = st.builds(
    lambda kinds, bots, strategies, types, confidence, sides: parse_filter(
        {
            key: value
            for key, value in {
                "kinds": kinds,
                "bots": bots,
                "strategies": strategies,
                "signal_types": types,
                "min_confidence": confidence,
                "sides": sides,
            }.items()
            if value is not None
        }
    ),
    st.none() | st.lists(st.sampled_from(KINDS), unique=True, max_size=3),
    st.none() | st.lists(st.sampled_from([b for b, _ in BOTS]), unique=True, max_size=2),
    st.none() | st.lists(st.sampled_from([s for _, s in BOTS]), unique=True, max_size=2),
    st.none() | st.lists(st.sampled_from(SIGNAL_TYPES), unique=True, max_size=2),
    st.none() | st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    st.none() | st.lists(st.sampled_from(SIDES), unique=True, max_size=1),
)
few = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- load_window --------------------------------------------------------------------------------


async def test_the_window_is_everything_published_across_the_sql_log_boundary(
    engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    window = await load_window(
        engine, redis_client, split_history.symbol, EVERYTHING, since_ms=0, max_points=BIG, max_events=BIG
    )
    data, omitted = expected_window(split_history.events, EVERYTHING, 0)
    assert (window.epoch, window.to_seq) == (split_history.epoch, 500)
    assert window.data == data
    assert (window.truncated, window.omitted) == (False, omitted) == (False, 0)
    assert sum(len(d["ts"]) for k, d in window.data.items() if k != "candle") > 0


@few
@given(flt=filters, since_s=st.integers(0, 500), max_events=st.sampled_from([BIG, 50, 7]))
async def test_the_window_under_random_filters_equals_the_published_events(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    split_history: Published,
    flt: EventFilter,
    since_s: int,
    max_events: int,
) -> None:
    since = T0 + since_s * 1000
    window = await load_window(
        engine, redis_client, split_history.symbol, flt, since_ms=since, max_points=BIG, max_events=max_events
    )
    data, omitted = expected_window(split_history.events, flt, since, max_events)
    assert window.data == data
    assert (window.truncated, window.omitted) == (omitted > 0, omitted)


async def test_the_window_reads_a_long_log_in_chunks(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    split_history: Published,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "LOG_CHUNK", 7)
    window = await load_window(
        engine, redis_client, split_history.symbol, EVERYTHING, since_ms=0, max_points=BIG, max_events=BIG
    )
    assert window.data == expected_window(split_history.events, EVERYTHING, 0)[0]


async def test_candles_are_downsampled_into_ohlcv_buckets(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    start = 1_732_559_400_000  # a multiple of 2 minutes
    bars = [  # (minute, open, high, low, close, volume)
        (0, 10, 12, 9, 11, 1), (1, 11, 15, 10, 14, 2), (2, 14, 14, 8, 9, 3),
        (3, 9, 10, 7, 8, 4), (4, 8, 9, 6, 7, 5), (5, 7, 20, 7, 19, 6),
    ]  # fmt: skip
    candles = [
        Candle(symbol=symbol, ts=start + m * 60_000, tf="1m", open=o, high=h, low=lo, close=c, volume=v)
        for m, o, h, lo, c, v in bars
    ]
    live_update = Candle(
        symbol=symbol, ts=start + 5 * 60_000, tf="1m", open=7, high=21, low=7, close=20, volume=7
    )
    await publish(redis_url, [*candles[:4]])
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, 4)
    await publish(redis_url, [*candles[4:], live_update])  # the last candle updated once, in the log
    window = await load_window(
        engine,
        redis_client,
        symbol,
        parse_filter({"kinds": ["candle"]}),
        since_ms=0,
        max_points=4,
        max_events=10,
    )
    # 6 one-minute candles, 4 points: 2-minute buckets; the live candle's last update counts.
    assert window.data == {
        "candle": {
            "ts": [start, start + 120_000, start + 240_000],
            "open": [10.0, 14.0, 8.0],
            "high": [15.0, 14.0, 21.0],
            "low": [9.0, 7.0, 6.0],
            "close": [14.0, 8.0, 20.0],
            "volume": [3.0, 7.0, 12.0],
        }
    }


async def test_past_max_events_the_latest_are_kept_and_the_frame_says_truncated(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    signals = [
        Signal(symbol=symbol, ts=T0 + i, bot="b", strategy="s", type="buy", price=1.0 + i, confidence=0.5)
        for i in range(30)
    ]
    await publish(redis_url, signals[:20])
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, 20)
    await publish(redis_url, signals[20:])
    window = await load_window(
        engine, redis_client, symbol, EVERYTHING, since_ms=0, max_points=100, max_events=12
    )
    assert window.truncated and window.omitted == 18
    assert window.data["signal"]["seq"] == list(range(19, 31))
    assert window.data["candle"]["ts"] == [] and window.data["trade"]["seq"] == []


async def test_non_finite_numbers_in_sql_become_null(
    engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    # Rows written by an older or foreign writer: the history must still be valid JSON.
    rows = [
        ("old", {"seq": 1, "kind": "trade", "symbol": symbol, "ts": T0, "bot": "b", "strategy": "s",
                 "side": "buy", "action": "exit", "price": 1.0, "qty": 1.0, "fee": 0.0,
                 "pnl": math.inf, "position": "p", "meta": {}}),
        ("old", {"seq": 2, "kind": "bot", "symbol": symbol, "ts": T0 + 1, "bot": "b", "strategy": "s",
                 "status": "active", "equity": -math.inf, "meta": {}}),
    ]  # fmt: skip
    if engine.dialect.name == "postgresql":
        rows[1][1]["equity"] = math.nan  # SQLite stores NaN as NULL anyway
    async with engine.begin() as connection:
        await insert_events(connection, rows)
    window = await load_window(
        engine, redis_client, symbol, EVERYTHING, since_ms=0, max_points=10, max_events=10
    )
    assert window.data["trade"]["pnl"] == [None]
    assert window.data["bot"]["equity"] == [None]
    json.dumps(window.data, allow_nan=False)


async def test_an_unknown_symbol_has_no_epoch_and_an_empty_window(
    engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    window = await load_window(
        engine, redis_client, symbol, EVERYTHING, since_ms=0, max_points=10, max_events=10
    )
    assert (window.epoch, window.to_seq, window.truncated) == (None, 0, False)
    assert all(not column for data in window.data.values() for column in data.values())


async def test_history_payload_is_the_api_body(
    engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    flt = parse_filter({"bots": ["momo-1"]})
    body = await history_payload(engine, redis_client, split_history.symbol, flt, 60 * 24 * 365 * 5, BIG, BIG)
    assert body["epoch"] == split_history.epoch and body["to_seq"] == 500 and body["truncated"] is False
    assert body["data"] == expected_window(split_history.events, flt, 0)[0]
    assert body["filter"] == {"bots": ["momo-1"]}
    json.dumps(body, allow_nan=False)


# -- load_after ---------------------------------------------------------------------------------


@few
@given(flt=filters, start=st.integers(0, 500), limit=st.sampled_from([1, 13, 100, 1000]))
async def test_replay_after_a_seq_is_exactly_the_published_json(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    split_history: Published,
    flt: EventFilter,
    start: int,
    limit: int,
) -> None:
    events, last = await replay(
        engine, redis_client, split_history.symbol, flt, split_history.epoch, start, limit
    )
    assert events == expected_after(split_history, flt, start, 500)
    assert (last.reached, last.to_seq, last.epoch) == (500, 500, split_history.epoch)


async def test_replay_in_small_log_chunks(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    split_history: Published,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "LOG_CHUNK", 7)
    events, _ = await replay(
        engine, redis_client, split_history.symbol, EVERYTHING, split_history.epoch, 250, 40
    )
    assert events == expected_after(split_history, EVERYTHING, 250, 500)


async def test_replay_until_a_seq_stops_there(
    engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    result = await load_after(
        engine, redis_client, split_history.symbol, EVERYTHING,
        epoch=split_history.epoch, seq=280, limit=1000, until_seq=320,
    )  # fmt: skip
    assert (result.reached, result.complete, result.to_seq) == (320, True, 500)
    assert result.events == expected_after(split_history, EVERYTHING, 280, 320)


async def test_a_caller_with_nothing_gets_the_whole_current_epoch(
    engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    events, last = await replay(engine, redis_client, split_history.symbol, EVERYTHING, None, 0, 1000)
    assert events == expected_after(split_history, EVERYTHING, 0, 500)
    assert last.epoch == split_history.epoch


async def test_replay_resets_on_a_foreign_epoch_or_a_seq_ahead(
    engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    stale = await load_after(
        engine, redis_client, split_history.symbol, EVERYTHING, epoch="not-the-epoch", seq=10, limit=10
    )
    assert stale.reset and stale.reset_reason == "epoch changed" and stale.events == []
    ahead = await load_after(
        engine, redis_client, split_history.symbol, EVERYTHING, epoch=split_history.epoch, seq=501, limit=10
    )
    assert ahead.reset and "ahead" in (ahead.reset_reason or "")


async def test_replay_resets_when_events_are_in_neither_place(
    engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    # The hard cap dropped unrecorded entries: seqs 301..350 are gone from the log and never reached SQL.
    await redis_client.xtrim(keys.log_key(split_history.symbol), minid="351-0", approximate=False)
    lost = await load_after(
        engine, redis_client, split_history.symbol, EVERYTHING, epoch=split_history.epoch, seq=290, limit=1000
    )
    assert lost.reset_reason == "50 events in 291..350 were dropped from the log before being recorded"
    fine = await load_after(
        engine, redis_client, split_history.symbol, EVERYTHING, epoch=split_history.epoch, seq=350, limit=1000
    )
    assert fine.events == expected_after(split_history, EVERYTHING, 350, 500)


async def test_after_an_epoch_change_replay_resets_and_the_window_keeps_the_old_epoch(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, split_history: Published
) -> None:
    symbol = split_history.symbol
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, 500)
        await redis_client.delete(keys.meta_key(symbol))  # Redis lost its state
        gone = await load_after(
            engine, redis_client, symbol, EVERYTHING, epoch=split_history.epoch, seq=5, limit=9
        )
        assert gone.reset
        fresh = await publish_and_capture(redis_url, redis_client, symbol, 40, seed=23, t0=T0 + 600_000)
    reset = await load_after(
        engine, redis_client, symbol, EVERYTHING, epoch=split_history.epoch, seq=5, limit=9
    )
    assert reset.reset and reset.reset_reason == "epoch changed" and reset.epoch == fresh.epoch
    window = await load_window(
        engine, redis_client, symbol, EVERYTHING, since_ms=0, max_points=BIG, max_events=BIG
    )
    assert (window.epoch, window.to_seq) == (fresh.epoch, 40)
    old = [e for e in split_history.events.values() if e["kind"] == "signal"]
    new = [e for e in fresh.events.values() if e["kind"] == "signal"]
    assert window.data["signal"]["ts"] == sorted(e["ts"] for e in old + new)  # continuous across epochs
    # Rows of the old epoch carry no seq (seqs restarted): the frame's seqs are the current epoch's.
    by_ts = dict(zip(window.data["signal"]["ts"], window.data["signal"]["seq"], strict=True))
    assert all(by_ts[e["ts"]] is None for e in old if e["ts"] not in {n["ts"] for n in new})
    assert sorted(s for s in window.data["signal"]["seq"] if s is not None) == sorted(e["seq"] for e in new)
    assert all(s <= window.to_seq for s in window.data["signal"]["seq"] if s is not None)


async def test_reads_stay_exact_while_publishing_recording_and_trimming(
    redis_url: str,
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    symbol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "LOG_CHUNK", 25)  # many chunks, so trims land between them
    events = random_events(symbol, 1500, seed=24)
    by_seq = {i + 1: event.to_dict(i + 1) for i, event in enumerate(events)}

    async def publisher() -> None:
        for start in range(0, len(events), 50):
            await publish(redis_url, events[start : start + 50])
            await asyncio.sleep(0.01)

    checks = 0
    async with running_recorder(redis_url, engine, [symbol], batch_size=30) as running:
        feeding = asyncio.create_task(publisher())
        while not feeding.done() or checks < 5:
            window = await load_window(
                engine, redis_client, symbol, EVERYTHING, since_ms=0, max_points=BIG, max_events=BIG
            )
            assert window.data == expected_window(by_seq, EVERYTHING, 0, upto=window.to_seq)[0]
            if window.to_seq:
                start = window.to_seq // 2
                got, last = await replay(engine, redis_client, symbol, EVERYTHING, window.epoch, start, 64)
                assert [json.loads(j) for j in got] == [by_seq[s] for s in range(start + 1, last.reached + 1)]
            checks += 1
        await feeding
        await running.caught_up(symbol, 1500)
    assert checks >= 5


async def test_failures_surface_as_bus_and_store_errors(
    own_redis: EmbeddedRedis,
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    database_url: str,
    symbol: str,
) -> None:
    own_client = async_client(own_redis.url)
    await publish(own_redis.url, random_events(symbol, 5, seed=25))
    own_redis.stop()
    with pytest.raises(BusError, match="cannot read"):
        await load_window(engine, own_client, symbol, EVERYTHING, since_ms=0, max_points=10, max_events=10)
    with pytest.raises(BusError):
        await load_after(engine, own_client, symbol, EVERYTHING, epoch=None, seq=0, limit=10)
    await own_client.aclose()
    await reset_schema(database_url)  # no tables: the database "fails"
    with pytest.raises(StoreError, match="cannot read"):
        await load_window(engine, redis_client, symbol, EVERYTHING, since_ms=0, max_points=10, max_events=10)
    with pytest.raises(ValueError, match="seq: must be at least 0"):
        await load_after(engine, redis_client, symbol, EVERYTHING, epoch=None, seq=-1, limit=10)
