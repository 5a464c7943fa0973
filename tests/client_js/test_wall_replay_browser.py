"""The wall as a flight recorder in a real Chromium against a real ``signalpush serve``: a replay of
a recorded window draws the points the live wall drew, and goes live from the bar."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from publishers import keys
from publishers.events import Event, now_ms
from publishers.sync_publisher import SyncPublisher
from tests.client_js.test_wall_browser import Wall, _browser_or_skip
from tests.support import wait_until
from tests.support.process import ServerProcess
from tests.support.replay_stream import stream

pytestmark = pytest.mark.browser


def publish(redis_url: str, events: list[Event]) -> None:
    """Through the Publisher (its blocking twin: playwright's sync API holds this thread's loop)."""
    with SyncPublisher(redis_url) as publisher:
        publisher.publish_many(events)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver, chromium = _browser_or_skip()
    try:
        yield chromium
    finally:
        chromium.close()
        driver.stop()


def test_a_replayed_wall_draws_what_the_live_wall_drew_and_goes_live_from_the_bar(
    redis_url: str, browser: Any, tmp_path: Path
) -> None:
    symbol = f"RP{secrets.token_hex(3).upper()}"
    env = {
        "SIGNALPUSH_REDIS_URL": redis_url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/history.db",
    }
    t0 = now_ms() - 20 * 60_000
    events = stream(symbol, 160, t0, seed=21)
    with ServerProcess("serve", env=env, log_path=tmp_path / "serve.log") as server:
        publish(redis_url, events[:40])
        common = {"symbols": symbol, "minutes": "60", "stale_s": "3600", "dead_s": "7200"}
        live = Wall(browser, f"{server.http_url}/wall?{urlencode(common)}")
        wait_until(lambda: live.tile(symbol)["lastSeq"] == 40, 30, what="the live wall's history")
        publish(redis_url, events[40:])  # the live session
        wait_until(
            lambda: live.tile(symbol)["lastSeq"] == 160 and not live.tile(symbol)["queue"],
            30,
            what="the live wall to draw the session",
        )
        drawn_live = live.points(symbol)
        assert drawn_live["signals"] and drawn_live["entries"]

        window = {"replay": str(t0 - 1000), "to": str(t0 + 159_000), "speed": "max"}
        replay = Wall(browser, f"{server.http_url}/wall?{urlencode({**common, **window})}")
        wait_until(
            lambda: (
                (replay.page.evaluate("() => window.signalpushWall?.replay?.states") or []) == ["ended"]
                and replay.tile(symbol)["lastSeq"] == 160
                and not replay.tile(symbol)["queue"]
            ),
            30,
            what="the replay to play the window",
        )
        drawn_replay = replay.points(symbol)
        for kind in ("signals", "entries", "exits"):
            extra = Counter(drawn_replay[kind]) - Counter(drawn_live[kind])
            missing = Counter(drawn_live[kind]) - Counter(drawn_replay[kind])
            assert not extra and not missing, f"{kind}: extra {extra}, missing {missing}"
        bar = replay.page.locator("#replay-bar .replay-badge").text_content() or ""
        assert bar.startswith("REPLAY ") and "×max" in bar

        replay.page.click("#replay-bar button[data-action=live]")
        wait_until(
            lambda: (
                replay.page.evaluate("() => window.signalpushWall.replay") is None
                and replay.tile(symbol)["state"] == "live"
            ),
            30,
            what="the wall to go live",
        )
        assert replay.page.locator("#replay-bar").count() == 0
        more = stream(symbol, 5, now_ms(), seed=22)
        publish(redis_url, more)
        wait_until(lambda: replay.tile(symbol)["lastSeq"] == 165, 30, what="live events after going live")

        kiosk = Wall(browser, f"{server.http_url}/wall?{urlencode({**common, **window, 'kiosk': '1'})}")
        wait_until(
            lambda: kiosk.page.locator(".replay-kiosk .replay-badge").count() == 1, 30, what="the badge"
        )
        assert kiosk.page.locator("#replay-bar button").count() == 0
        assert (kiosk.page.locator(".replay-badge").text_content() or "").startswith("REPLAY ")
        for wall in (live, replay, kiosk):
            assert not wall.problems(), wall.problems()
    with redis.Redis.from_url(redis_url) as client:  # the shared Redis keeps no long log of ours
        client.srem(keys.SYMBOLS_KEY, symbol)
        client.delete(keys.log_key(symbol), keys.meta_key(symbol))
