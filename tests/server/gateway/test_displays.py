"""The wall fleet on real gateways and a real Redis: heartbeats listed by every gateway, commands
reaching exactly the addressed wall, admin tokens, expiry shown, hostile Redis records dropped."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest
import redis as redis_sync
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from publishers import keys
from server.gateway.auth import create_jwt
from tests.support import async_wait_until
from tests.support.gateway import WsClient, gateway_settings, running_gateway

SECRET = "a-test-secret-for-the-wall-fleet"
VIEWER = "viewer-token-for-walls-abcdef"
ADMIN = "admin-token-for-walls-abcdef12"


def _auth_settings() -> Any:
    tokens = [
        {"name": "tv", "token": VIEWER, "symbols": ["*"]},
        {"name": "ops", "token": ADMIN, "symbols": ["*"], "admin": True},
    ]
    return gateway_settings(auth={"enabled": True, "jwt_secret": SECRET, "tokens": tokens})


def _http(url: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = Request(url, method=method, headers=headers)
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def http(url: str, method: str = "GET", token: str | None = None) -> tuple[int, Any]:
    return await asyncio.to_thread(_http, url, method, token)


def beat(display: str, **extra: Any) -> dict[str, Any]:
    return {
        "op": "display",
        "display": display,
        "tiles": [{"id": "BTCUSDT", "seq": 5, "age_s": 0.5}],
        "fps": 60,
        "page_age_s": 12,
        "params": {"symbols": "BTCUSDT", "display": display},
        **extra,
    }


def listed(body: dict[str, Any], display: str) -> dict[str, Any] | None:
    return next((d for d in body["displays"] if d["display"] == display), None)


async def test_two_gateways_list_every_display_and_a_command_reaches_exactly_its_wall(redis_url: str) -> None:
    left, right = f"left-{secrets.token_hex(3)}", f"right-{secrets.token_hex(3)}"
    async with running_gateway(redis_url) as one, running_gateway(redis_url) as two:
        await async_wait_until(
            lambda: one.gateway.displays.listening and two.gateway.displays.listening,
            what="both gateways on the command channel",
        )
        wall_left = await WsClient(one.ws_url).connect()
        wall_right = await WsClient(two.ws_url).connect()
        await wall_left.send(beat(left))
        await wall_right.send(beat(right, fps=0))

        async def both_listed() -> dict[str, Any] | None:
            _, body = await http(f"{one.http_url}/api/walls")
            return body if listed(body, left) and listed(body, right) else None

        body = await async_wait_until(both_listed, what="both displays on /api/walls of one gateway")
        assert listed(body, left)["health"] == "live"
        assert listed(body, right)["health"] == "not drawing", "heartbeats, but no frames"
        assert listed(body, right)["gateway"] != "" and listed(body, left)["params"]["symbols"] == "BTCUSDT"
        _, other = await http(f"{two.http_url}/api/walls")
        assert listed(other, left) and listed(other, right), "the other gateway lists the same fleet"

        query = urlencode({"action": "set", "symbols": "ETHUSDT", "minutes": "30"})
        status, sent = await http(f"{two.http_url}/api/walls/{left}/command?{query}", "POST")
        assert status == 202 and sent["action"] == "set" and sent["gateways_listening"] >= 2, sent
        frame = await wall_left.wait_for(lambda f: f["op"] == "command")
        assert frame == {
            "op": "command",
            "id": sent["id"],
            "action": "set",
            "params": {"symbols": "ETHUSDT", "minutes": "30"},
        }
        status, _ = await http(f"{one.http_url}/api/walls/{right}/command?action=identify", "POST")
        await wall_right.wait_for(lambda f: f["op"] == "command" and f["action"] == "identify")
        assert [f["action"] for f in wall_left.frames if f["op"] == "command"] == ["set"], "only its own"
        assert [f["action"] for f in wall_right.frames if f["op"] == "command"] == ["identify"]

        status, missing = await http(
            f"{one.http_url}/api/walls/nobody-{secrets.token_hex(3)}/command?action=reload", "POST"
        )
        assert status == 404 and missing["error"] == "not_found"
        status, bad = await http(f"{one.http_url}/api/walls/{left}/command?action=format-disk", "POST")
        assert status == 400 and "action" in bad["message"]
        status, _ = await http(f"{one.http_url}/api/walls/{left}/command?action=reload")
        assert status == 400, "a command is a POST"
        page = await asyncio.to_thread(lambda: urlopen(f"{one.http_url}/walls", timeout=10).read())
        assert b"/client/walls.js" in page, "the operator page"
        await wall_left.close()
        await wall_right.close()


async def test_a_bad_heartbeat_is_an_error_and_the_wall_stays(redis_url: str) -> None:
    async with running_gateway(redis_url) as running:
        wall = await WsClient(running.ws_url).connect()
        await wall.send({**beat("ok-1"), "ref": "h1", "fps": "fast"})
        error = await wall.wait_for(lambda f: f.get("ref") == "h1")
        assert error["op"] == "error" and error["message"].startswith("fps")
        await wall.send({**beat("ok-1"), "ref": "h2"})
        await wall.send({**beat("ok-2"), "ref": "h3"})
        switched = await wall.wait_for(lambda f: f.get("ref") == "h3")
        assert switched["op"] == "error" and "reports display ok-1" in switched["message"], (
            "one id per socket"
        )
        assert not any(f.get("ref") == "h2" for f in wall.frames), "a heartbeat has no reply"
        await wall.send({"op": "ping", "ref": "p"})
        await wall.wait_for(lambda f: f.get("ref") == "p" and f["op"] == "pong")
        await wall.close()


async def test_hostile_records_in_redis_are_dropped_not_shown(redis_url: str) -> None:
    good, forged = f"good-{secrets.token_hex(3)}", f"forged-{secrets.token_hex(3)}"
    direct = redis_sync.Redis.from_url(redis_url)
    now = int(time.time() * 1000)
    direct.set(keys.display_key(forged), b'{"display": "' + forged.encode() + b'", "fps": "<script>"}')
    direct.zadd(keys.DISPLAYS_KEY, {forged: now, "not a name!": now})
    direct.hset(keys.VIEWS_KEY, f"broken-{secrets.token_hex(2)}", b"[not json")
    try:
        async with running_gateway(redis_url) as running:
            wall = await WsClient(running.ws_url).connect()
            await wall.send(beat(good))

            async def shown() -> dict[str, Any] | None:
                _, body = await http(f"{running.http_url}/api/walls")
                return body if listed(body, good) else None

            body = await async_wait_until(shown, what="the good display")
            assert listed(body, forged) is None and listed(body, "not a name!") is None
            assert running.gateway.displays.dropped.get("bad_record", 0) >= 1
            status, views = await http(f"{running.http_url}/api/views")
            assert status == 200 and all(not name.startswith("broken-") for name in views["views"])
            await wall.close()
    finally:
        direct.delete(keys.display_key(forged))
        direct.zrem(keys.DISPLAYS_KEY, forged, "not a name!")
        direct.close()


async def test_steering_needs_an_admin_token_and_an_expired_token_shows_on_walls(redis_url: str) -> None:
    display, view = f"tv-{secrets.token_hex(3)}", f"floor-{secrets.token_hex(3)}"
    async with running_gateway(redis_url, _auth_settings()) as running:
        base = running.http_url
        short = create_jwt(SECRET, name="tv-short", symbols=["*"], ttl_s=2)
        wall = await WsClient(f"{running.ws_url}?token={short}").connect()
        await wall.send(beat(display))

        async def listed_now() -> dict[str, Any] | None:
            _, body = await http(f"{base}/api/walls", token=VIEWER)
            return listed(body, display)

        await async_wait_until(listed_now, what="the display listed")
        assert (await http(f"{base}/api/walls"))[0] == 401
        command = f"{base}/api/walls/{display}/command?action=reload"
        assert (await http(command, "POST", VIEWER))[0] == 403, "a reader may not steer"
        jwt_admin = create_jwt(SECRET, name="ops-2", symbols=["*"], ttl_s=60, admin=True)
        assert (await http(command, "POST", jwt_admin))[0] == 202
        await wall.wait_for(lambda f: f["op"] == "command" and f["action"] == "reload")

        save = f"{base}/api/views?{urlencode({'name': view, 'symbols': 'BTCUSDT,ETHUSDT', 'minutes': '60'})}"
        assert (await http(save, "POST", VIEWER))[0] == 403
        status, saved = await http(save, "POST", ADMIN)
        assert status == 201 and saved["params"] == {"symbols": "BTCUSDT,ETHUSDT", "minutes": "60"}
        status, one = await http(f"{base}/api/views?name={view}", token=VIEWER)
        assert status == 200 and one["params"]["symbols"] == "BTCUSDT,ETHUSDT"
        assert (await http(f"{base}/api/views?name={view}", "DELETE", ADMIN))[1]["deleted"] is True
        assert (await http(f"{base}/api/views?name={view}", token=VIEWER))[0] == 404

        await async_wait_until(lambda: wall.close_code == 4003, what="4003 when the token expires")

        async def expired() -> bool:
            record = await listed_now()
            return record is not None and record["status"] == "token_expired"

        await async_wait_until(expired, what="the display marked token_expired on /api/walls")
        assert (await listed_now() or {})["health"] == "not drawing"

        # A wall drawing again, then restarted with its expired token: the refused handshake
        # (its URL names the display) marks the record as well.
        fresh = await WsClient(f"{running.ws_url}?token={VIEWER}").connect()
        await fresh.send(beat(display))

        async def ok_again() -> bool:
            record = await listed_now()
            return record is not None and record["status"] == "ok"

        await async_wait_until(ok_again, what="the display ok again")
        await fresh.close()
        long_expired = create_jwt(SECRET, name="tv-short", symbols=["*"], ttl_s=-60)
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{running.ws_url}?token={long_expired}&display={display}")
        assert refused.value.response.status_code == 401
        await async_wait_until(expired, what="the refused reconnect marking token_expired")


@pytest.mark.parametrize("admin", [False, True])
def test_token_create_admin_flag(admin: bool) -> None:
    from server.gateway.auth import Authenticator

    settings = _auth_settings()
    principal = Authenticator(settings.auth).authenticate(
        create_jwt(SECRET, name="x", symbols=["*"], ttl_s=60, admin=admin)
    )
    assert principal.admin is admin
    assert Authenticator(settings.auth).authenticate(ADMIN).admin is True
    assert Authenticator(settings.auth).authenticate(VIEWER).admin is False


async def test_the_least_privilege_gateway_user_runs_the_fleet_on_redis_7(redis7_url: str) -> None:
    from tests.support.acl import acl_user, refusals

    redis_url = redis7_url
    display, view = f"acl-{secrets.token_hex(3)}", f"acl-view-{secrets.token_hex(3)}"
    with acl_user(redis_url, "gateway") as (name, url):
        async with running_gateway(url) as running:
            await async_wait_until(lambda: running.gateway.displays.listening, what="the command channel")
            wall = await WsClient(running.ws_url).connect()
            await wall.send(beat(display))

            async def shown() -> bool:
                status, body = await http(f"{running.http_url}/api/walls")
                return status == 200 and listed(body, display) is not None

            await async_wait_until(shown, what="the display listed as the gateway user")
            status, _ = await http(f"{running.http_url}/api/walls/{display}/command?action=reload", "POST")
            assert status == 202
            await wall.wait_for(lambda f: f["op"] == "command")
            save = f"{running.http_url}/api/views?{urlencode({'name': view, 'symbols': 'BTCUSDT'})}"
            assert (await http(save, "POST"))[0] == 201
            assert (await http(f"{running.http_url}/api/views?name={view}", "DELETE"))[0] == 200
            await wall.close()
        assert refusals(redis_url, name) == []
