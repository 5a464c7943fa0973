"""The bots table: folded per batch, written only when a row changes, merged in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.history.bots import BotCache, fold, upsert_bots
from server.history.models import BotRow


def _event(kind: str, ts: int, bot: str = "momo", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "ts": ts, "bot": bot, "strategy": "s", **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fold_keeps_first_and_last_seen_and_the_newest_status() -> None:
    bots = fold(
        [
            _event("signal", 20),
            _event("bot", 30, status="running", equity=5.0),
            _event("bot", 25, status="paused"),
            _event("signal", 10),
            {"kind": "candle", "ts": 5},
        ]
    )
    assert list(bots) == ["momo"]
    assert bots["momo"]["first_seen"] == 10 and bots["momo"]["last_seen"] == 30
    assert (bots["momo"]["status"], bots["momo"]["equity"], bots["momo"]["last_status_ts"]) == (
        "running",
        5.0,
        30,
    )


def test_a_bot_is_written_when_new_or_changed_and_last_seen_alone_at_most_once_a_second() -> None:
    clock = Clock()
    cache = BotCache(clock=clock)
    first = cache.to_write(fold([_event("signal", 1000)]))
    assert [row["name"] for row in first] == ["momo"]  # new
    cache.remember(first)
    assert cache.to_write(fold([_event("signal", 1000)])) == []  # nothing changed
    assert cache.to_write(fold([_event("signal", 1200)])) == []  # last_seen only, within the second
    assert cache.dirty()
    clock.now = 1.0
    rows = cache.to_write(fold([_event("signal", 1300)]))
    assert [(r["name"], r["last_seen"]) for r in rows] == [("momo", 1300)]
    cache.remember(rows)
    assert not cache.dirty()
    status = cache.to_write(fold([_event("bot", 1400, status="stopped")]))
    assert [r["status"] for r in status] == ["stopped"]  # a status goes at once
    cache.remember(status)
    earlier = cache.to_write(fold([_event("signal", 5)]))
    assert [r["first_seen"] for r in earlier] == [5]  # an earlier first_seen goes at once


def test_held_back_last_seen_is_flushed_by_due_and_a_rollback_keeps_it_dirty() -> None:
    clock = Clock()
    cache = BotCache(clock=clock)
    cache.remember(cache.to_write(fold([_event("signal", 1000)])))
    assert cache.to_write(fold([_event("signal", 1500)])) == []
    assert cache.due() == []
    clock.now = 1.0
    due = cache.due()
    assert [r["last_seen"] for r in due] == [1500]
    # Not remembered (the transaction rolled back): still due.
    assert [r["last_seen"] for r in cache.due()] == [1500]


def test_the_cache_stays_bounded() -> None:
    cache = BotCache(max_bots=10)
    for i in range(50):
        cache.remember(cache.to_write(fold([_event("signal", 1, bot=f"b{i}")])))
    assert len(cache) <= 10


async def _bots(engine: AsyncEngine) -> dict[str, tuple[Any, ...]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(BotRow.__table__))).all()
    return {
        r.name: (r.first_seen, r.last_seen, r.status, r.equity, r.last_status_ts, r.strategy) for r in rows
    }


async def test_the_upsert_merges_with_the_row_in_sql(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await upsert_bots(connection, list(fold([_event("bot", 100, status="running", equity=1.0)]).values()))
    async with engine.begin() as connection:
        # Older status and a later last_seen: the status stays, last_seen moves, first_seen moves back.
        rows = fold([_event("bot", 50, status="paused"), _event("signal", 200)])
        await upsert_bots(connection, list(rows.values()))
    assert (await _bots(engine))["momo"] == (50, 200, "running", 1.0, 100, "s")
    async with engine.begin() as connection:
        await upsert_bots(
            connection,
            list(
                fold(
                    [_event("bot", 300, status="stopped", strategy="t"), _event("signal", 1, bot="x")]
                ).values()
            ),
        )
    bots = await _bots(engine)
    assert bots["momo"] == (50, 300, "stopped", None, 300, "t")
    assert bots["x"][:3] == (1, 1, None)
