"""The wall's screenshots in docs/img/ and its text-size table (docs/client.md), taken on demo data.

    .venv/bin/python -m tests.support.wall_screenshots [--out docs/img]

Runs an embedded Redis, ``signalpush serve`` (its own SQLite) and the demo floor (1-minute
candles, 6 h of history, then live), opens the wall in Chromium at 1920×1080 and 3840×2160 and
takes: 9 tiles at 6 h and 4 tiles at 60 min with live, stale and dead tiles side by side, the
same symbol at 60 min and 6 h, the colour-blind palette, and a killed gateway (the banner).
Prints the measured text sizes as a Markdown table (cap height in px and in mm on a 55" screen).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from server.bench.browser import CHROMIUM_ARGS, chromium_path
from server.cli.embedded import EmbeddedRedis, free_port
from tests.support import wait_until
from tests.support.process import ServerProcess
from tests.support.wall_feed import FloorFeed

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT", "AVAXUSDT", "LINK")
SCREENS = {"1080p": (1920, 1080), "4k": (3840, 2160)}
#: Millimetres per CSS px on a 55" 16:9 screen (1218 mm wide) at each resolution (device scale 1).
MM_PER_PX = {"1080p": 1218 / 1920, "4k": 1218 / 3840}

MEASURE = """() => {
  const cap = (node) => {
    if (!node) return null;
    const s = getComputedStyle(node);
    const c = document.createElement('canvas').getContext('2d');
    c.font = `${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
    return c.measureText('H').actualBoundingBoxAscent;
  };
  const tick = document.querySelector('.plot .xtick text, .plot .ytick text');
  return {
    bar: cap(document.getElementById('clock')),
    symbol: cap(document.querySelector('.tile-symbol')),
    kpi: cap(document.querySelector('.kpi-value')),
    label: cap(document.querySelector('.kpi-label')),
    state: cap(document.querySelector('.tile-state')),
    tick: tick ? parseFloat(getComputedStyle(tick).fontSize) * 0.72 : null,
  };
}"""


def _ready(page: Any, count: int) -> None:
    wait_until(
        lambda: page.evaluate(
            "(n) => { const w = window.signalpushWall; if (!w) return false;"
            " const t = Object.values(w.tiles);"
            " return t.length === n && t.every((x) => x.ready && x.day.ready); }",
            count,
        ),
        60,
        what="every tile drawn",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--hours", type=float, default=6.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="wall-shots-"))
    redis = EmbeddedRedis(port=free_port(), data_dir=scratch / "redis", appendonly=False)
    redis.start()
    env = {
        "SIGNALPUSH_REDIS_URL": redis.url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/history.db",
        "SIGNALPUSH_SERVER_HEARTBEAT_S": "2",
    }
    server = ServerProcess("serve", env=env, log_path=scratch / "serve.log").start()
    feed = FloorFeed(redis.url, SYMBOLS, timeframe="1m", tick_s=0.5)
    feed.seed(hours=args.hours)
    feed.start()
    sizes: list[tuple[str, str, dict[str, float | None]]] = []
    driver = sync_playwright().start()
    browser = driver.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))

    def shoot(name: str, screen: str, params: dict[str, str], count: int, before: Any = None) -> Any:
        width, height = SCREENS[screen]
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(f"{server.http_url}/wall?{urlencode(params)}")
        _ready(page, count)
        if before:
            before(page)
        time.sleep(1.5)
        page.screenshot(path=str(args.out / f"wall-{name}-{screen}.png"))
        sizes.append((name, screen, page.evaluate(MEASURE)))
        return page

    try:
        nine = {"symbols": ",".join(SYMBOLS), "minutes": "360", "stale_s": "8", "dead_s": "20"}
        four = {"symbols": ",".join(SYMBOLS[:4]), "minutes": "60", "stale_s": "8", "dead_s": "20"}
        for screen in SCREENS:
            # Live, stale and dead side by side: one feed stopped 22 s ago (dead), one 10 s ago (stale).
            feed.pause(SYMBOLS[2])
            time.sleep(12)
            feed.pause(SYMBOLS[3])
            start = time.monotonic()
            pages = [shoot("9-tiles-6h", screen, nine, 9), shoot("4-tiles-60min", screen, four, 4)]
            time.sleep(max(0.0, 11 - (time.monotonic() - start)))
            for page, name in zip(pages, ("9-tiles-6h-states", "4-tiles-60min-states"), strict=True):
                page.screenshot(path=str(args.out / f"wall-{name}-{screen}.png"))
                page.close()
            feed.resume()
            time.sleep(3)
            twin = {"symbols": f"{SYMBOLS[0]}@60,{SYMBOLS[0]}@360,{SYMBOLS[1]}@60,{SYMBOLS[1]}@360"}
            shoot("same-symbol-60min-6h", screen, twin, 4).close()
            shoot("cb-palette", screen, {**four, "palette": "cb"}, 4).close()
        # A killed gateway: the banner (1080p and 4K pages open before the kill).
        pages = {screen: shoot("disconnected", screen, four, 4) for screen in SCREENS}
        server.kill()
        for screen, page in pages.items():
            page.wait_for_selector("#banner:not([hidden])", timeout=5000)
            page.screenshot(path=str(args.out / f"wall-disconnected-{screen}.png"))
            page.close()
    finally:
        feed.stop()
        browser.close()
        driver.stop()
        server.kill()
        redis.stop()
    print("| screenshot | screen | bar | symbol | KPI value | KPI label | state | ticks |")
    print("|---|---|---|---|---|---|---|---|")
    for name, screen, measured in sizes:
        mm = MM_PER_PX[screen]
        cells = [
            "–" if measured.get(k) is None else f"{measured[k]:.0f} px · {measured[k] * mm:.1f} mm"  # type: ignore[operator]
            for k in ("bar", "symbol", "kpi", "label", "state", "tick")
        ]
        print(f"| {name} | {screen} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
