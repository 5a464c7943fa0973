"""The wall fleet in a real Chromium against a real ``signalpush serve`` (auth on).

One server, one demo floor, one browser. Two walls report heartbeats and appear on ``/walls``;
a command clicked there (and one sent through the API) reaches exactly the addressed wall;
a stalled render loop (forced) heals by a reload; a kept token needs no ``?token=`` after a
restart; an expired token shows its message and a ``/walls`` status; auto-fit picks the grids.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from server.gateway.auth import create_jwt
from tests.client_js.test_wall_browser import _browser_or_skip
from tests.support import wait_until
from tests.support.process import ServerProcess
from tests.support.wall_feed import FloorFeed

pytestmark = pytest.mark.browser

SECRET = "a-browser-test-secret-for-the-fleet"
VIEWER = f"viewer-{secrets.token_hex(12)}"
ADMIN = f"admin-{secrets.token_hex(12)}"


def _api(server: ServerProcess, path: str, method: str = "GET", token: str = ADMIN) -> Any:
    request = Request(f"{server.http_url}{path}", method=method, headers={"Authorization": f"Bearer {token}"})
    with urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _display(server: ServerProcess, display: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = next(
        (d for d in _api(server, "/api/walls")["displays"] if d["display"] == display), None
    )
    return found


def _eval(page: Any, script: str, default: Any = None) -> Any:
    """``page.evaluate``, or ``default`` while the page is between two documents (a reload)."""
    try:
        return page.evaluate(script)
    except Exception:  # noqa: BLE001 - "Execution context was destroyed" during a reload
        return default


def _fleet(page: Any) -> dict[str, Any]:
    found: dict[str, Any] = _eval(page, "() => window.signalpushWall?.fleet ?? null") or {}
    return found


def _grid(page: Any) -> str:
    return str(
        _eval(
            page,
            """() => { const s = document.getElementById('wall').style;
                       return `${s.getPropertyValue('--cols')}x${s.getPropertyValue('--rows')}`; }""",
            "",
        )
    )


@pytest.fixture(scope="module")
def fleet(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    driver, browser = _browser_or_skip()
    prefix = f"F{secrets.token_hex(2).upper()}"
    symbols = [f"{prefix}{name}" for name in ("BTC", "ETH", "SOL")]
    scratch = tmp_path_factory.mktemp("fleet")
    tokens = [
        {"name": "tv", "token": VIEWER, "symbols": ["*"]},
        {"name": "ops", "token": ADMIN, "symbols": ["*"], "admin": True},
    ]
    env = {
        "SIGNALPUSH_REDIS_URL": redis_url,
        "SIGNALPUSH_DATABASE_URL": f"sqlite+aiosqlite:///{scratch}/history.db",
        "SIGNALPUSH_SERVER_HEARTBEAT_S": "2",
        "SIGNALPUSH_AUTH_ENABLED": "1",
        "SIGNALPUSH_AUTH_JWT_SECRET": SECRET,
        "SIGNALPUSH_AUTH_TOKENS": json.dumps(tokens),
    }
    server = ServerProcess("serve", env=env, log_path=scratch / "serve.log").start()
    feed = FloorFeed(redis_url, symbols)
    feed.seed(hours=0.05)
    feed.start()
    try:
        yield {"server": server, "browser": browser, "symbols": symbols}
    finally:
        feed.stop()
        browser.close()
        driver.stop()
        server.kill()


def test_walls_report_are_steered_one_by_one_heal_and_keep_their_token(fleet: dict[str, Any]) -> None:
    server, browser, symbols = fleet["server"], fleet["browser"], fleet["symbols"]
    left, right = f"left-{secrets.token_hex(3)}", f"right-{secrets.token_hex(3)}"
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    context.on("page", lambda p: p.on("pageerror", lambda e: errors.append(f"{p.url}: {e}")))
    common = {"token": VIEWER, "heartbeat_s": "1", "minutes": "10", "stall_s": "3"}
    walls = {}
    for display, chosen in ((left, symbols[:1]), (right, symbols[:2])):
        page = context.new_page()
        page.goto(
            f"{server.http_url}/wall?{urlencode({'display': display, 'symbols': ','.join(chosen), **common})}"
        )
        walls[display] = page
    operator = context.new_page()
    operator.goto(f"{server.http_url}/walls?token={ADMIN}&refresh_s=1")

    def listed_live() -> bool:
        shown = _eval(operator, "() => window.signalpushWalls.displays", []) or []
        health = {d["display"]: d["health"] for d in shown}
        return health.get(left) == "live" and health.get(right) == "live"

    wait_until(listed_live, 30, what="both walls live on /walls")
    record = _display(server, right)
    assert record is not None and record["params"]["symbols"] == ",".join(symbols[:2])
    assert "token" not in record["params"] and record["principal"] == "tv"
    assert [t["id"] for t in record["tiles"]] == symbols[:2] and record["fps"] > 1
    # Auto-fit: one tile fills the screen; two time series are stacked (landscape tiles).
    assert _grid(walls[left]) == "1x1" and _grid(walls[right]) == "1x2"

    # A command clicked on /walls reaches exactly the addressed wall.
    operator.locator(f"tr[data-display='{left}'] button", has_text="identify").click()
    wait_until(
        lambda: [c["action"] for c in _fleet(walls[left])["commands"]] == ["identify"], 15, what="identify"
    )
    assert walls[left].locator("#identify").inner_text() == left
    assert _fleet(walls[right])["commands"] == []
    operator.locator(f"tr[data-display='{left}'] button", has_text="night").click()
    wait_until(lambda: _fleet(walls[left]).get("theme") == "night", 15, what="the night theme")
    assert "theme-night" in walls[left].evaluate("() => document.body.className")

    # Through the API: new symbols for the right wall only; it reloads with them, re-fitted.
    query = urlencode({"action": "set", "symbols": ",".join(symbols)})
    sent = _api(server, f"/api/walls/{right}/command?{query}", "POST")
    assert sent["gateway"] and sent["action"] == "set"
    wait_until(
        lambda: _eval(walls[right], "() => window.signalpushWall?.symbols", []) == symbols,
        30,
        what="new symbols",
    )
    wait_until(lambda: _grid(walls[right]) == "2x2", 15, what="3 tiles on a 2x2 grid")
    assert [c["action"] for c in _fleet(walls[left])["commands"]] == ["identify", "theme"], "left untouched"

    # A stalled render loop heals: the page reloads itself, says why, and draws again.
    walls[left].evaluate("() => window.signalpushWall.forceStall()")
    wait_until(lambda: _fleet(walls[left]).get("heals") == 1, 30, what="the stalled wall to reload itself")
    assert _fleet(walls[left])["lastHeal"] == "stalled"
    assert _fleet(walls[left])["theme"] == "night", "the operator's theme survives the reload"
    wait_until(
        lambda: (_display(server, left) or {}).get("heals") == 1, 30, what="/api/walls to count the heal"
    )
    wait_until(
        lambda: (_display(server, left) or {}).get("health") == "live", 30, what="the healed wall drawing"
    )

    # The token was accepted once and kept: a restart on a bare URL naming a saved view connects
    # and shows the view.
    view = f"floor-{secrets.token_hex(3)}"
    _api(server, f"/api/views?{urlencode({'name': view, 'symbols': symbols[2], 'minutes': '10'})}", "POST")
    bare = context.new_page()
    kept = f"kept-{secrets.token_hex(3)}"
    bare.goto(f"{server.http_url}/wall?{urlencode({'display': kept, 'view': view, 'heartbeat_s': '1'})}")
    wait_until(lambda: (_display(server, kept) or {}).get("health") == "live", 30, what="the bare-URL wall live")
    assert _eval(bare, "() => window.signalpushWall.symbols") == [symbols[2]]
    assert errors == [], errors
    context.close()


def test_an_expired_token_shows_a_message_and_a_walls_status(fleet: dict[str, Any]) -> None:
    server, browser, symbols = fleet["server"], fleet["browser"], fleet["symbols"]
    display = f"expiring-{secrets.token_hex(3)}"
    token = create_jwt(SECRET, name="short", symbols=["*"], ttl_s=10)  # time to load on a busy machine
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    params = {"display": display, "symbols": symbols[0], "token": token, "heartbeat_s": "1", "minutes": "10"}
    page.goto(f"{server.http_url}/wall?{urlencode(params)}")
    wait_until(lambda: _display(server, display), 20, what="the wall listed")
    message = page.locator("#fleet-message")
    wait_until(lambda: message.count() and message.is_visible(), 30, what="the expired-token message")
    assert "EXPIRED" in message.inner_text() and display in message.inner_text()
    record = _display(server, display)
    assert record is not None and record["status"] == "token_expired" and record["health"] == "not drawing"
    assert _fleet(page)["status"] == "token_expired"
    context.close()
