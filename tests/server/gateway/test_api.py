"""The JSON API behind tokens (a serve-like gateway, real database): what a scoped token may see,
bad query values as 400s, history and figures built in the worker process."""

from __future__ import annotations

from typing import Any

import pytest

from publishers.events import now_ms
from server.gateway.api import scope_bots
from server.gateway.auth import Principal
from server.history.engine import create_engine
from server.history.writer import insert_events
from tests.support.analytics_data import signal, status, trade, with_seqs
from tests.support.gateway import get, serving

ETH_TOKEN = "eth-only-token-for-wall-5-abcdef"
ALL_TOKEN = "every-symbol-token-for-ops-abcdef"


def api_settings() -> dict[str, Any]:
    tokens = [
        {"name": "wall-5", "token": ETH_TOKEN, "symbols": ["ETHUSDT"]},
        {"name": "ops", "token": ALL_TOKEN, "symbols": ["*"]},
    ]
    return {"auth": {"enabled": True, "tokens": tokens}, "recorder": {"enabled": False}}


async def seed(url: str, events: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await insert_events(connection, with_seqs(events))
    finally:
        await engine.dispose()


def bots_events(now: int) -> list[dict[str, Any]]:
    return [
        status(now - 60_000, "eth-bot", "active", 1_000.0, symbol="ETHUSDT"),
        signal(now - 50_000, "eth-bot", "buy", 3000.0, 0.5, symbol="ETHUSDT"),
        status(now - 40_000, "both-bot", "active", 99_999.0, symbol="BTCUSDT"),
        trade(now - 30_000, "both-bot", "entry", "buy", 3000.0, 1.0, "p1", symbol="ETHUSDT"),
        trade(now - 20_000, "both-bot", "entry", "buy", 60_000.0, 1.0, "p2", symbol="BTCUSDT"),
        status(now - 10_000, "btc-bot", "paused", 5_000.0, symbol="BTCUSDT"),
    ]


async def test_a_scoped_token_sees_only_what_its_symbols_allow_on_api_bots(
    redis_url: str, store_url: str
) -> None:
    await seed(store_url, bots_events(now_ms()))
    async with serving(redis_url, store_url, **api_settings()) as running:
        reply = await get(running.port, f"/api/bots?token={ETH_TOKEN}")
        assert reply.status == 200
        bots = {bot["name"]: bot for bot in reply.json()["bots"]}
        assert set(bots) == {"eth-bot", "both-bot"}, "a bot trading no readable symbol is not listed"
        assert bots["eth-bot"]["symbols"] == ["ETHUSDT"] and bots["eth-bot"]["equity"] == 1_000.0
        assert bots["eth-bot"]["partial"] is False
        both = bots["both-bot"]
        assert both["symbols"] == ["ETHUSDT"], "symbols cut to the readable ones"
        assert both["partial"] is True
        for field in ("equity", "status", "first_seen", "last_seen", "last_status_at"):
            assert both[field] is None, f"{field} is bot-wide: it tells about BTCUSDT"
        assert "99999" not in reply.body.decode() and "BTCUSDT" not in reply.body.decode()

        everything = (await get(running.port, f"/api/bots?token={ALL_TOKEN}")).json()["bots"]
        whole = {bot["name"]: bot for bot in everything}
        assert set(whole) == {"eth-bot", "both-bot", "btc-bot"}
        assert whole["both-bot"]["symbols"] == ["BTCUSDT", "ETHUSDT"]
        assert whole["both-bot"]["equity"] == 99_999.0 and whole["both-bot"]["partial"] is False


async def test_signal_quality_over_http_is_scoped_like_performance(redis_url: str, store_url: str) -> None:
    now = now_ms()
    await seed(store_url, bots_events(now))
    async with serving(redis_url, store_url, **api_settings()) as running:
        reply = await get(running.port, f"/api/signal-quality?token={ALL_TOKEN}&horizon_s=60")
        assert reply.status == 200, reply.body[:300]
        body = reply.json()
        assert body["rules"]["horizon_ms"] == 60_000
        groups = {(g["bot"], g["strategy"]): g for g in body["groups"]}
        assert groups[("eth-bot", "momentum")]["signals"] == 1
        assert groups[("both-bot", "momentum")]["entries"] == 2
        assert len(groups[("eth-bot", "momentum")]["calibration"]) == 10
        refused = await get(running.port, f"/api/signal-quality?token={ETH_TOKEN}")
        assert refused.status == 403
        scoped = await get(running.port, f"/api/signal-quality?token={ETH_TOKEN}&symbols=ETHUSDT")
        assert scoped.status == 200 and "BTCUSDT" not in scoped.body.decode()
        assert {g["bot"] for g in scoped.json()["groups"]} == {"eth-bot", "both-bot"}
        assert [g["entries"] for g in scoped.json()["groups"] if g["bot"] == "both-bot"] == [1]


def test_bot_scoping_rules() -> None:
    bots = [
        {"name": "a", "symbols": ["ETHUSDT"], "equity": 1.0, "status": "active"},
        {"name": "b", "symbols": ["ETHUSDT", "BTCUSDT"], "equity": 2.0, "status": "active"},
        {"name": "c", "symbols": [], "equity": 3.0, "status": "stopped"},
    ]
    eth = Principal("w", ("ETH*",))
    assert [(b["name"], b["symbols"], b["equity"]) for b in scope_bots(bots, eth)] == [
        ("a", ["ETHUSDT"], 1.0),
        ("b", ["ETHUSDT"], None),
    ]
    assert [b["name"] for b in scope_bots(bots, Principal("ops", ("*",)))] == ["a", "b", "c"]
    assert scope_bots(bots, Principal("none", ())) == []


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("/api/performance?bot_ids=99999999999999999999999", "bot_ids:"),
        ("/api/performance?bot_ids=0", "bot_ids:"),
        ("/api/performance?days=1&days=2", "days:"),
        ("/api/history?symbol=BTCUSDT%0A", "symbol:"),
        ("/api/history?symbol=BTCUSDT&minutes=99999999999999999999999", "minutes:"),
        ("/api/figure?symbol=BTCUSDT&max_points=x", "max_points:"),
        ("/api/signal-quality?horizon_s=nan", "horizon_s:"),
        ("/api/signal-quality?buckets=1000", "buckets:"),
        ("/api/signal-quality?days=-1", "days:"),
        ("/api/signal-quality?nope=1", "nope:"),
    ],
)
async def test_bad_query_values_are_400_naming_the_field(
    redis_url: str, store_url: str, target: str, field: str
) -> None:
    async with serving(redis_url, store_url, **api_settings()) as running:
        reply = await get(running.port, f"{target}&token={ALL_TOKEN}")
        assert reply.status == 400, (target, reply.status, reply.body[:200])
        assert reply.json()["message"].startswith(field)


def test_analytics_modules_load_off_the_event_loop() -> None:
    """serve starts without pandas; the first analytics request must not hold up live clients."""
    import subprocess
    import sys

    code = """
import asyncio, sys
from server.gateway.api import loaded

async def main():
    ticks = 0
    async def tick():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    module = await loaded("server.analytics.payloads")
    ticker.cancel()
    print(ticks - before > 1, "pandas" in sys.modules, hasattr(module, "bots_payload"))

assert "pandas" not in sys.modules
asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True", "True"], result.stderr
