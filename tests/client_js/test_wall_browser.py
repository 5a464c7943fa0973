"""The wall in a real Chromium against a real ``signalpush serve`` on demo-floor data.

One server (its own SQLite history), one demo floor publishing to the ``redis_url`` Redis from
a thread, one browser with two walls open: every symbol unfiltered, and two symbols filtered.
The tests run in order and share them: load (backfill, live, nothing from another host, no
console error, the screenshot), a stale tile, then SIGKILL and restart of the server.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import urlopen

import pytest

from server.bench.browser import CHROMIUM_ARGS, chromium_path
from tests.support import wait_until
from tests.support.process import REPO, ServerProcess
from tests.support.wall_feed import FloorFeed

pytestmark = pytest.mark.browser

OUTPUT = REPO / "test-output"
MINUTES = 120  # the walls' window: twice the seeded hour, so no event falls out of it during the test
FILTER = {"bots": "momo-1,scalp-1", "min_confidence": "0.5"}
# Chromium's own report of a refused websocket while the server is down (expected then, never else).
REFUSED = "WebSocket connection to"


def _browser_or_skip() -> tuple[Any, Any]:
    strict = os.environ.get("SIGNALPUSH_TEST_STRICT") == "1"
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is in the test extras
        path = None
    if path is None:
        if strict:
            pytest.fail("no Chromium for the browser tests (SIGNALPUSH_TEST_STRICT=1)")
        pytest.skip("no Chromium: apt-get install chromium or set SIGNALPUSH_TEST_CHROMIUM")
    driver = sync_playwright().start()
    return driver, driver.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))


class Wall:
    """One wall page and what it did: console errors, requests, responses."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1920, "height": 1080})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.responses: dict[str, dict[str, str]] = {}
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("response", lambda r: self.responses.__setitem__(urlsplit(r.url).path, r.headers))
        self.page.goto(url)

    def tile(self, symbol: str) -> dict[str, Any]:
        found: dict[str, Any] = self.page.evaluate(
            "(s) => window.signalpushWall ? window.signalpushWall.tile(s) : null", symbol
        ) or {"ready": False}
        return found

    def points(self, symbol: str) -> dict[str, list[tuple[Any, ...]]]:
        """Signals, entries and exits drawn in the tile of ``symbol``, from the plot's own trace data."""
        raw: dict[str, list[list[Any]]] = self.page.evaluate(
            """(symbol) => {
              const tile = [...document.querySelectorAll('.tile')]
                .find((t) => t.querySelector('.tile-symbol').textContent === symbol);
              const out = { signals: [], entries: [], exits: [] };
              for (const trace of tile.querySelector('.plot').data) {
                const key = trace.meta?.key ?? '';
                trace.x.forEach((x, i) => {
                  const c = trace.customdata?.[i];
                  if (key.startsWith('signal:')) out.signals.push([x, trace.y[i], c[0], c[1], key.split(':')[2], c[2]]);
                  else if (key === 'trade:entry') out.entries.push([x, trace.y[i], ...c]);
                  else if (key === 'trade:exit') out.exits.push([x, trace.y[i], ...c.slice(0, 6)]);
                });
              }
              return out;
            }""",
            symbol,
        )
        return {k: sorted(tuple(r) for r in rows) for k, rows in raw.items()}

    def problems(self, *, allow_refused: bool = False) -> list[str]:
        return [e for e in self.errors if not (allow_refused and REFUSED in e)]


def _get(server: ServerProcess, path: str, **params: str) -> Any:
    with urlopen(f"{server.http_url}{path}?{urlencode(params)}", timeout=10) as response:
        return json.loads(response.read())


