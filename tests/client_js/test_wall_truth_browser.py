"""The wall tells the truth at a glance (issue 19), in a real Chromium against a real ``signalpush serve``.

One server, a demo floor publishing three symbols live, and one symbol whose feed went silent
three minutes before the walls load. Each test opens its own wall: day KPIs equal the server's
day book whatever the window (a running wall, a fresh load, a 1-minute tile), a silent feed loads
as dead, the badge counts stale tiles, ``kpis=0``, ``SYMBOL@minutes`` tiles, trimming at a fold,
the colour-blind palette's contrast, and (last) the banner within 5 s of a killed gateway.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from publishers.events import now_ms
from publishers.sync_publisher import SyncPublisher
from server.cli.demo import TradingFloor, seed_history
from tests.client_js.test_wall_browser import Wall, _browser_or_skip
from tests.support import wait_until
from tests.support.process import ServerProcess
from tests.support.wall_feed import FloorFeed

pytestmark = pytest.mark.browser

SILENT_FOR_MS = 180_000


def _get(server: ServerProcess, path: str, **params: str) -> Any:
    with urlopen(f"{server.http_url}{path}?{urlencode(params)}", timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def floor(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    driver, browser = _browser_or_skip()
    prefix = f"T{secrets.token_hex(2).upper()}"
    live = [f"{prefix}{name}" for name in ("BTC", "ETH", "SOL")]
    silent = f"{prefix}ADA"
    scratch = tmp_path_factory.mktemp("truth")
    env = {
        "SIGNALPUSH_REDIS_URL": redis_url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/history.db",
        "SIGNALPUSH_SERVER_HEARTBEAT_S": "2",
    }
    server = ServerProcess("serve", env=env, log_path=scratch / "serve.log").start()
    # The silent symbol: half an hour of history that ended three minutes ago, nothing since.
    quiet = TradingFloor([silent], timeframe="5s", seed=9, prices={silent: 0.45})
    publisher = SyncPublisher(redis_url)
    publisher.publish_many(seed_history(quiet, end_ms=now_ms() - SILENT_FOR_MS, hours=0.5, step_ms=2000))
    publisher.close()
    feed = FloorFeed(redis_url, live)
    feed.seed(hours=1.0)
    feed.start()
    state = {"server": server, "feed": feed, "live": live, "silent": silent, "browser": browser}
    try:
        yield state
    finally:
        feed.stop()
        browser.close()
        driver.stop()
        state["server"].kill()


def open_wall(state: dict[str, Any], **params: str) -> Wall:
    query = {"stale_s": "30", "dead_s": "120", "backoff_max_s": "2", **params}
    return Wall(state["browser"], f"{state['server'].http_url}/wall?{urlencode(query)}")


def ready(wall: Wall, *ids: str) -> None:
    for tile in ids:
        wait_until(lambda t=tile: wall.tile(t)["ready"], 30, what=f"the {tile} tile to draw")


def day_of(wall: Wall, tile: str) -> tuple[Any, ...]:
    day = wall.tile(tile)["day"]
    return (day["ready"], round(day["pnl"], 4), day["trades"], day["wins"])


def test_day_kpis_are_the_server_day_book_whatever_the_window(floor: dict[str, Any]) -> None:
    server, feed, symbol = floor["server"], floor["feed"], floor["live"][0]
    running = open_wall(floor, symbols=f"{symbol},{symbol}@1", minutes="360")
    ready(running, symbol, f"{symbol}@1")
    # Let live trades reach the running wall, then stop the floor and compare at rest.
    start = running.tile(symbol)["day"]["trades"]
    wait_until(lambda: running.tile(symbol)["day"]["trades"] > start, 60, what="a live exit on the wall")
    fresh = open_wall(floor, symbols=f"{symbol}@60", minutes="360")
    ready(fresh, f"{symbol}@60")
    feed.pause()
    try:
        seq = {s["symbol"]: s["seq"] for s in _get(server, "/api/symbols")["symbols"]}[symbol]
        for wall, tile in ((running, symbol), (running, f"{symbol}@1"), (fresh, f"{symbol}@60")):
            wait_until(lambda w=wall, t=tile: w.tile(t)["lastSeq"] == seq, 30, what=f"{tile} caught up")
        book = _get(server, "/api/day", symbol=symbol)
        expected = (True, round(book["pnl"], 4), book["trades"], book["wins"])
        assert book["trades"] > 0, "the test floor made no trade today"
        for wall, tile in ((running, symbol), (running, f"{symbol}@1"), (fresh, f"{symbol}@60")):
            assert day_of(wall, tile) == expected, f"{tile}: {wall.tile(tile)['day']} != {book}"
        rate = round(book["wins"] / book["trades"] * 100)
        # The cells are redrawn by the page's 1 s tick: WIN shows its sample.
        wait_until(
            lambda: running.tile(f"{symbol}@1")["cells"]["win"] == f"{rate} % · {book['trades']}",
            5,
            what="the WIN cell with its sample",
        )
    finally:
        feed.resume()
    assert running.problems() == [] and fresh.problems() == []
    running.page.close()
    fresh.page.close()


def test_a_feed_silent_for_three_minutes_loads_as_dead_and_the_badge_counts(floor: dict[str, Any]) -> None:
    live, silent = floor["live"][0], floor["silent"]
    wall = open_wall(floor, symbols=f"{live},{silent}")
    ready(wall, live, silent)
    wait_until(lambda: wall.tile(silent)["view"]["state"] == "dead", 10, what="the silent tile dead at load")
    view = wall.tile(silent)["view"]
    assert view["age"] >= SILENT_FOR_MS / 1000, view
    assert re.fullmatch(r"NO DATA \d+ min — last \d\d:\d\d:\d\d UTC", view["overlay"]), view
    wait_until(lambda: wall.tile(live)["view"]["state"] == "live", 10, what="the live tile live")
    badge = wall.page.text_content("#connection")
    assert badge == "live · 1 dead", badge
    overlay = wall.page.evaluate(
        """(id) => { const t = document.querySelector(`[data-tile="${id}"]`);
          const o = t.querySelector('.tile-overlay'); const s = getComputedStyle(o);
          return [s.display, s.opacity, getComputedStyle(t.querySelector('.stage')).opacity]; }""",
        silent,
    )
    assert overlay[0] != "none" and float(overlay[1]) == 1 and float(overlay[2]) < 0.5, overlay
    wall.page.close()


def test_a_quiet_tile_turns_stale_dimmed_with_a_border_and_the_badge_counts_it(floor: dict[str, Any]) -> None:
    feed, live = floor["feed"], floor["live"]
    wall = open_wall(floor, symbols=",".join(live), stale_s="3", dead_s="600")
    ready(wall, *live)
    feed.pause(live[2])
    try:
        wait_until(lambda: wall.tile(live[2])["view"]["state"] == "stale", 15, what="the quiet tile stale")
        assert wall.page.text_content("#connection") == "live · 1 stale"
        style = wall.page.evaluate(
            """(id) => { const t = document.querySelector(`[data-tile="${id}"]`);
              return [getComputedStyle(t).borderTopColor, getComputedStyle(t.querySelector('.stage')).opacity,
                      t.querySelector('.tile-state').textContent]; }""",
            live[2],
        )
        assert style[0] == "rgb(255, 179, 0)" and float(style[1]) < 1 and style[2].startswith("STALE"), style
        assert {wall.tile(s)["view"]["state"] for s in live[:2]} == {"live"}
    finally:
        feed.resume(live[2])
    wait_until(lambda: wall.tile(live[2])["view"]["state"] == "live", 15, what="the tile live again")
    wall.page.close()


def test_kpis_0_hides_the_kpis(floor: dict[str, Any]) -> None:
    symbol = floor["live"][0]
    wall = open_wall(floor, symbols=symbol, kpis="0")
    ready(wall, symbol)
    shown = wall.page.evaluate(
        "() => [...document.querySelectorAll('.kpis')].map((k) => getComputedStyle(k).display)"
    )
    assert shown == ["none"]
    wall.page.close()


def test_one_symbol_at_two_windows_and_the_short_one_trims_at_every_fold(floor: dict[str, Any]) -> None:
    symbol = floor["live"][0]
    wall = open_wall(floor, symbols=f"{symbol}@1,{symbol}@60", minutes="360", fold_s="2")
    ready(wall, f"{symbol}@1", f"{symbol}@60")
    assert wall.page.evaluate("() => window.signalpushWall.symbols") == [f"{symbol}@1", f"{symbol}@60"]
    heads = wall.page.eval_on_selector_all(".tile-window", "(nodes) => nodes.map((n) => n.textContent)")
    assert heads == ["1 min", "60 min"]
    long_first = wall.tile(f"{symbol}@60")["firstX"]
    folds = wall.tile(f"{symbol}@1")["live"]["folds"]
    wait_until(lambda: wall.tile(f"{symbol}@1")["live"]["folds"] >= folds + 2, 30, what="two folds")
    short = wall.tile(f"{symbol}@1")
    now = wall.page.evaluate("() => window.signalpushWall.serverNow")
    # 5 s candles: the first one drawn starts at most one candle before the window.
    assert short["firstX"] >= now - 60_000 - 5_000 - 3_000, (now - short["firstX"]) / 1000
    assert short["trimmed"] > 0 and long_first <= now - 30 * 60_000
    assert wall.problems() == []
    wall.page.close()


def test_the_colour_blind_palette_keeps_contrast_under_simulated_deuteranopia(floor: dict[str, Any]) -> None:
    symbol = floor["live"][0]
    wall = open_wall(floor, symbols=symbol, palette="cb")
    ready(wall, symbol)
    report = wall.page.evaluate(
        """async (symbol) => {
          const m = await import('/client/wall-palette.js');
          const css = getComputedStyle(document.documentElement);
          const page = { ...m.PALETTES.cb };
          for (const key of ['win', 'loss', 'buy', 'sell', 'stale', 'dead', 'background'])
            page[key] = css.getPropertyValue(`--c-${key}`).trim();
          const plot = document.querySelector('.plot');
          const exit = plot.data.find((t) => t.meta?.key === 'trade:exit');
          const colours = [...new Set([].concat(exit?.marker?.color ?? []))];
          return { ...m.deuteranopiaReport(page), minContrastNeeded: m.MIN_CONTRAST, minDeltaE: m.MIN_DELTA_E,
                   exitColours: colours, cb: m.PALETTES.cb, page };
        }""",
        symbol,
    )
    assert report["page"]["win"] == report["cb"]["win"] and report["page"]["loss"] == report["cb"]["loss"]
    assert report["pnlDeltaE"] >= report["minDeltaE"], report
    assert report["minContrast"] >= report["minContrastNeeded"], report
    assert set(report["exitColours"]) <= {report["cb"]["win"], report["cb"]["loss"], report["cb"]["flat"]}
    wall.page.close()


def test_a_killed_gateway_shows_the_banner_within_5_seconds(floor: dict[str, Any]) -> None:
    symbol = floor["live"][0]
    wall = open_wall(floor, symbols=symbol)
    ready(wall, symbol)
    assert wall.page.evaluate("() => window.signalpushWall.banner") is None
    killed = time.monotonic()
    floor["server"].kill()
    wall.page.wait_for_selector("#banner:not([hidden])", timeout=5000)
    took = time.monotonic() - killed
    assert took < 5, took
    assert "DISCONNECTED" in (wall.page.text_content("#banner") or "")
    assert wall.tile(symbol)["view"]["state"] == "disconnected"
    assert wall.page.text_content("#connection") == "disconnected"
    wall.page.close()
