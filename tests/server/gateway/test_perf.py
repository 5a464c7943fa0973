"""The ``perf`` op against a serve-like gateway (real Redis, real database, the recorder on or off):
the pushed rows equal the pandas batch over the same events, before and after the subscribe."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from publishers import keys
from publishers.events import event_from_dict, now_ms
from server.analytics.quality_batch import events_frame, quality_batch
from server.analytics.quality_rows import fold_key
from tests.support import scaled
from tests.support.analytics_data import DAY0, HOUR_MS, candle, signal, trade
from tests.support.fixtures_store import publish
from tests.support.gateway import WsClient, serving

T = TypeVar("T")


async def async_wait_until_async(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, timeout: float = 20.0
) -> T:
    """Await ``read()`` until ``done`` holds for its value (polled, with the scaled timeout)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
        await asyncio.sleep(0.05)


ALL_TOKEN = "every-symbol-token-for-perf-abcdef"
ETH_TOKEN = "eth-only-token-for-perf-abcdefgh"


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def session_events(bot: str, symbol: str, base: int) -> list[dict[str, Any]]:
    """The hand-computed fixture of tests/server/analytics/test_quality_service.py, moved to
    ``base`` (inside the feed's 30-day window), on ``symbol``."""

    def at(offset: int) -> int:
        return base + offset

    linked = trade(at(2 * HOUR_MS), bot, "entry", "sell", 99.0, 2.0, "p2", symbol=symbol)
    return [
        signal(at(10), bot, "buy", 100.0, 0.75, symbol=symbol),
        trade(at(1_000), bot, "entry", "buy", 101.0, 1.0, "p1", fee=0.1, symbol=symbol),
        trade(at(1_500), bot, "entry", "buy", 103.0, 1.0, "p1", fee=0.1, symbol=symbol),
        candle(at(2_000), 110.0, symbol=symbol),
        trade(at(HOUR_MS), bot, "exit", "sell", 110.0, 1.0, "p1", fee=0.1, symbol=symbol),
        signal(at(HOUR_MS + 5), bot, "sell", 100.0, 0.35, symbol=symbol),  # seq 6
        {**linked, "meta": {"signal_seq": 6}},
        trade(at(3 * HOUR_MS), bot, "exit", "buy", 101.0, 2.0, "p2", symbol=symbol),
        trade(at(3 * HOUR_MS), bot, "exit", "sell", 115.0, 1.0, "p1", fee=0.1, symbol=symbol),
        signal(at(4 * HOUR_MS), bot, "buy", 100.0, 0.95, symbol=symbol),
        trade(at(4 * HOUR_MS + 100), bot, "entry", "buy", 100.0, 1.0, "p3", symbol=symbol),
        candle(at(5 * HOUR_MS), 104.0, symbol=symbol),
    ]


def batch_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    numbered = [(e["kind"], e["symbol"], seq, {**e, "seq": seq}) for seq, e in enumerate(events, start=1)]
    numbered.sort(key=lambda e: fold_key(e[0], e[1], e[2], e[3]["ts"]))
    return quality_batch(events_frame(numbered))


def perf_rows(client: WsClient, bot: str) -> dict[str, Any] | None:
    """The latest row of ``bot`` across every perf frame received."""
    latest = None
    for frame in client.frames:
        if frame.get("op") == "perf":
            latest = next((r for r in frame["rows"] if r["bot"] == bot), latest)
    return latest


@pytest.mark.parametrize("recording", [True, False], ids=["recorded", "log-only"])
async def test_perf_rows_equal_the_batch_before_and_after_the_subscribe(
    redis_url: str, store_url: str, redis_client: aioredis.Redis, recording: bool
) -> None:
    bot, symbol = f"perf-{uuid.uuid4().hex[:8]}", f"PQ{uuid.uuid4().hex[:8].upper()}"
    events = session_events(bot, symbol, now_ms() - 6 * HOUR_MS)
    settings: dict[str, Any] = {"recorder": {"enabled": recording}}
    async with serving(redis_url, store_url, **settings) as running:
        await publish(redis_url, [event_from_dict(e) for e in events[:6]])
        if recording:  # what came before the subscribe is then read from SQL: the log is trimmed
            log = keys.log_key(symbol)
            await async_wait_until_async(lambda: redis_client.xlen(log), lambda n: n == 0, "the log trimmed")
        client = await WsClient(f"ws://127.0.0.1:{running.port}/ws").connect()
        try:
            await client.send({"op": "perf", "ref": "p", "bots": [bot]})
            first = await client.wait_for(lambda f: f.get("ref") == "p", timeout=30)
            assert first["op"] == "perf" and first["full"] is True and first["sub"] == "perf"
            want = batch_rows(events[:6])
            got = first["rows"][0]
            diff = {k: (v, want[0].get(k)) for k, v in got.items() if not _close(v, want[0].get(k))}
            assert _close(first["rows"], want), diff

            await publish(redis_url, [event_from_dict(e) for e in events[6:]])
            expected = batch_rows(events)[0]
            await client.wait_for(
                lambda f: f.get("op") == "perf" and any(r["trades"] == expected["trades"] for r in f["rows"]),
                timeout=30,
            )
            got = perf_rows(client, bot)
            assert _close(got, expected), (got, expected)
            assert got is not None and got["unrealised_pnl"] == pytest.approx(4.0)

            await client.send({"op": "unsubscribe", "ref": "u", "sub": "perf"})
            assert (await client.wait_for(lambda f: f.get("ref") == "u"))["op"] == "unsubscribed"
        finally:
            await client.close()
        assert running.gateway.perf is not None and running.gateway.perf.failures == 0


async def test_perf_needs_a_token_for_every_symbol(redis_url: str, store_url: str) -> None:
    tokens = [
        {"name": "wall", "token": ETH_TOKEN, "symbols": ["ETHUSDT"]},
        {"name": "ops", "token": ALL_TOKEN, "symbols": ["*"]},
    ]
    async with serving(redis_url, store_url, auth={"enabled": True, "tokens": tokens}) as running:
        scoped = await WsClient(f"ws://127.0.0.1:{running.port}/ws?token={ETH_TOKEN}").connect()
        whole = await WsClient(f"ws://127.0.0.1:{running.port}/ws?token={ALL_TOKEN}").connect()
        try:
            await scoped.send({"op": "perf", "ref": 1})
            refused = await scoped.wait_for(lambda f: f.get("ref") == 1)
            assert (refused["op"], refused["code"]) == ("error", "forbidden")
            await whole.send({"op": "perf", "ref": 2, "strategies": ["nobody-has-this"]})
            granted = await whole.wait_for(lambda f: f.get("ref") == 2, timeout=30)
            assert granted["op"] == "perf" and granted["rows"] == []
            await whole.send({"op": "perf", "ref": 3, "bots": [5]})
            bad = await whole.wait_for(lambda f: f.get("ref") == 3)
            assert (bad["op"], bad["code"]) == ("error", "bad_request")
        finally:
            await scoped.close()
            await whole.close()


def test_the_fixture_is_the_hand_computed_one() -> None:
    """The moved fixture gives the figures test_quality_service.py computes by hand at DAY0."""
    (row,) = batch_rows(session_events("momo-1", "BTCUSDT", DAY0))
    assert row["realised_pnl"] == pytest.approx(7.8 - 4.0 + 12.8)
    assert row["unrealised_pnl"] == pytest.approx(4.0)
