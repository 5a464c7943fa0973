from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.events import Signal
from server.cli.embedded import EmbeddedRedis
from server.history.engine import create_engine
from server.history.models import TABLES, Base
from server.history.queries import event_json, table_of
from server.history.recorder import Recorder
from tests.support import async_wait_until, scaled
from tests.support.fixtures_store import log_json, publish, random_events, running_recorder

REPO = Path(__file__).resolve().parents[3]


async def stored(engine: AsyncEngine, symbol: str) -> list[tuple[str, int, str]]:
    """Every stored event of ``symbol`` as (epoch, seq, event JSON), in (epoch, seq) order."""
    rows: list[tuple[str, int, str]] = []
    async with engine.connect() as connection:
        for kind in TABLES:
            table = table_of(kind)
            for row in (await connection.execute(select(table).where(table.c.symbol == symbol))).all():
                rows.append((row.epoch, row.seq, event_json(kind, row._mapping)))
    return sorted(rows)


async def epoch_of(client: aioredis.Redis, symbol: str) -> str:
    return (await client.hget(keys.meta_key(symbol), "epoch")).decode()


async def test_published_events_end_up_in_sql_exactly_once(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    seqs = await publish(redis_url, random_events(symbol, 700, seed=1))
    published = await log_json(redis_client, symbol)
    epoch = await epoch_of(redis_client, symbol)
    async with running_recorder(redis_url, engine, [symbol], batch_size=128) as running:
        await running.caught_up(symbol, seqs[-1])
        stats = running.recorder.stats()
    assert await stored(engine, symbol) == [(epoch, seq, published[seq]) for seq in seqs]
    assert stats["events_recorded"] == 700 and stats["batches"] >= 700 // 128
    assert stats["lost"] == 0 and stats["skipped"] == 0
    assert running.recorder.lag() == {symbol: 0}


async def test_the_log_is_trimmed_only_behind_commits(
    redis_url: str, store_url: str, redis_client: aioredis.Redis, symbol: str
) -> None:
    seqs = await publish(redis_url, random_events(symbol, 300, seed=2))
    assert await redis_client.xlen(keys.log_key(symbol)) == 300  # no recorder: the log keeps everything
    # The database refuses every insert (its tables are gone): nothing is acknowledged or trimmed.
    broken = create_engine(store_url)
    async with broken.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
    async with running_recorder(redis_url, broken, [symbol]) as running:
        await async_wait_until(lambda: not running.recorder.stats()["database_up"], what="the insert to fail")
        await asyncio.sleep(0.3)  # several retries
        assert await redis_client.xlen(keys.log_key(symbol)) == 300
        assert running.recorder.committed() == {symbol: 0}
        async with broken.begin() as connection:  # the database comes back
            await connection.run_sync(Base.metadata.create_all)
        await running.caught_up(symbol, seqs[-1])
        assert running.recorder.stats()["database_up"]
    assert await redis_client.xlen(keys.log_key(symbol)) == 0
    assert [seq for _, seq, _ in await stored(broken, symbol)] == seqs
    await broken.dispose()


async def test_a_recorder_cancelled_between_commit_and_ack_loses_and_duplicates_nothing(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    class CancelledAfterCommit(Recorder):
        async def _acknowledge(self, client: object, batches: object) -> None:
            raise asyncio.CancelledError  # killed right after COMMIT, before XACK

    seqs = await publish(redis_url, random_events(symbol, 400, seed=3))
    from server.settings import RecorderSettings

    doomed = CancelledAfterCommit(redis_url, engine, RecorderSettings(batch_size=150), symbols=[symbol])
    with pytest.raises(asyncio.CancelledError):
        await doomed.run(asyncio.Event())
    assert [seq for _, seq, _ in await stored(engine, symbol)] == seqs[:150]  # committed, never acknowledged
    pending = await redis_client.xpending(keys.log_key(symbol), keys.RECORDER_GROUP)
    assert pending["pending"] == 150
    # A new recorder (another consumer) claims the dead one's entries once they are idle long enough.
    async with running_recorder(redis_url, engine, [symbol], claim_idle_ms=100) as running:
        await running.caught_up(symbol, seqs[-1])
        assert running.recorder.stats()["claimed"] == 150
    assert [seq for _, seq, _ in await stored(engine, symbol)] == seqs
    pending = await redis_client.xpending(keys.log_key(symbol), keys.RECORDER_GROUP)
    assert pending["pending"] == 0


async def test_two_recorders_share_the_work_without_double_inserts(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    symbols = [symbol, f"{symbol}B", f"{symbol}C"]
    async with (
        running_recorder(redis_url, engine, symbols, batch_size=40) as first,
        running_recorder(redis_url, engine, symbols, batch_size=40) as second,
    ):
        published = await asyncio.gather(
            *(publish(redis_url, random_events(s, 500, seed=4)) for s in symbols)
        )
        for name, seqs in zip(symbols, published, strict=True):
            await first.caught_up(name, seqs[-1])
        counts = first.recorder.stats()["events_recorded"], second.recorder.stats()["events_recorded"]
    for name in symbols:
        rows = await stored(engine, name)
        assert [seq for _, seq, _ in rows] == list(range(1, 501))
    assert sum(counts) >= 1500


async def test_a_new_symbol_is_picked_up_within_a_second(
    own_redis: EmbeddedRedis, engine: AsyncEngine
) -> None:
    async with running_recorder(own_redis.url, engine, None, symbol_refresh_s=0.5) as running:
        await publish(own_redis.url, random_events("FIRST", 5, seed=5))
        await running.caught_up("FIRST", 5)
        started = time.monotonic()
        await publish(own_redis.url, random_events("LATECOMER", 5, seed=6))
        await running.caught_up("LATECOMER", 5)
        assert time.monotonic() - started < scaled(3.0)  # 0.5 s refresh; room for a loaded machine


async def test_a_new_epoch_is_recorded_under_the_new_epoch(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await publish(redis_url, random_events(symbol, 20, seed=7))
        old = await epoch_of(redis_client, symbol)
        await running.caught_up(symbol, 20)
        # Redis "lost its state": the next publish starts a new epoch.
        await redis_client.delete(keys.meta_key(symbol))
        await publish(redis_url, random_events(symbol, 8, seed=8))
        new = await epoch_of(redis_client, symbol)
        await async_wait_until(
            lambda: _count_epoch(engine, symbol, new, 8), what="the new epoch's events to be recorded"
        )
    rows = await stored(engine, symbol)
    assert old != new
    assert [(e, s) for e, s, _ in rows if e == old] == [(old, s) for s in range(1, 21)]
    assert [(e, s) for e, s, _ in rows if e == new] == [(new, s) for s in range(1, 9)]


async def _count_epoch(engine: AsyncEngine, symbol: str, epoch: str, expected: int) -> bool:
    return sum(1 for e, _, _ in await stored(engine, symbol) if e == epoch) == expected


async def test_the_recorder_rides_out_a_redis_restart(own_redis: EmbeddedRedis, engine: AsyncEngine) -> None:
    async with running_recorder(own_redis.url, engine, ["OUTAGE"]) as running:
        await publish(own_redis.url, random_events("OUTAGE", 50, seed=9))
        await running.caught_up("OUTAGE", 50)
        own_redis.stop()
        await async_wait_until(lambda: not running.recorder.stats()["redis_up"], what="the outage to be seen")
        own_redis.start()
        await publish(own_redis.url, random_events("OUTAGE", 50, seed=10))
        await running.caught_up("OUTAGE", 100)
        assert running.recorder.stats()["redis_up"]
    assert [seq for _, seq, _ in await stored(engine, "OUTAGE")] == list(range(1, 101))


async def test_malformed_entries_are_skipped_and_do_not_block_the_log(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    await publish(redis_url, [Signal(symbol=symbol, ts=1_732_560_000_000, bot="b", strategy="s", type="buy",
                                     price=1.0, confidence=0.5)])  # fmt: skip
    await redis_client.hincrby(keys.meta_key(symbol), "seq", 1)
    await redis_client.xadd(keys.log_key(symbol), {keys.LOG_FIELD: "not json"}, id="2-0")
    await publish(redis_url, random_events(symbol, 3, seed=11))
    async with running_recorder(redis_url, engine, [symbol]) as running:
        await running.caught_up(symbol, 5)
        assert running.recorder.stats()["skipped"] == 1
    assert [seq for _, seq, _ in await stored(engine, symbol)] == [1, 3, 4, 5]


@pytest.mark.slow
async def test_a_killed_recorder_process_then_a_restart_records_everything_once(
    own_redis: EmbeddedRedis, store_url: str, engine: AsyncEngine
) -> None:
    total = 6000
    await publish(own_redis.url, random_events("KILLED", total, seed=12))
    env = {**os.environ, "SIGNALPUSH_RECORDER_BATCH_SIZE": "50", "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "server.cli.main", "record"),
        *("--redis-url", own_redis.url, "--database-url", store_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    try:
        await async_wait_until(
            lambda: _stored_count_between(engine, "KILLED", 1, total - 1),
            timeout=60,
            what="partial recording",
        )
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), 10)
    assert len(await stored(engine, "KILLED")) < total
    async with running_recorder(own_redis.url, engine, ["KILLED"], claim_idle_ms=200) as running:
        await running.caught_up("KILLED", total, timeout=60)
    assert [seq for _, seq, _ in await stored(engine, "KILLED")] == list(range(1, total + 1))


async def _stored_count_between(engine: AsyncEngine, symbol: str, low: int, high: int) -> bool:
    return low <= len(await stored(engine, symbol)) <= high


async def test_consumers_of_recorders_that_went_away_are_forgotten(
    redis_url: str,
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    symbol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.history import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "_DEAD_CONSUMER_IDLE_MS", -1)
    monkeypatch.setattr(recorder_module, "_CONSUMER_SWEEP_EVERY_S", 0.0)
    await publish(redis_url, random_events(symbol, 3, seed=13))
    log = keys.log_key(symbol)
    await redis_client.xgroup_create(log, keys.RECORDER_GROUP, id="0")
    await redis_client.xreadgroup(keys.RECORDER_GROUP, "holder", {log: ">"}, count=1)  # keeps seq 1 pending
    await redis_client.xgroup_createconsumer(log, keys.RECORDER_GROUP, "ghost")

    async def names() -> set[str]:
        return {c["name"].decode() for c in await redis_client.xinfo_consumers(log, keys.RECORDER_GROUP)}

    async def ghost_gone() -> bool:
        return "ghost" not in await names()

    async with running_recorder(redis_url, engine, [symbol]) as running:
        await async_wait_until(ghost_gone, what="the idle consumer to be deleted")
        assert "holder" in await names()  # it still holds an entry: kept (and claimed in time)
        assert running.recorder.consumer in await names()
