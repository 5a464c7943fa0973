"""The gateway's edges against hostile requests and frames: real websockets, real HTTP.

No 500 and no dropped connection for a malformed request or frame; secure defaults for
browsers (Origin, Host); only the shipped client files are served.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from publishers.events import schema_json
from server.gateway.auth import create_jwt
from server.gateway.http import Query, error_response
from tests.support import async_wait_until
from tests.support.gateway import WsClient, gateway_settings, get, running_gateway

SECRET = "a-test-secret-that-is-long-enough"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- browsers: Origin and Host -------------------------------------------------------------


async def test_a_foreign_web_page_cannot_open_the_websocket_by_default(redis_url: str) -> None:
    async with running_gateway(redis_url) as running:
        with pytest.raises(InvalidStatus) as caught:
            await connect(running.ws_url, origin="http://evil.example")  # type: ignore[arg-type]
        assert caught.value.response.status_code == 403
        assert b"server.allowed_origins" in caught.value.response.body
        own = f"http://127.0.0.1:{running.port}"
        async with connect(running.ws_url, origin=own) as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["op"] == "hello"
        async with connect(running.ws_url) as ws:  # no Origin: not a browser
            assert json.loads(await ws.recv())["op"] == "hello"
        reply = await get(running.port, "/api/symbols", [("Origin", "http://evil.example")])
        assert reply.status == 403 and reply.json()["error"] == "forbidden"
        assert running.gateway.metrics.connections_refused >= 1


async def test_dns_rebinding_is_refused_with_421_naming_the_setting(redis_url: str) -> None:
    async with running_gateway(redis_url) as running:
        rebound = f"ws://evil.example:{running.port}/ws"
        with pytest.raises(InvalidStatus) as caught:
            # The page of evil.example, now resolving to 127.0.0.1: same origin for the browser.
            await connect(
                rebound,
                host="127.0.0.1",
                port=running.port,
                origin=f"http://evil.example:{running.port}",  # type: ignore[arg-type]
            )
        assert caught.value.response.status_code == 421
        for path in ("/api/symbols", "/healthz", "/metrics", "/wall"):
            reply = await get(running.port, path, [("Host", f"evil.example:{running.port}")])
            assert reply.status == 421, path
            assert "server.public_hosts" in reply.json()["message"]
        for host in (f"127.0.0.1:{running.port}", f"localhost:{running.port}"):
            assert (await get(running.port, "/healthz", [("Host", host)])).status == 200


async def test_public_hosts_let_a_dns_name_in(redis_url: str) -> None:
    settings = gateway_settings(server={"public_hosts": ["wall.example"]})
    async with running_gateway(redis_url, settings) as running:
        name = f"wall.example:{running.port}"
        assert (await get(running.port, "/api/symbols", [("Host", name)])).status == 200
        origin = f"http://wall.example:{running.port}"
        async with connect(
            f"ws://{name}/ws",
            host="127.0.0.1",
            port=running.port,
            origin=origin,  # type: ignore[arg-type]
        ) as ws:
            assert json.loads(await ws.recv())["op"] == "hello"


# -- malformed HTTP: 4xx naming the field, never a 500 ---------------------------------------


async def test_a_jwt_nested_1500_deep_is_401_not_500(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(auth={"enabled": True, "jwt_secret": SECRET})
    token = f"{_b64(b'[' * 1500)}.{_b64(b'{}')}.{_b64(b'x')}"
    async with running_gateway(redis_url, settings) as running:
        for target in ("/api/symbols", "/ws"):
            reply = await get(running.port, target, [("Authorization", f"Bearer {token}")])
            assert reply.status == 401, (target, reply.body)
            assert reply.json()["error"] == "unauthorized"
        reply = await get(running.port, f"/api/symbols?token={token}")
        assert reply.status == 401
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"


@pytest.mark.parametrize("header", ["Authorization", "Origin", "Host"])
async def test_a_repeated_header_is_400_naming_it(redis_url: str, header: str) -> None:
    values = {
        "Authorization": ["Bearer a", "Bearer b"],
        "Origin": ["http://127.0.0.1", "http://evil.example"],
        "Host": ["127.0.0.1", "evil.example"],
    }[header]
    async with running_gateway(redis_url) as running:
        for target in ("/api/symbols", "/ws"):
            reply = await get(running.port, target, [(header, value) for value in values])
            assert reply.status == 400, (target, reply.status, reply.body)
            assert reply.json()["message"].startswith(f"{header}:")


async def test_a_repeated_query_key_is_400_naming_it(redis_url: str) -> None:
    async with running_gateway(redis_url) as running:
        reply = await get(running.port, "/api/symbols?token=a&token=b")
        assert reply.status == 400 and reply.json()["message"].startswith("token:")
        many = "&".join(f"k{i}=1" for i in range(100))
        reply = await get(running.port, f"/api/symbols?{many}")
        assert reply.status == 400 and reply.json()["message"].startswith("query:")


async def test_an_unexpected_exception_is_a_500_logged_once_without_traceback(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(query: Query) -> Any:
        raise RuntimeError("a bug")

    async with running_gateway(redis_url) as running:
        assert running.routes is not None
        running.routes.add_route("/broken", broken)
        with caplog.at_level(logging.WARNING):
            replies = [await get(running.port, "/broken") for _ in range(5)]
        assert {r.status for r in replies} == {500}
        assert replies[0].json() == {"error": "internal", "message": "internal error"}
        assert (await get(running.port, "/healthz")).status == 200
    crashed = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashed) == 1, "one line per route and error per minute"
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


def test_busy_answers_503_with_retry_after() -> None:
    response = error_response(503, "busy", "history: retry")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"


# -- static files: only what the wheel ships -------------------------------------------------


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/client/signalpush.js", 200),
        ("/client/signalpush.d.ts", 200),
        ("/client/wall.css", 200),
        ("/client/wall-model.js", 200),
        ("/client/index.html", 200),
        ("/client/events-schema.js", 200),
        ("/client/events-schema.json", 200),
        ("/", 200),
        ("/wall", 200),
        ("/client/package.json", 404),
        ("/client/package-lock.json", 404),
        ("/client/__init__.py", 404),
        ("/client/tests/test_model.mjs", 404),
        ("/client/tests/", 404),
        ("/client/../server/gateway.py", 404),
        ("/client/", 404),
    ],
)
async def test_client_serves_the_shipped_files_only(redis_url: str, target: str, status: int) -> None:
    async with running_gateway(redis_url) as running:
        reply = await get(running.port, target)
        assert reply.status == status, (target, reply.status)


async def test_the_event_schema_is_served_as_json_for_the_wall_s_module_import(redis_url: str) -> None:
    async with running_gateway(redis_url) as running:
        reply = await get(running.port, "/client/events-schema.json")
    # A browser imports a JSON module only with a JSON MIME type.
    assert (reply.header("content-type") or "").startswith("application/json")
    assert reply.json() == schema_json()


# -- malformed frames: an error frame naming the field, the connection stays -----------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"op":"ping","ref":' + "9" * 5000 + "}", "frame: a number has too many digits"),
        ('{"op":"ping","ref":"\\ud800"}', "ref:"),
        ('{"op":"subscribe","ref":"s","symbol":"BTCUSDT\\n"}', "symbol:"),
        ('{"op":"subscribe","ref":"s","symbol":7}', "symbol:"),
        ('{"op":"subscribe","ref":"s","symbol":"' + "A" * 5000 + '"}', "symbol:"),
        ('{"op":"subscribe","ref":"s","symbol":"X","resume":{"epoch":"\\ud800","seq":1}}', "resume.epoch:"),
        ('{"op":"' + "x" * 5000 + '"}', "op:"),
        ('{"op":"ping","ref":' + "1" * 65 + "}", "ref:"),
        ("[" * 20000 + "]" * 20000, "frame:"),
        ('{"op":"subscribe","symbol":"X","filter":{"bots":[' + "[" * 900 + "]" * 900 + "]}}", "filter.bots:"),
        ('{"op":"subscribe","symbol":"X","filter":{"' + "k" * 5000 + '":1}}', "filter.k"),
        ('{"op":"unsubscribe","sub":"' + "g" * 5000 + '"}', "sub:"),
    ],
)
async def test_a_malformed_frame_gets_an_error_and_the_connection_stays(
    redis_url: str, text: str, message: str
) -> None:
    settings = gateway_settings(server={"max_frame_bytes": 65536})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        assert client.ws is not None
        await client.ws.send(text)
        error = await client.wait_for(lambda f: f["op"] == "error")
        assert error["code"] == "bad_request" and error["message"].startswith(message), error
        assert len(error["message"]) < 300
        await client.send({"op": "ping", "ref": "after"})
        await client.wait_for(lambda f: f.get("ref") == "after")
        assert client.close_code is None
        await client.close()


async def test_a_token_without_a_symbols_claim_is_refused(redis_url: str) -> None:
    settings = gateway_settings(auth={"enabled": True, "jwt_secret": SECRET})
    async with running_gateway(redis_url, settings) as running:
        header, claims = _b64(b'{"alg":"HS256","typ":"JWT"}'), _b64(b'{"sub":"wall-9"}')
        signing = f"{header}.{claims}"
        signature = hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest()
        token = f"{signing}.{_b64(signature)}"
        with pytest.raises(InvalidStatus) as caught:
            await connect(f"{running.ws_url}?token={token}")
        assert caught.value.response.status_code == 401
        assert b"symbols claim" in caught.value.response.body
        reply = await get(running.port, f"/api/symbols?token={token}")
        assert reply.status == 401
        every = create_jwt(SECRET, name="wall-9", symbols=["*"], ttl_s=60)
        client = await WsClient(f"{running.ws_url}?token={every}").connect()
        await client.subscribe("BTCUSDT")
        await client.close()


@pytest.mark.slow  # out of `make quicktest` (under 60 s); `make test` runs it
async def test_polite_bursts_over_the_bucket_are_never_closed(redis_url: str) -> None:
    settings = gateway_settings(server={"message_rate": 20.0, "message_burst": 10})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        assert client.ws is not None

        def refused() -> int:
            return sum(1 for f in client.frames if f.get("code") == "rate_limited")

        for burst in range(4):
            before = refused()
            for _ in range(18):  # 10 pass, about 8 are refused: never a flood
                await client.ws.send('{"op":"ping"}')
            await async_wait_until(lambda b=before: refused() > b, what=f"burst {burst} limited")  # type: ignore[misc]
            await asyncio.sleep(1.5)  # a pause: the bucket refills, the violations are forgiven
        assert refused() >= 4 * 5
        await client.send({"op": "ping", "ref": "still"})
        await client.wait_for(lambda f: f.get("ref") == "still")
        assert client.close_code is None
        await client.close()


async def test_a_frame_that_crashes_its_handler_gets_error_internal_and_the_connection_stays(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_gateway(redis_url) as running:
        gateway = running.gateway
        dispatch = gateway.ops.dispatch

        async def with_a_bug(session: Any, text: str) -> None:
            if "bug" in text:
                raise RuntimeError("a bug in a handler")
            await dispatch(session, text)

        gateway.ops.dispatch = with_a_bug  # type: ignore[method-assign]
        client = await WsClient(running.ws_url).connect()
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                await client.send({"op": "ping", "ref": "bug"})
            await async_wait_until(
                lambda: sum(1 for f in client.frames if f.get("code") == "internal") == 3, what="3 errors"
            )
        await client.send({"op": "ping", "ref": "fine"})
        await client.wait_for(lambda f: f.get("ref") == "fine" and f["op"] == "pong")
        assert client.close_code is None
        await client.close()
    assert len([r for r in caplog.records if "crashed" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info]
