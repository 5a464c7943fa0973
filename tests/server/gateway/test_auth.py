"""Access control: static tokens and JWTs, at the handshake, per subscribe, on HTTP, and at expiry."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from publishers.errors import ConfigError
from server.errors import ProtocolError
from server.gateway.auth import Authenticator, create_jwt
from tests.support import async_wait_until
from tests.support.gateway import WsClient, gateway_settings, running_gateway

SECRET = "a-test-secret-that-is-long-enough"
STATIC = "static-token-for-wall-1-abcdef"


def signed(claims: bytes, header: bytes = b'{"alg":"HS256","typ":"JWT"}', secret: str = SECRET) -> str:
    """A JWT with these exact header and claims bytes, validly signed."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing = f"{b64(header)}.{b64(claims)}"
    return f"{signing}.{b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())}"


def auth_settings(**extra: Any) -> Any:
    tokens = [{"name": "wall-1", "token": STATIC, "symbols": ["BTC*"]}]
    return gateway_settings(auth={"enabled": True, "jwt_secret": SECRET, "tokens": tokens}, **extra)


def test_static_tokens_and_jwts_grant_their_patterns() -> None:
    auth = Authenticator(auth_settings().auth)
    static = auth.authenticate(STATIC)
    assert static.name == "wall-1" and static.can_read("BTCUSDT") and not static.can_read("ETHUSDT")
    jwt = auth.authenticate(create_jwt(SECRET, name="wall-3", symbols=["BTC*", "ETHUSDT"], ttl_s=60))
    assert jwt.name == "wall-3" and jwt.can_read("ETHUSDT") and not jwt.can_read("ETHBTC")
    assert "secret" not in repr(auth) and SECRET not in repr(auth)


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "wrong-static-token-xxxxxxxxxxxx",
        create_jwt("another-secret-entirely-xxxxxx", name="x", symbols=["*"], ttl_s=60),  # forged signature
        create_jwt(SECRET, name="x", symbols=["*"], ttl_s=-60),  # expired
        "e30.e30.",  # alg missing
        base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
        + "."
        + base64.urlsafe_b64encode(b'{"sub":"x","symbols":["*"]}').decode().rstrip("=")
        + ".",  # alg none
        "not.a.jwt",
        signed(b'{"sub":"x"}'),  # no symbols claim: never "every symbol"
        signed(b'{"sub":"x","symbols":["*"],"exp":NaN}'),
        signed(b'{"sub":"x","symbols":["*"],"exp":"tomorrow"}'),
        signed(b'{"sub":"x","symbols":["*"],"nbf":NaN}'),
        signed(b'{"sub":"x","symbols":[""]}'),
        signed(b'{"sub":"x","symbols":["' + b"A" * 65 + b'"]}'),
        signed(b'{"symbols":["*"]}'),  # no sub
        signed(b'{"sub":"x","symbols":["*"]}', header=b"[" * 1500),  # signed, yet nested too deep
        signed(b"[" * 1500),
        base64.urlsafe_b64encode(b"[" * 1500).decode() + ".e30.e30",  # unsigned: never decoded
        "x" * 5000,
        "t\u00f6ken-with-non-ascii-characters",
        "\udcff" * 20,  # undecodable header bytes
    ],
)
def test_bad_tokens_are_unauthorized(token: str | None) -> None:
    auth = Authenticator(auth_settings().auth)
    with pytest.raises(ProtocolError) as caught:
        auth.authenticate(token)
    assert caught.value.code == "unauthorized"


def test_auth_without_any_credential_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auth"):
        Authenticator(gateway_settings(auth={"enabled": True}).auth)


def test_token_create_prints_a_jwt_the_server_accepts() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli.main",
            "token",
            "create",
            "--name",
            "wall-3",
            "--symbols",
            "BTC*,ETH*",
            "--days",
            "90",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SIGNALPUSH_AUTH_JWT_SECRET": SECRET, "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    principal = Authenticator(auth_settings().auth).authenticate(result.stdout.strip())
    assert principal.patterns == ("BTC*", "ETH*")
    assert 89 * 86400 < (principal.seconds_left() or 0) <= 90 * 86400
    assert principal.admin is False


