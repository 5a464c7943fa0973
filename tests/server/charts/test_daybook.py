"""The wall's day book: today's P&L, trades and win rate whatever the chart's window
(server/charts/daybook.py), and ``GET /api/day`` on a serve-like gateway with a real database."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from publishers.events import now_ms
from server.charts.daybook import DAY_MS, day_book, day_bounds, zone
from tests.server.gateway.test_api import seed
from tests.support.analytics_data import candle, trade
from tests.support.gateway import get, serving


def columnar(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    fields = ("ts", "bot", "strategy", "side", "action", "price", "qty", "pnl", "position")
    return {f: [r.get(f) for r in rows] for f in fields} | {"seq": list(range(1, len(rows) + 1))}


def test_the_day_starts_at_midnight_in_the_asked_zone_and_a_dst_day_is_23_hours() -> None:
    noon = 1_774_872_000_000  # 2026-03-30 12:00 UTC
    start, end = day_bounds(noon, ZoneInfo("UTC"))
    assert start == noon - 12 * 3_600_000 and end - start == DAY_MS
    # Europe/Berlin went to summer time on 2026-03-29: that day had 23 hours.
    start, end = day_bounds(noon - DAY_MS, zone("Europe/Berlin"))
    assert end - start == 23 * 3_600_000
    for bad in ("Mars/Olympus", "../etc/passwd", "x" * 100):
        with pytest.raises(ValueError, match="tz"):
            zone(bad)


def test_only_exits_of_today_count_with_their_sample_and_open_positions_are_listed() -> None:
    start = 1_774_828_800_000  # 2026-03-30 00:00 UTC
    rows = [
        # Yesterday's round trip: not today's.
        trade(start - 7_200_000, "a", "entry", "buy", 100.0, 1.0, "p0"),
        trade(start - 3_600_000, "a", "exit", "sell", 90.0, 1.0, "p0"),
        # Opened yesterday, closed today without a reported pnl: computed from the entry (+20).
        trade(start - 600_000, "a", "entry", "buy", 100.0, 2.0, "p1"),
        trade(start + 600_000, "a", "exit", "sell", 110.0, 2.0, "p1"),
        # A short with a reported pnl, in two exits today: one trade, a loss (-3).
        trade(start + 700_000, "b", "entry", "sell", 50.0, 2.0, "p2"),
        trade(start + 800_000, "b", "exit", "buy", 51.0, 1.0, "p2", pnl=-1.0),
        trade(start + 900_000, "b", "exit", "buy", 52.0, 1.0, "p2", pnl=-2.0),
        # Still open.
        trade(start + 1_000_000, "b", "entry", "buy", 10.0, 3.0, "p3"),
    ]
    book = day_book(columnar(rows), day_start=start, day_end=start + DAY_MS, now_ms=start + 2_000_000)
    assert (book["pnl"], book["trades"], book["wins"], book["win_rate"]) == (17.0, 2, 1, 50.0)
    assert book["open_positions"] == 1
    listed = {p["position"]: p for p in book["positions"]}
    assert set(listed) == {"p1", "p2", "p3"}
    assert listed["p3"]["day_pnl"] is None and listed["p3"]["notional"] == 30.0
    assert listed["p2"]["day_pnl"] == -3.0


def test_hostile_rows_are_skipped() -> None:
    data = {"ts": [1, "x", None], "action": ["exit", "entry", "exit"], "price": [1, 2], "qty": [1, 1, 1]}
    book = day_book(data, day_start=0, day_end=DAY_MS, now_ms=10)
    assert book["trades"] == 0 and book["positions"] == []
    assert day_book(None, day_start=0, day_end=DAY_MS, now_ms=10)["pnl"] == 0


async def test_api_day_is_the_same_whatever_a_wall_window_and_follows_the_filter(
    redis_url: str, store_url: str
) -> None:
    now = now_ms()
    start, _ = day_bounds(now, ZoneInfo("UTC"))
    # Exits early in the day (hours before any 60-minute window) and one a minute ago.
    early = max(start + 1, now - 5 * 3_600_000)
    events = [
        trade(early, "a", "entry", "buy", 100.0, 1.0, "q1"),
        trade(early + 1, "a", "exit", "sell", 90.0, 1.0, "q1", pnl=-10.0),
        trade(now - 60_000, "b", "entry", "buy", 100.0, 1.0, "q2"),
        trade(now - 50_000, "b", "exit", "sell", 104.0, 1.0, "q2", pnl=4.0),
    ]
    # Candles: yesterday's last one, then the day's (its open is the day's opening price).
    minute = 60_000
    events += [candle(start - minute, 50.0), candle(now - 30 * minute, 70.0), candle(now - minute, 80.0)]
    await seed(store_url, events)
    async with serving(redis_url, store_url, recorder={"enabled": False}) as running:
        reply = await get(running.port, "/api/day?symbol=BTCUSDT")
        assert reply.status == 200, reply.body
        book = reply.json()
        assert book["day_start"] == start and book["tz"] == "UTC"
        assert (book["pnl"], book["trades"], book["wins"]) == (-6.0, 2, 1)
        if now - start >= 31 * 60_000:  # the test's candle lies inside the day's whole minutes
            assert book["open_price"] == 70.0
        only_b = (await get(running.port, "/api/day?symbol=BTCUSDT&bots=b")).json()
        assert (only_b["pnl"], only_b["trades"], only_b["win_rate"]) == (4.0, 1, 100.0)
        bad = await get(running.port, "/api/day?symbol=BTCUSDT&tz=Mars/Olympus")
        assert bad.status == 400 and b"tz" in bad.body
