"""Bad input: every bad frame gets its error or close code, and never disturbs another client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from publishers import Publisher
from tests.support import async_wait_until
from tests.support.gateway import RunningGateway, WsClient, gateway_settings, running_gateway


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ("not json", "bad_request", "not valid JSON"),
        ("[1, 2]", "bad_request", "must be a JSON object"),
        ({"op": "launch"}, "bad_request", "op: unknown op"),
        ({"op": "subscribe", "ref": "1"}, "bad_request", "symbol:"),
        ({"op": "subscribe", "ref": "1", "symbol": "BTC USDT"}, "bad_request", "symbol:"),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "filter": {"kinds": ["orders"]}},
            "bad_request",
            "filter.kinds:",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "filter": {"min_confidence": 2}},
            "bad_request",
            "filter.min_confidence:",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "filter": {"bots": "x" * 70}},
            "bad_request",
            "filter.bots:",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "filter": {"colour": ["red"]}},
            "bad_request",
            "filter.colour: unknown key",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "history": {"minutes": -5}},
            "bad_request",
            "history.minutes:",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "history": {"max_points": "many"}},
            "bad_request",
            "history.max_points:",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "resume": {"epoch": 5, "seq": 1}},
            "bad_request",
            "resume.epoch:",
        ),
        (
            {"op": "subscribe", "ref": "1", "symbol": "X", "resume": {"epoch": "e", "seq": -1}},
            "bad_request",
            "resume.seq:",
        ),
        ({"op": "unsubscribe", "ref": "1", "sub": "g999999"}, "bad_request", "sub: no subscription"),
        ({"op": "ping", "ref": {"nested": 1}}, "bad_request", "ref:"),
    ],
)
async def test_a_bad_frame_gets_an_error_naming_the_field_and_the_connection_stays(
    redis_url: str, symbol: str, frame: Any, code: str, message: str
) -> None:
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        await client.ws.send(frame if isinstance(frame, str) else json.dumps(frame))  # type: ignore[union-attr]
        error = await client.wait_for(lambda f: f["op"] == "error")
        assert error["code"] == code
        assert message in error["message"]
        if isinstance(frame, dict) and isinstance(frame.get("ref"), str):
            assert error["ref"] == frame["ref"]
        await client.subscribe(symbol)  # still usable
        await client.close()


async def test_binary_frames_close_with_1003(redis_url: str) -> None:
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        await client.ws.send(b"\x00\x01")  # type: ignore[union-attr]
        await async_wait_until(lambda: client.close_code is not None, what="close")
        assert client.close_code == 1003


async def test_oversized_frames_close_with_1009(redis_url: str) -> None:
    settings = gateway_settings(server={"max_frame_bytes": 1024})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        await client.send({"op": "ping", "ref": "x" * 2000})
        await async_wait_until(lambda: client.close_code is not None, what="close")
        assert client.close_code == 1009


async def test_a_flood_is_rate_limited_then_closed_with_1008(redis_url: str) -> None:
    settings = gateway_settings(server={"message_rate": 5.0, "message_burst": 10})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        for _ in range(40):
            if client.close_code is not None:
                break
            try:
                await client.send({"op": "ping"})
            except ConnectionClosed:
                break
        await async_wait_until(lambda: client.close_code is not None, what="close")
        assert any(f["op"] == "error" and f["code"] == "rate_limited" for f in client.frames)
        assert client.close_code == 1008


async def test_too_many_subscriptions(redis_url: str, symbol: str) -> None:
    settings = gateway_settings(server={"max_subscriptions": 2})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        await client.subscribe(symbol)
        await client.subscribe(f"{symbol}B")
        await client.send({"op": "subscribe", "ref": "third", "symbol": f"{symbol}C"})
        error = await client.wait_for(lambda f: f.get("ref") == "third")
        assert (error["op"], error["code"]) == ("error", "too_many")
        await client.subscribe(symbol)  # the same subscription again replaces itself: allowed
        await client.close()


async def test_the_connection_cap_refuses_with_503(redis_url: str) -> None:
    settings = gateway_settings(server={"max_connections": 2})
    async with running_gateway(redis_url, settings) as running:
        clients = [await WsClient(running.ws_url).connect() for _ in range(2)]
        with pytest.raises(Exception, match="503"):
            await connect(running.ws_url)
        assert running.gateway.metrics.connections_refused == 1
        for client in clients:
            await client.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FRAMES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    JSON_VALUES.map(json.dumps),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["subscribe", "unsubscribe", "ping", "x"])},
        optional={
            "ref": JSON_VALUES,
            "symbol": st.text(max_size=12),
            "filter": JSON_VALUES,
            "history": JSON_VALUES,
            "resume": JSON_VALUES,
            "sub": JSON_VALUES,
        },
    ).map(json.dumps),
)


async def _fuzz_one(running: RunningGateway, frames: list[str | bytes]) -> None:
    try:
        async with connect(running.ws_url) as ws:
            await ws.recv()
            for frame in frames:
                await ws.send(frame)
            await ws.send(json.dumps({"op": "ping", "ref": "end"}))
            async for message in ws:
                if '"ref":"end"' in str(message):
                    break
    except ConnectionClosed as exc:
        closed = exc
    else:
        return
    assert closed.rcvd is not None and closed.rcvd.code in (1003, 1008, 1009), closed


async def test_fuzzed_frames_never_crash_the_server_or_disturb_a_good_client(
    redis_url: str, symbol: str
) -> None:
    async with running_gateway(redis_url) as running:
        good = await WsClient(running.ws_url).connect()
        sub = (await good.subscribe(symbol))["sub"]
        publisher = Publisher(redis_url, bot="b", strategy="s")
        published = 0

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(frames=st.lists(FRAMES, min_size=1, max_size=8))
        def fuzz(frames: list[str | bytes]) -> None:
            runner.append(frames)

        runner: list[list[str | bytes]] = []
        fuzz()
        for frames in runner:
            await _fuzz_one(running, frames)
            await publisher.signal(symbol, "buy", price=1, confidence=0.5)
            published += 1
        await async_wait_until(lambda: good.position(sub) == published, what="every event at the good client")
        assert good.seqs(sub) == list(range(1, published + 1))
        assert good.close_code is None
        await publisher.aclose()
        await good.close()


PATHS = st.one_of(
    st.sampled_from(
        [
            "/",
            "/wall",
            "/healthz",
            "/metrics",
            "/api/symbols",
            "/api/history",
            "/api/bots",
            "/api/performance",
            "/api/figure",
            "/api/day",
            "/client/signalpush.js",
            "/vendor/plotly.min.js",
            "/client/../server/gateway.py",
            "/client/",
            "/ws",
        ]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="#?"), max_size=30
    ).map(lambda p: "/" + p),
)
QUERIES = st.dictionaries(
    st.sampled_from(
        [
            "symbol",
            "symbols",
            "minutes",
            "max_points",
            "bots",
            "strategies",
            "min_confidence",
            "signal_types",
            "sides",
            "kinds",
            "days",
            "tz",
            "token",
            "x",
        ]
    ),
    st.text(max_size=20),
    max_size=5,
)


async def test_fuzzed_http_requests_never_get_a_server_error(redis_url: str) -> None:
    import http.client
    from urllib.parse import quote, urlencode

    async with running_gateway(redis_url) as running:
        requests: list[str] = []

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(path=PATHS, query=QUERIES)
        def collect(path: str, query: dict[str, str]) -> None:
            requests.append(
                quote(path, safe="/%:@!$&'()*+,;=-._~") + ("?" + urlencode(query) if query else "")
            )

        collect()

        def fetch(target: str) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
            try:
                connection.request("GET", target)
                return connection.getresponse().status
            finally:
                connection.close()

        for target in requests:
            status = await asyncio.to_thread(fetch, target)
            assert status < 500, f"GET {target} -> {status}"
        assert running.gateway.bus.up
