"""Alerts on the wall in a real Chromium against a real ``signalpush serve``: a banner within 2 s
of its cause on every wall, a marker on the chart, and an ack on one wall clears it everywhere."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from publishers.events import BotStatus, Candle
from publishers.sync_publisher import SyncPublisher
from server.cli.embedded import EmbeddedRedis
from tests.client_js.test_wall_browser import _browser_or_skip
from tests.support import wait_until
from tests.support.process import ServerProcess

pytestmark = pytest.mark.browser

RULES = [{"name": "bot-error", "condition": {"type": "status", "in": ["error"]}, "severity": "critical"}]


def banners(page: Any) -> list[str]:
    return list(page.evaluate("() => [...document.querySelectorAll('.alert-banner')].map((b) => b.dataset.alertId)"))


def test_an_alert_reaches_every_wall_within_2_s_and_an_ack_clears_it_everywhere(
    own_redis: EmbeddedRedis, tmp_path: Path, symbol: str
) -> None:
    driver, browser = _browser_or_skip()
    env = {
        "SIGNALPUSH_REDIS_URL": own_redis.url,
        "SIGNALPUSH_ALERTS_RULES": json.dumps(RULES),
        "SIGNALPUSH_ALERTS_TICK_MS": "100",
        "SIGNALPUSH_RECORDER_ENABLED": "false",
    }
    server = ServerProcess("serve", env=env, log_path=tmp_path / "serve.log").start()
    try:
        now = int(time.time() * 1000)
        with SyncPublisher(own_redis.url) as publisher:
            publisher.publish(Candle(symbol=symbol, ts=now - 60_000, tf="1m", open=1, high=2, low=1, close=2, volume=1))
            publisher.publish(BotStatus(symbol=symbol, ts=now, bot="b1", strategy="s", status="active", equity=100))
            pages = [browser.new_page(viewport={"width": 1280, "height": 720}) for _ in range(2)]
            errors: list[str] = []
            for page in pages:
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{server.http_url}/wall?symbols={symbol}")
            for page in pages:
                wait_until(
                    lambda p=page: p.evaluate("(s) => window.signalpushWall?.tile(s)?.ready", symbol),
                    what="the tile to draw",
                )
            cause = time.monotonic()
            publisher.publish(BotStatus(symbol=symbol, ts=int(time.time() * 1000), bot="b1", strategy="s",
                                        status="error"))
            for page in pages:
                wait_until(lambda p=page: banners(p), timeout=2, what="the banner within 2 s of its cause")
            assert time.monotonic() - cause < 2
        alert_id = banners(pages[0])[0]
        shapes = pages[0].evaluate(
            "() => (document.querySelector('.plot').layout.shapes ?? []).map((s) => s.name ?? '')"
        )
        assert f"alert:{alert_id}" in shapes, "a marker on the chart's time axis"
        pages[0].click(".alert-ack")
        for page in pages:
            wait_until(lambda p=page: not banners(p), timeout=5, what="the ack to clear the banner everywhere")
        listing = browser.new_page()
        listing.goto(f"{server.http_url}/alerts")
        wait_until(lambda: listing.evaluate("() => document.querySelectorAll('#active tr').length") == 1,
                   what="the /alerts page to list it")
        assert "acked by" in listing.inner_text("#active")
        assert errors == []
    finally:
        server.kill()
        browser.close()
        driver.stop()
