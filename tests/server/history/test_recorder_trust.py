"""The recorder treats everything in Redis as untrusted: a bad registry name, a symbol whose keys
are unusable or a bad log entry is skipped (logged, counted); every other symbol keeps recording."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, build_call
from tests.server.history.test_recorder import stored
from tests.support import async_wait_until
from tests.support.fixtures_store import publish, random_events, running_recorder

BAD_NAMES = (b"\xff\xfeBAD", b"BTCUSDT\n", b"a b", b"x" * 40)


async def test_registry_names_that_are_not_symbols_are_skipped_and_recording_goes_on(
    redis_url: str,
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    symbol: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="server.history.recorder")
    await redis_client.sadd(keys.SYMBOLS_KEY, *BAD_NAMES)
    try:
        async with running_recorder(redis_url, engine, None, symbol_refresh_s=0.05) as running:
            seqs = await publish(redis_url, random_events(symbol, 30, seed=21))
            await running.caught_up(symbol, seqs[-1])
            await asyncio.sleep(0.2)  # several registry reads
            assert not running.task.done(), "the recorder is still running"
            stats = running.recorder.stats()
            assert stats["invalid_names"] == len(BAD_NAMES) and stats["redis_up"]
            assert all(name.isascii() and "\n" not in name for name in running.recorder.lag())
        logged = [r for r in caplog.records if "not symbols" in r.getMessage()]
        assert len(logged) == 1, "once per minute, whatever the number of reads"
    finally:
        await redis_client.srem(keys.SYMBOLS_KEY, *BAD_NAMES)
    assert [seq for _, seq, _ in await stored(engine, symbol)] == seqs


@pytest.mark.parametrize("with_meta", [False, True], ids=["log-only", "meta-and-log"])
async def test_a_symbol_with_a_log_of_the_wrong_type_does_not_stall_the_others(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str, with_meta: bool
) -> None:
    poison, good = f"{symbol}P", f"{symbol}G"
    if with_meta:
        await publish(redis_url, random_events(poison, 5, seed=22))
        await redis_client.delete(keys.log_key(poison))
    await redis_client.hset(keys.log_key(poison), "a", "b")
    async with running_recorder(redis_url, engine, [poison, good]) as running:
        for round_ in range(3):
            seqs = await publish(redis_url, random_events(good, 20, seed=23 + round_))
            await running.caught_up(good, seqs[-1], timeout=5)
            assert running.recorder.stats()["redis_up"], "one symbol's keys are not Redis being down"
        await async_wait_until(lambda: poison in running.recorder.unrecordable(), what="the poison reported")
        assert (
            "not a stream" in running.recorder.unrecordable()[poison]
            or "WRONGTYPE" in (running.recorder.unrecordable()[poison])
        )
        await async_wait_until(
            lambda: running.recorder.lag().get(poison) == (5 if with_meta else 0), what="the poison's lag"
        )
        assert running.recorder.lag()[good] == 0
        assert running.recorder.stats()["unrecordable"] == 1
        # Repaired: recorded again from where it was.
        await redis_client.delete(keys.log_key(poison))
        more = await publish(redis_url, random_events(poison, 3, seed=26))
        await running.caught_up(poison, more[-1], timeout=90)
        assert running.recorder.unrecordable() == {}
    assert [seq for _, seq, _ in await stored(engine, good)] == list(range(1, 61))


def publish_raw(url: str, symbol: str, bodies: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.script_load(PUBLISH_SCRIPT)
    call = build_call(symbol, bodies, publisher_id="", call_number=1, log_maxlen=10_000)
    client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
    client.close()


async def test_invalid_entries_are_void_seqs_skipped_exactly_as_the_live_path_skips_them(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    good = f'"kind":"signal","symbol":"{symbol}","ts":1732560000000,"bot":"b","strategy":"s","type":"buy",'
    bodies = [
        good + '"price":2,"confidence":1,"meta":{}}',  # 1: whole numbers are numbers: kept
        f'"kind":"signal","symbol":"{symbol}"}}',  # 2: fields missing
        good.replace(symbol, "OTHERSYM") + '"price":1.0,"confidence":0.5,"meta":{}}',  # 3: another symbol
        good + '"price":1%s,"confidence":0.5,"meta":{}}' % ("0" * 400),  # 4: a number no float holds
        good + '"price":NaN,"confidence":0.5,"meta":{}}',  # 5: NaN
        good + '"price":1.5,"confidence":0.5,"meta":{"deep":"\\u0000 ok"}}',  # 6: kept
    ]
    publish_raw(redis_url, symbol, bodies)
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, 6)
        assert running.recorder.stats()["skipped"] == 4
        assert not running.task.done()
    rows = await stored(engine, symbol)
    assert [seq for _, seq, _ in rows] == [1, 6]
    assert json.loads(rows[1][2])["meta"] == {"deep": "\x00 ok"}


async def test_a_replay_over_recorded_void_seqs_is_complete_not_a_reset(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    from server.core.filters import EVERYTHING
    from server.history.reads import load_after

    valid = (
        f'"kind":"signal","symbol":"{symbol}","ts":1732560000000,"bot":"b","strategy":"s","type":"buy",'
        '"price":1.0,"confidence":0.5,"meta":{}}'
    )
    publish_raw(redis_url, symbol, [valid, '"kind":"meteor"}', valid, "garbage", valid])
    await redis_client.xadd(keys.log_key(symbol), {"x": "no event field"}, id="6-0")
    await redis_client.hset(keys.meta_key(symbol), "seq", 6)
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, 6)
    assert await redis_client.xlen(keys.log_key(symbol)) == 0, "all trimmed: replays come from SQL"
    epoch = (await redis_client.hget(keys.meta_key(symbol), "epoch")).decode()
    after = await load_after(engine, redis_client, symbol, EVERYTHING, epoch=epoch, seq=0, limit=100)
    assert after.reset_reason is None and after.complete and after.reached == 6
    assert [json.loads(e)["seq"] for e in after.events] == [1, 3, 5]


async def test_rows_the_database_refuses_for_one_symbol_do_not_stop_the_others(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    from sqlalchemy import text

    from publishers.events import Signal, Trade

    signals, trades = f"{symbol}S", f"{symbol}T"
    async with engine.begin() as connection:  # the trades table is gone: only trades are refused
        await connection.execute(text("ALTER TABLE trades RENAME TO trades_away"))
    who = {"ts": 1_732_560_000_000, "bot": "b", "strategy": "s"}
    await publish(redis_url, [Signal(symbol=signals, **who, type="buy", price=1.0, confidence=0.5)] * 3)
    await publish(redis_url, [Trade(symbol=trades, **who, side="buy", action="entry", price=1.0, qty=1.0,
                                    position="p")] * 2)  # fmt: skip
    async with running_recorder(redis_url, engine, [signals, trades]) as running:
        await running.caught_up(signals, 3)
        await async_wait_until(lambda: trades in running.recorder.unrecordable(), what="trades refused")
        assert running.recorder.stats()["database_up"]
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE trades_away RENAME TO trades"))
        await running.caught_up(trades, 2, timeout=90)
    assert [seq for _, seq, _ in await stored(engine, trades)] == [1, 2]


async def test_an_entry_far_above_the_meta_seq_is_left_out_and_later_events_are_still_recorded(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    """A publisher credential can XADD any id: the recorder's group must not jump past it, or the
    events published once the entry is removed would never be delivered and be trimmed unrecorded."""
    log_key = keys.log_key(symbol)
    first = await publish(redis_url, random_events(symbol, 10, seed=31))
    far = "99999999999-0"
    await redis_client.xadd(log_key, {"e": '{"seq":99999999999,"kind":"meteor"}'}, id=far)
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, first[-1])
        await async_wait_until(lambda: running.recorder.stats()["forged"] >= 1, what="the far entry left out")
        # The operator's repair (docs/history.md): remove the entry and put the log's last id back.
        await redis_client.xdel(log_key, far)
        await redis_client.execute_command("XSETID", log_key, f"{first[-1]}-0")
        more = await publish(redis_url, random_events(symbol, 10, seed=32))
        await running.caught_up(symbol, more[-1])
    assert [seq for _, seq, _ in await stored(engine, symbol)] == list(range(1, 21))