def _history_points(
    server: ServerProcess, symbol: str, params: dict[str, str]
) -> dict[str, list[tuple[Any, ...]]]:
    """The same three sets from ``/api/history`` for the wall's window and filter."""
    data = _get(server, "/api/history", symbol=symbol, minutes=str(MINUTES), **params)["data"]
    s, t = data["signal"], data["trade"]
    signals = zip(s["ts"], s["price"], s["bot"], s["strategy"], s["type"], s["confidence"], strict=True)
    trades = list(
        zip(t["ts"], t["price"], t["bot"], t["strategy"], t["side"], t["qty"], t["position"], t["action"], t["pnl"],
            strict=True)
    )  # fmt: skip
    entries = [r for r in trades if r[7] == "entry"]
    book: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    for r in entries:
        book.setdefault((r[2], r[6]), []).append((r[4], r[1], r[5]))

    def pnl(r: tuple[Any, ...]) -> float | None:
        """The reported P&L, else computed from the position's entries (no fees), as the wall shows it."""
        if r[8] is not None:
            return round(r[8], 6)
        legs = book.get((r[2], r[6]))
        if not legs:
            return None
        qty = sum(q for _, _, q in legs)
        average = sum(p * q for _, p, q in legs) / qty
        return round((1 if legs[0][0] == "buy" else -1) * (r[1] - average) * r[5], 6)

    return {
        "signals": sorted(signals),
        "entries": sorted(r[:7] for r in entries),
        "exits": sorted((*r[:7], pnl(r)) for r in trades if r[7] == "exit"),
    }


def _caught_up(server: ServerProcess, walls: list[tuple[Wall, list[str]]]) -> bool:
    seqs = {s["symbol"]: s["seq"] for s in _get(server, "/api/symbols")["symbols"]}
    for wall, symbols in walls:
        for symbol in symbols:
            tile = wall.tile(symbol)
            if not tile["ready"] or tile["lastSeq"] != seqs.get(symbol) or tile["queue"]:
                return False
    return True