def test_token_create_admin_prints_a_jwt_that_may_steer_walls() -> None:
    command = [sys.executable, "-m", "server.cli.main", "token", "create", "--name", "ops", "--symbols", "*"]
    result = subprocess.run(
        [*command, "--admin"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SIGNALPUSH_AUTH_JWT_SECRET": SECRET, "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert Authenticator(auth_settings().auth).authenticate(result.stdout.strip()).admin is True


async def test_the_handshake_needs_a_valid_token(redis_url: str) -> None:
    async with running_gateway(redis_url, auth_settings()) as running:
        for url in (running.ws_url, f"{running.ws_url}?token=bogus"):
            with pytest.raises(InvalidStatus) as caught:
                await connect(url)
            assert caught.value.response.status_code == 401
        async with connect(f"{running.ws_url}?token={STATIC}") as ws:
            assert json.loads(await ws.recv())["op"] == "hello"
        async with connect(running.ws_url, additional_headers={"Authorization": f"Bearer {STATIC}"}) as ws:
            assert json.loads(await ws.recv())["op"] == "hello"
        expired = create_jwt(SECRET, name="old", symbols=["*"], ttl_s=-3600)
        with pytest.raises(InvalidStatus) as caught:
            await connect(f"{running.ws_url}?token={expired}")
        assert caught.value.response.status_code == 401


async def test_a_btc_token_cannot_read_ethusdt(redis_url: str) -> None:
    async with running_gateway(redis_url, auth_settings()) as running:
        client = await WsClient(f"{running.ws_url}?token={STATIC}").connect()
        await client.subscribe("BTCUSDT")
        await client.send({"op": "subscribe", "ref": "eth", "symbol": "ETHUSDT"})
        error = await client.wait_for(lambda f: f.get("ref") == "eth")
        assert (error["op"], error["code"]) == ("error", "forbidden")
        assert "ETHUSDT" not in running.gateway.fanout.symbols
        await client.close()

        def get(path: str) -> tuple[int, dict[str, Any]]:
            try:
                with urlopen(Request(f"{running.http_url}{path}"), timeout=5) as response:
                    return response.status, json.loads(response.read())
            except HTTPError as exc:
                return exc.code, json.loads(exc.read())

        assert (await asyncio.to_thread(get, "/api/symbols"))[0] == 401
        status, body = await asyncio.to_thread(get, f"/api/symbols?token={STATIC}")
        assert status == 200 and all(s["symbol"].startswith("BTC") for s in body["symbols"])


async def test_a_connection_is_closed_with_4003_when_its_token_expires(redis_url: str) -> None:
    async with running_gateway(redis_url, auth_settings()) as running:
        short = create_jwt(SECRET, name="brief", symbols=["*"], ttl_s=2)
        client = await WsClient(f"{running.ws_url}?token={short}").connect()
        started = time.monotonic()
        await async_wait_until(lambda: client.close_code is not None, timeout=10, what="close at expiry")
        assert client.close_code == 4003
        assert time.monotonic() - started < 6


async def test_origins_outside_the_allowlist_are_refused(redis_url: str) -> None:
    settings = gateway_settings(server={"allowed_origins": ["https://wall.example"]})
    async with running_gateway(redis_url, settings) as running:
        with pytest.raises(InvalidStatus) as caught:
            await connect(running.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
        assert caught.value.response.status_code == 403
        async with connect(running.ws_url, origin="https://wall.example") as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["op"] == "hello"
        async with connect(running.ws_url) as ws:  # no Origin: not a browser, accepted
            assert json.loads(await ws.recv())["op"] == "hello"


async def test_the_per_address_limit_answers_429(redis_url: str) -> None:
    settings = gateway_settings(server={"max_connections_per_ip": 2})
    async with running_gateway(redis_url, settings) as running:
        clients = [await WsClient(running.ws_url).connect() for _ in range(2)]
        with pytest.raises(InvalidStatus) as caught:
            await connect(running.ws_url)
        assert caught.value.response.status_code == 429
        await clients[0].close()
        await async_wait_until(lambda: running.gateway.per_address.get("127.0.0.1") == 1, what="slot freed")
        third = await WsClient(running.ws_url).connect()
        for client in (clients[1], third):
            await client.close()
