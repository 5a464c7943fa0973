"""The bot registry (publishers/registry.py) and its copy into SQL (server/history/bot_registry.py):
stable ids given in Redis, statuses published before a bot's first symbol, hostile entries."""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.events import BotStatus, Signal, now_ms
from publishers.publisher import Publisher
from publishers.registry import parse_bot_id
from server.analytics.service import BotDataService, make_filter
from server.history.bot_registry import (
    RegistryStatus,
    SyncResult,
    apply_registry,
    parse_ids,
    parse_statuses,
)
from server.history.models import BotRow
from server.history.writer import insert_events
from tests.support import async_wait_until
from tests.support.fixtures_store import running_recorder


async def bots_in_sql(engine: AsyncEngine) -> dict[str, tuple[int, str | None]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(BotRow.name, BotRow.id, BotRow.status))).all()
    return {row.name: (row.id, row.status) for row in rows}


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def test_a_bot_that_says_active_before_its_first_signal_is_active_in_sql_with_its_registry_id(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    name = fresh_name("early")
    async with Publisher(redis_url, bot=name, strategy="momentum") as publisher:
        assert await publisher.status("active", equity=1000.0) == 0  # no symbol yet: the registry only
        bot_id = publisher.bot_ids[name]
        assert isinstance(bot_id, int) and bot_id > 0
        async with running_recorder(redis_url, engine, [symbol]) as running:
            await async_wait_until(
                lambda: _has(engine, name, (bot_id, "active")), what="the registry's status in SQL"
            )
            service = BotDataService(engine=engine)
            active = await service.get_bots_async(make_filter(active_only=True))
            assert name in set(active["name"])
            seq = await publisher.signal(symbol, type="buy", price=100.0, confidence=0.9)
            await running.caught_up(symbol, seq)
            signals = await service.get_signals_async(make_filter(active_only=True, symbols=symbol), 0)
        assert list(signals["bot"]) == [name]
    assert (await bots_in_sql(engine))[name] == (bot_id, "active")  # the same id after its events


async def _has(engine: AsyncEngine, name: str, expected: tuple[int, str]) -> bool:
    return (await bots_in_sql(engine)).get(name) == expected


async def test_every_publisher_of_a_bot_gets_the_same_id(redis_url: str, symbol: str) -> None:
    name, other = fresh_name("same"), fresh_name("other")
    async with Publisher(redis_url, bot=name, strategy="s") as first:
        await first.signal(symbol, type="buy", price=1.0, confidence=0.5)
    async with Publisher(redis_url, bot=name, strategy="s") as second:
        await second.status("paused", symbol=symbol)
        await second.signal(symbol, type="sell", price=1.0, confidence=0.5, bot=other)
    assert first.bot_ids[name] == second.bot_ids[name] != second.bot_ids[other]
    client = aioredis.Redis.from_url(redis_url)
    try:
        entry = json.loads(await client.hget(keys.BOTS_KEY, name))
    finally:
        await client.aclose()
    assert entry["id"] == first.bot_ids[name] and entry["status"] == "paused" and entry["symbols"] == [symbol]


def _status(ts: int, status: str = "active") -> RegistryStatus:
    return RegistryStatus(strategy="s", status=status, equity=None, ts=ts)


async def test_sql_ids_move_to_the_registry_ids_whatever_order_the_writer_met_the_bots(
    engine: AsyncEngine,
) -> None:
    ts = now_ms()
    events = [
        Signal(symbol="AAA", ts=ts, bot=bot, strategy="s", type="buy", price=1.0, confidence=0.5)
        for bot in ("a", "b", "c")
    ]
    async with engine.begin() as connection:  # the writer numbers them in the order it met them
        await insert_events(connection, [("e1", {**e.to_dict(), "seq": i + 1}) for i, e in enumerate(events)])
    assert await bots_in_sql(engine) == {"a": (1, None), "b": (2, None), "c": (3, None)}
    async with engine.begin() as connection:  # the registry says b=1, a=2, d=3 (d: status only)
        result = await apply_registry(
            connection, {"b": 1, "a": 2, "d": 3}, {"d": _status(ts), "a": _status(ts, "paused")}
        )
    assert (result.moved, result.inserted, result.statuses) == (2, 1, 1)
    assert await bots_in_sql(engine) == {
        "b": (1, None),
        "a": (2, "paused"),
        "d": (3, "active"),
        "c": (4, None),  # unregistered, moved off a registry id
    }
    late = BotStatus(symbol="AAA", ts=ts + 1, bot="e", strategy="s", status="active")
    async with engine.begin() as connection:  # a new bot the writer meets later gets a free id
        await insert_events(connection, [("e1", {**late.to_dict(), "seq": 9})])
        again = await apply_registry(connection, {"b": 1, "a": 2, "d": 3}, {"a": _status(ts - 5)})
    assert (await bots_in_sql(engine))["e"] == (5, "active")
    assert (again.moved, again.inserted, again.statuses) == (0, 0, 0)  # older status: SQL's stays


def test_hostile_registry_entries_are_dropped_and_counted() -> None:
    result = SyncResult()
    ids = parse_ids(
        {
            b"ok": b"7",
            b"neg": b"-1",
            b"zero": b"0",
            b"huge": b"99999999999",
            b"\xff": b"3",
            b"x": b"abc",
            b"dup1": b"9",
            b"dup2": b"9",
        },
        result,
    )
    assert ids == {"ok": 7} and result.dropped == {"id": 5, "duplicate id": 2}
    ts = now_ms()
    good = {"strategy": "s", "status": "active", "equity": 1.5, "ts": ts}
    raw: dict[Any, Any] = {
        b"good": json.dumps(good),
        b"bad-json": b"{",
        b"not-object": b"[1]",
        b"bad-status": json.dumps({**good, "status": "asleep"}),
        b"bad-ts": json.dumps({**good, "ts": "soon"}),
        b"bad-equity": json.dumps({**good, "equity": "rich"}),
        b"huge": b"x" * 5000,
    }
    statuses = parse_statuses(raw, result)
    assert statuses == {"good": RegistryStatus(strategy="s", status="active", equity=1.5, ts=ts)}
    assert result.dropped["status"] == 6
    assert [parse_bot_id(v) for v in (b"12", "12", 12, None, b"1.5")] == [12, 12, None, None, None]


async def test_a_publisher_user_from_before_the_ids_still_publishes(redis_url: str, symbol: str) -> None:
    """A Redis user made by an older ``signalpush acl`` cannot touch sp:bot_ids: the bot gets no id,
    its events and its registry status are published all the same."""
    import redis as blocking_redis

    from server.cli import acl
    from tests.support.acl import redis_major

    admin = blocking_redis.Redis.from_url(redis_url)
    name, password = f"sp-test-old-{secrets.token_hex(4)}", secrets.token_hex(12)
    old_rules = [
        rule
        for rule in acl.rules("publisher", redis_major=redis_major(redis_url))
        if keys.BOT_IDS_KEY not in rule and keys.BOT_SEQ_KEY not in rule
    ]
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *old_rules)
    bot = fresh_name("old-acl")
    try:
        url = acl.user_url(redis_url, name, password)
        async with Publisher(url, bot=bot, strategy="s", retry_attempts=1) as publisher:
            seq = await publisher.signal(symbol, type="buy", price=1.0, confidence=0.5)
            await publisher.status("active", symbol=symbol)
        assert seq >= 1 and publisher.bot_ids == {bot: None}
        assert json.loads(admin.hget(keys.BOTS_KEY, bot))["id"] is None
    finally:
        admin.execute_command("ACL", "DELUSER", name)
        admin.close()