@pytest.fixture(scope="module")
def setup(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    driver, browser = _browser_or_skip()
    prefix = f"W{secrets.token_hex(2).upper()}"
    symbols = [f"{prefix}{name}" for name in ("BTC", "ETH", "SOL", "ADA")]
    scratch = tmp_path_factory.mktemp("wall")
    env = {
        "SIGNALPUSH_REDIS_URL": redis_url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/history.db",
        "SIGNALPUSH_SERVER_HEARTBEAT_S": "2",
    }
    server = ServerProcess("serve", env=env, log_path=scratch / "serve.log").start()
    feed = FloorFeed(redis_url, symbols)
    feed.seed(hours=1.0)
    feed.start()
    common = {"minutes": str(MINUTES), "stale_s": "2", "dead_s": "4", "backoff_max_s": "2"}
    everything = Wall(
        browser, f"{server.http_url}/wall?{urlencode({'symbols': ','.join(symbols), **common})}"
    )
    filtered = Wall(
        browser, f"{server.http_url}/wall?{urlencode({'symbols': ','.join(symbols[:2]), **common, **FILTER})}"
    )
    state = {"server": server, "feed": feed, "symbols": symbols, "walls": (everything, filtered), "env": env}
    state["browser"] = browser
    try:
        yield state
    finally:
        feed.stop()
        browser.close()
        driver.stop()
        state["server"].kill()


def _assert_wall_equals_history(state: dict[str, Any]) -> None:
    """Stop the feed, let the walls catch up, and compare their points with /api/history."""
    server, (everything, filtered), symbols = state["server"], state["walls"], state["symbols"]
    state["feed"].pause()
    try:
        walls = [(everything, symbols), (filtered, symbols[:2])]
        try:
            wait_until(lambda: _caught_up(server, walls), 30, what="every tile at the server's last seq")
        except AssertionError:
            seqs = {s["symbol"]: s["seq"] for s in _get(server, "/api/symbols")["symbols"]}
            states = [(s, w.tile(s)) for w, chosen in walls for s in chosen]
            detail = [(s, seqs.get(s), t.get("lastSeq"), t.get("queue"), t.get("ready"), t.get("lastError")) for s, t in states]
            raise AssertionError(f"walls behind the server: {detail}") from None
        for wall, chosen, params in ((everything, symbols, {}), (filtered, symbols[:2], FILTER)):
            for symbol in chosen:
                drawn, stored = wall.points(symbol), _history_points(server, symbol, params)
                for kind in ("signals", "entries", "exits"):
                    # As multisets (two exits may be alike: a half taken and the rest closed at once),
                    # so a point drawn twice or missing fails, and says which.
                    extra, missing = (
                        Counter(drawn[kind]) - Counter(stored[kind]),
                        Counter(stored[kind]) - Counter(drawn[kind]),
                    )
                    assert not extra and not missing, (
                        f"{symbol} {params} {kind}: extra {extra}, missing {missing}"
                    )
                assert stored["signals"] and stored["entries"], f"{symbol}: the test data has no trades"
    finally:
        state["feed"].resume()


def test_the_wall_draws_the_backfill_and_keeps_drawing_live_data(setup: dict[str, Any]) -> None:
    server, (everything, filtered), symbols = setup["server"], setup["walls"], setup["symbols"]
    for wall, chosen in ((everything, symbols), (filtered, symbols[:2])):
        for symbol in chosen:
            wait_until(lambda w=wall, s=symbol: w.tile(s)["ready"], 30, what=f"the {symbol} tile to draw")
    _assert_wall_equals_history(setup)

    # Points keep arriving: positions move, candles are added (5 s candles), live candles replaced.
    before = {s: everything.tile(s) for s in symbols}
    wait_until(
        lambda: all(
            everything.tile(s)["traces"]["candle"] > before[s]["traces"]["candle"]
            and everything.tile(s)["replaced"] > before[s]["replaced"]
            for s in symbols
        ),
        30,
        what="new candles on every tile",
    )
    assert all(everything.tile(s)["reloads"] == 1 for s in symbols), "live data never reloads a figure"
    kpis = everything.tile(symbols[0])["kpis"]
    assert kpis["last_price"] and kpis["active_bots"] is not None and kpis["trades"] > 0

    plotly = everything.responses["/vendor/plotly.min.js"]
    assert (
        plotly.get("content-encoding") == "gzip" and "max-age" in plotly["cache-control"] and plotly["etag"]
    )
    ours = f"127.0.0.1:{server.port}"
    foreign = [
        u
        for u in everything.requests + filtered.requests
        if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != ours
    ]
    assert not foreign, f"requests to other hosts: {foreign}"
    assert everything.problems() == [] and filtered.problems() == []

    OUTPUT.mkdir(exist_ok=True)
    everything.page.screenshot(path=str(OUTPUT / "wall-4-symbols.png"))
    text = everything.page.evaluate("() => getComputedStyle(document.querySelector('.kpi-value')).fontSize")
    assert float(text.removesuffix("px")) >= 20, "KPI values readable from across a room"

    # The index lists symbols and bots, with a wall per symbol and per bot (its symbols, its filter).
    index = setup["browser"].new_page()
    index.goto(f"{server.http_url}/?minutes={MINUTES}")
    index.wait_for_function("document.querySelectorAll('#bots tbody tr a').length >= 4")
    links = index.eval_on_selector_all(
        "#bots tbody tr",
        "(rows) => rows.map((r) => [r.cells[0].textContent, r.querySelector('a').getAttribute('href')])",
    )
    momo = dict(links)["momo-1"]
    assert (
        f"symbols={symbols[0]}%2C{symbols[1]}" in momo
        and "bots=momo-1" in momo
        and f"minutes={MINUTES}" in momo
    )
    index.close()


def test_a_tile_whose_bots_stop_turns_stale_then_dead_and_the_others_stay_live(setup: dict[str, Any]) -> None:
    everything, symbols, feed = setup["walls"][0], setup["symbols"], setup["feed"]
    quiet = symbols[3]
    state = lambda: everything.tile(quiet)["view"]["state"]  # noqa: E731
    feed.pause(quiet)
    try:
        wait_until(lambda: state() == "stale", 10, what="the quiet tile to turn stale")
        wait_until(lambda: state() == "dead", 10, what="the quiet tile to turn dead")
        assert {everything.tile(s)["view"]["state"] for s in symbols[:3]} == {"live"}
        color = everything.page.evaluate(
            "(s) => getComputedStyle(document.querySelector(`[data-tile='${s}'] .tile-state`)).backgroundColor",
            quiet,
        )
        assert color == "rgb(255, 59, 92)"
        assert everything.page.text_content("#connection") == "live · 1 dead"
    finally:
        feed.resume(quiet)
    wait_until(lambda: state() == "live", 10, what="the tile to recover")


def test_the_quality_tile_draws_the_live_signal_quality_of_the_filtered_bots(setup: dict[str, Any]) -> None:
    """``tiles=quality``: the reliability diagram and KPIs from the perf stream; with the feed
    paused, the tile's row for momo-1 equals /api/signal-quality's (the same events, folded live)."""
    server, symbols, feed = setup["server"], setup["symbols"], setup["feed"]
    params = {"symbols": symbols[0], "tiles": "quality", "bots": "momo-1", "minutes": str(MINUTES)}
    wall = Wall(setup["browser"], f"{server.http_url}/wall?{urlencode(params)}")
    quality = lambda: wall.page.evaluate("() => window.signalpushWall?.quality")  # noqa: E731
    try:
        wait_until(lambda: (quality() or {}).get("draws", 0) > 0 and quality()["rows"] == 1, 30,
                   what="the quality tile to draw momo-1")  # fmt: skip
        feed.pause()
        try:

            def same() -> bool:
                api = _get(server, "/api/signal-quality", bots="momo-1")["groups"]
                drawn = wall.page.evaluate(
                    "() => [...document.querySelectorAll('.tile-quality .quality-kpi')].map((n) => n.textContent)"
                )
                return bool(api) and any(line.startswith(f"momo-1 · {api[0]['strategy']}: {api[0]['signals']} signals")
                                         for line in drawn)  # fmt: skip

            wait_until(same, 30, what="the tile's momo-1 row to equal /api/signal-quality's")
        finally:
            feed.resume()
        traces = wall.page.evaluate(
            "() => document.querySelector('.tile-quality .plot').data.map((t) => t.meta.key)"
        )
        assert traces[0] == "diagonal" and traces[1].startswith("quality:momo-1:")
        assert wall.problems() == []
    finally:
        wall.page.close()


def test_after_sigkill_and_restart_the_walls_recover_with_no_gap_and_no_duplicate(
    setup: dict[str, Any],
) -> None:
    server, (everything, filtered), symbols = setup["server"], setup["walls"], setup["symbols"]
    connects = everything.page.evaluate("() => window.signalpushWall.stats.connects")
    server.kill()  # SIGKILL: no close frame, no goodbye; the feed goes on publishing to Redis
    wait_until(
        lambda: everything.page.evaluate("() => window.signalpushWall.state") != "live",
        15,
        what="the wall to notice",
    )
    setup["server"] = ServerProcess(
        "serve", env=setup["env"], port=server.port, log_path=server.log_path
    ).start()
    wait_until(
        lambda: (
            everything.page.evaluate("() => window.signalpushWall.state") == "live"
            and filtered.page.evaluate("() => window.signalpushWall.state") == "live"
        ),
        30,
        what="both walls live again",
    )
    assert everything.page.evaluate("() => window.signalpushWall.stats.connects") > connects
    _assert_wall_equals_history(setup)
    # The feed was paused for the comparison (stale_s=2): the tiles are live again once it flows.
    wait_until(lambda: everything.page.text_content("#connection") == "live", 15, what="the badge live")
    assert everything.problems(allow_refused=True) == [] and filtered.problems(allow_refused=True) == []
    assert not setup["feed"].errors
