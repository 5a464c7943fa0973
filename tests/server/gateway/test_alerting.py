"""The alert evaluator against real Redis: publish, dedupe across a crash, takeover, SQL, timers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from publishers import keys
from publishers.connection import async_client
from publishers.events import BotStatus
from publishers.publisher import Publisher
from server.alerts.rules import parse_alerts
from server.cli.embedded import EmbeddedRedis
from server.gateway.alerting import AlertEvaluator
from server.settings import AlertSettings
from tests.support import async_wait_until
from tests.support.fixtures_store import running_recorder

pytestmark = pytest.mark.asyncio

SETTINGS = AlertSettings(tick_ms=50, lease_ms=1000, delivery_backoff_s=0.01)
STATUS_RULE = {"name": "bot-error", "condition": {"type": "status", "in": ["error"]}, "severity": "critical"}


@contextlib.asynccontextmanager
async def evaluating(
    url: str, rules: list[dict[str, Any]], owner: str = "a"
) -> AsyncIterator[AlertEvaluator]:
    evaluator = AlertEvaluator(url, parse_alerts(rules), SETTINGS, owner=owner)
    stop = asyncio.Event()
    task = asyncio.create_task(evaluator.run(stop))
    try:
        await async_wait_until(lambda: evaluator.holding, what="the lease")
        yield evaluator
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def alerts_in_log(url: str, symbol: str) -> list[dict[str, Any]]:
    client = async_client(url)
    try:
        entries = await client.xrange(keys.log_key(symbol))
    finally:
        await client.aclose()
    events = [json.loads(fields[b"e"]) for _, fields in entries]
    return [e for e in events if e["kind"] == "alert"]


def status(symbol: str, value: str, bot: str = "bot-1") -> BotStatus:
    return BotStatus(symbol=symbol, ts=1_760_000_000_000, bot=bot, strategy="s", status=value)


async def test_a_status_alert_fires_once_and_resolves(own_redis: EmbeddedRedis, symbol: str) -> None:
    url = own_redis.url
    async with evaluating(url, [STATUS_RULE]), Publisher(url) as publisher:
        await publisher.publish(status(symbol, "active"))
        await publisher.publish(status(symbol, "error"))
        await publisher.publish(status(symbol, "error"))  # same incident: no second fire
        fired = await async_wait_until(lambda: alerts_in_log(url, symbol), what="the alert event")
        assert [(a["state"], a["rule"], a["scope"], a["severity"]) for a in fired] == [
            ("firing", "bot-error", "bot-1", "critical")
        ]
        client = async_client(url)
        active = await client.hgetall(keys.ALERTS_ACTIVE_KEY)
        assert list(active) == [fired[0]["alert_id"].encode()]
        await publisher.publish(status(symbol, "active"))
        both = await async_wait_until(lambda: _at_least(alerts_in_log(url, symbol), 2), what="the resolution")
        assert [a["state"] for a in both] == ["firing", "resolved"]
        assert both[0]["alert_id"] == both[1]["alert_id"]
        assert await client.hgetall(keys.ALERTS_ACTIVE_KEY) == {}
        assert len(await client.lrange(keys.ALERTS_RECENT_KEY, 0, -1)) == 1
        await client.aclose()


async def _at_least(events: Any, count: int) -> Any:
    found = await events
    return found if len(found) >= count else None


async def test_a_replay_after_a_crash_between_publish_and_checkpoint_fires_nothing_twice(
    own_redis: EmbeddedRedis, symbol: str
) -> None:
    """The worst moment to die: the alert is published, the checkpoint still says "not fired"."""
    url = own_redis.url
    client = async_client(url)
    async with Publisher(url) as publisher:
        async with evaluating(url, [STATUS_RULE], owner="a"):
            await publisher.publish(status(symbol, "active"))
            await async_wait_until(lambda: _checkpoint_seq(client, symbol, 1), what="a checkpoint at seq 1")
            before = await client.get(keys.ALERTS_STATE_KEY)
            await publisher.publish(status(symbol, "error"))
            await async_wait_until(lambda: alerts_in_log(url, symbol), what="the alert")
        # "a" died right after publishing: its successor finds the older checkpoint and no lease.
        await client.set(keys.ALERTS_STATE_KEY, before)
        async with evaluating(url, [STATUS_RULE], owner="b") as successor:
            await async_wait_until(
                lambda: _checkpoint_seq(client, symbol, 3), what="b to read the alert back"
            )
            assert successor.counters["replayed"] == 1 and successor.counters["fired"] == 0
            await publisher.publish(status(symbol, "active"))
            await async_wait_until(lambda: _at_least(alerts_in_log(url, symbol), 2), what="the resolution")
    states = [a["state"] for a in await alerts_in_log(url, symbol)]
    assert states == ["firing", "resolved"]
    await client.aclose()


async def _checkpoint_seq(client: Any, symbol: str, seq: int) -> bool:
    raw = await client.get(keys.ALERTS_STATE_KEY)
    cursor = json.loads(raw)["cursors"].get(symbol) if raw else None
    return bool(cursor and cursor[1] >= seq)


async def test_only_the_lease_holder_evaluates_and_the_other_takes_over(
    own_redis: EmbeddedRedis, symbol: str
) -> None:
    url = own_redis.url
    rules = [STATUS_RULE]
    client = async_client(url)
    second = AlertEvaluator(url, parse_alerts(rules), SETTINGS, owner="b")
    stop = asyncio.Event()
    async with Publisher(url) as publisher:
        async with evaluating(url, rules, owner="a") as first:
            task = asyncio.create_task(second.run(stop))
            await publisher.publish(status(symbol, "error"))
            await async_wait_until(lambda: alerts_in_log(url, symbol), what="the alert")
            assert first.holding and not second.holding
        # "a" died holding the lease (it let go above: put it back as a dead holder leaves it).
        await client.set(keys.ALERTS_LEASE_KEY, "a", px=SETTINGS.lease_ms)
        await async_wait_until(lambda: second.holding, timeout=5, what="b to take over")
        await publisher.publish(status(symbol, "active"))
        await async_wait_until(lambda: _at_least(alerts_in_log(url, symbol), 2), what="the resolution")
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [a["state"] for a in await alerts_in_log(url, symbol)] == ["firing", "resolved"]
    await client.aclose()


async def test_silence_fires_with_no_event_arriving(own_redis: EmbeddedRedis, symbol: str) -> None:
    url = own_redis.url
    rule = {"name": "dead-man", "condition": {"type": "silent", "seconds": 0.3}, "cooldown_s": 0}
    async with evaluating(url, [rule]), Publisher(url) as publisher:
        await publisher.publish(status(symbol, "active", bot="quiet-1"))
        fired = await async_wait_until(lambda: alerts_in_log(url, symbol), what="the silence alert")
        assert fired[0]["scope"] == "quiet-1" and "silent" in fired[0]["message"]
        await publisher.publish(status(symbol, "active", bot="quiet-1"))
        both = await async_wait_until(lambda: _at_least(alerts_in_log(url, symbol), 2), what="recovery")
        assert both[1]["state"] == "resolved"


async def test_bus_down_goes_to_the_alerts_stream(own_redis: EmbeddedRedis) -> None:
    url = own_redis.url
    client = async_client(url)
    rule = {"name": "bus", "condition": {"type": "bus_down", "seconds": 0.2}}
    async with evaluating(url, [rule]):
        await client.hset(keys.ALERTS_BUS_KEY, "gw-1", "down 1000")
        fired = await async_wait_until(lambda: alerts_in_log(url, "_alerts"), what="the bus alert")
        assert fired[0]["scope"] == "gw-1"
    await client.aclose()


async def test_alerts_are_recorded_in_sql(own_redis: EmbeddedRedis, symbol: str, store_url: str) -> None:
    from sqlalchemy import select

    from server.history.engine import create_engine
    from server.history.models import ALERTS

    url = own_redis.url
    async with (
        evaluating(url, [STATUS_RULE]),
        Publisher(url) as publisher,
        running_recorder(url, store_url, None, trim=False) as recording,
    ):
        await publisher.publish(status(symbol, "error"))
        await async_wait_until(lambda: alerts_in_log(url, symbol), what="the alert")
        await recording.caught_up(symbol, 2)
    engine = create_engine(store_url)
    async with engine.connect() as connection:
        rows = (
            await connection.execute(select(ALERTS.c.rule, ALERTS.c.state).where(ALERTS.c.symbol == symbol))
        ).all()
    await engine.dispose()
    assert [tuple(r) for r in rows] == [("bot-error", "firing")]


async def test_a_gateway_reports_its_bus_and_forgets_it_on_stop(own_redis: EmbeddedRedis) -> None:
    from server.gateway.alerting import report_bus

    client = async_client(own_redis.url)
    up = [True]
    task = asyncio.create_task(report_bus(client, "gw-9", lambda: up[0], every_s=0.02))

    async def state() -> str:
        raw = await client.hget(keys.ALERTS_BUS_KEY, "gw-9")
        return raw.decode() if raw else ""

    await async_wait_until(lambda: _starts(state(), "up "), what="up")
    up[0] = False
    await async_wait_until(lambda: _starts(state(), "down "), what="down")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await state() == ""
    await client.aclose()


async def _starts(text: Any, prefix: str) -> bool:
    return str(await text).startswith(prefix)


async def test_an_instant_alert_is_recent_never_active(own_redis: EmbeddedRedis, symbol: str) -> None:
    from publishers.events import Signal

    url = own_redis.url
    rule = {"name": "strong", "condition": {"type": "signal", "min_confidence": 0.9}, "cooldown_s": 0}
    async with evaluating(url, [rule]), Publisher(url) as publisher:
        await publisher.publish(
            Signal(
                symbol=symbol,
                ts=1_760_000_000_000,
                bot="b",
                strategy="s",
                type="buy",
                price=1,
                confidence=0.95,
            )
        )
        fired = await async_wait_until(lambda: alerts_in_log(url, symbol), what="the signal alert")
        assert fired[0]["meta"]["instant"] is True and fired[0]["scope"] == f"{symbol}/b"
        client = async_client(url)
        await async_wait_until(lambda: client.llen(keys.ALERTS_RECENT_KEY), what="the recent list")
        assert await client.hlen(keys.ALERTS_ACTIVE_KEY) == 0
        await client.aclose()
