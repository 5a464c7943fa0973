"""The gateway with real Redis and real websocket clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publishers import Publisher, keys
from server.cli.embedded import EmbeddedRedis
from tests.support import async_wait_until
from tests.support.gateway import WsClient, gateway_settings, running_gateway

TS = 1_732_560_000_000


async def publish_signals(url: str, symbol: str, count: int, **kwargs: Any) -> list[int]:
    async with Publisher(url, bot="b1", strategy="s1") as pub:
        return [await pub.signal(symbol, "buy", price=1 + i, confidence=0.5, **kwargs) for i in range(count)]


async def test_hello_subscribe_and_live_events_in_order(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 3)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        hello = client.frames[0]
        assert hello["op"] == "hello" and hello["protocol"] == 1 and hello["heartbeat_s"] == 20.0
        subscribed = await client.subscribe(symbol)
        assert subscribed["seq"] == 3 and subscribed["epoch"]
        await publish_signals(redis_url, symbol, 5)
        await async_wait_until(lambda: client.position(subscribed["sub"]) == 8, what="seq 8")
        assert client.seqs(subscribed["sub"]) == [4, 5, 6, 7, 8]
        await client.close()


async def test_a_never_published_symbol_starts_at_zero_and_the_first_frame_brings_the_epoch(
    redis_url: str, symbol: str
) -> None:
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        subscribed = await client.subscribe(symbol)
        assert (subscribed["epoch"], subscribed["seq"]) == (None, 0)
        await publish_signals(redis_url, symbol, 1)
        frame = await client.wait_for(lambda f: f["op"] == "events")
        assert frame["epoch"] and frame["from_seq"] == 1
        await client.close()


async def test_filters_select_events_and_clients_with_one_filter_share_a_group(
    redis_url: str, symbol: str
) -> None:
    async with running_gateway(redis_url) as running:
        sells = [await WsClient(running.ws_url).connect() for _ in range(2)]
        everything = await WsClient(running.ws_url).connect()
        flt = {"signal_types": ["sell"], "min_confidence": 0.5}
        subs = [await c.subscribe(symbol, filter=flt) for c in sells]
        assert subs[0]["sub"] == subs[1]["sub"]
        all_sub = (await everything.subscribe(symbol))["sub"]
        async with Publisher(redis_url, bot="b1", strategy="s1") as pub:
            for i, (kind, confidence) in enumerate(
                [("sell", 0.7), ("buy", 0.9), ("sell", 0.2), ("sell", 0.5)]
            ):
                await pub.signal(symbol, kind, price=1 + i, confidence=confidence)
            await pub.candle(symbol, ts=TS, tf="1m", open=1, high=1, low=1, close=1, volume=1)
        await async_wait_until(lambda: everything.position(all_sub) == 5, what="all 5")
        for client in sells:
            await async_wait_until(
                lambda c=client: c.seqs(subs[0]["sub"]) == [1, 4, 5], what="sells and the candle"
            )
        assert everything.seqs(all_sub) == [1, 2, 3, 4, 5]
        for client in [*sells, everything]:
            await client.close()


async def test_unsubscribe_stops_the_flow(redis_url: str, symbol: str) -> None:
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        await client.send({"op": "unsubscribe", "ref": "u", "sub": sub})
        assert (await client.wait_for(lambda f: f.get("ref") == "u"))["op"] == "unsubscribed"
        assert symbol not in running.gateway.fanout.symbols
        await publish_signals(redis_url, symbol, 2)
        await client.send({"op": "ping", "ref": "p"})
        await client.wait_for(lambda f: f["op"] == "pong")
        assert not [f for f in client.frames if f["op"] == "events"]
        await client.close()


async def test_a_batch_is_encoded_once_for_500_clients(redis_url: str, symbol: str) -> None:
    async with running_gateway(redis_url) as running:
        clients = await asyncio.gather(*(WsClient(running.ws_url).connect() for _ in range(500)))
        subs = {(await c.subscribe(symbol))["sub"] for c in clients}
        assert len(subs) == 1
        fanout = running.gateway.fanout
        before = fanout.frames_encoded
        await publish_signals(redis_url, symbol, 10)
        for client in clients:
            await async_wait_until(lambda c=client: c.position(next(iter(subs))) == 10, what="10 events")
        encoded = fanout.frames_encoded - before
        assert 1 <= encoded <= 10, "one encoding per batch, not per client"
        assert running.gateway.metrics.deliveries >= 500 * encoded
        await asyncio.gather(*(c.close() for c in clients))


def write_without_publishing(url: str, symbol: str, count: int) -> None:
    """A lost pub/sub message: the seq and the log entry exist, the live message never came."""
    client = redis.Redis.from_url(url)
    for _ in range(count):
        seq = client.hincrby(keys.meta_key(symbol), "seq", 1)
        event = {
            "seq": seq,
            "kind": "signal",
            "symbol": symbol,
            "ts": TS,
            "bot": "lost",
            "strategy": "s1",
            "type": "buy",
            "price": 1.0,
            "confidence": 0.5,
            "meta": {},
        }
        # As the publish script writes it: compact, "seq" first.
        client.xadd(keys.log_key(symbol), {"e": json.dumps(event, separators=(",", ":"))}, id=f"{seq}-0")
    client.close()


async def test_a_lost_pubsub_message_is_filled_from_the_log_in_order(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 2)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        write_without_publishing(redis_url, symbol, 3)
        await publish_signals(redis_url, symbol, 2)
        await async_wait_until(lambda: client.position(sub) == 7, what="seq 7")
        events = client.events(sub)
        assert [e["seq"] for e in events] == [3, 4, 5, 6, 7]
        assert [e["bot"] for e in events[:3]] == ["lost"] * 3
        assert running.gateway.metrics.gaps_filled == 1
        await client.close()


async def test_a_redis_restart_mid_stream_loses_nothing(own_redis: EmbeddedRedis, symbol: str) -> None:
    settings = gateway_settings()
    async with running_gateway(own_redis.url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        await publish_signals(own_redis.url, symbol, 5)
        await async_wait_until(lambda: client.position(sub) == 5, what="first 5")
        own_redis.stop()
        await client.wait_for(lambda f: f["op"] == "status" and f["bus"] == "down")
        own_redis.start()
        # Published before the gateway's bus is back: only the log has them.
        await publish_signals(own_redis.url, symbol, 5)
        await client.wait_for(lambda f: f["op"] == "status" and f["bus"] == "up")
        await publish_signals(own_redis.url, symbol, 5)
        await async_wait_until(lambda: client.position(sub) == 15, timeout=20, what="all 15")
        assert client.seqs(sub) == list(range(1, 16))
        assert running.gateway.metrics.bus_reconnects >= 1
        await client.close()


async def test_a_new_epoch_sends_reset_then_history_then_new_events(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 3)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol, history={"minutes": 60}))["sub"]
        old = await client.wait_for(lambda f: f["op"] == "history")
        plain = redis.Redis.from_url(redis_url)
        plain.delete(keys.meta_key(symbol))  # Redis "lost its state"
        plain.close()
        await publish_signals(redis_url, symbol, 2)
        reset = await client.wait_for(lambda f: f["op"] == "reset")
        assert reset["sub"] == sub and "epoch" in reset["reason"]
        fresh = await client.wait_for(lambda f: f["op"] == "history" and f["reset"])
        assert fresh["epoch"] != old["epoch"]
        order = [f["op"] for f in client.frames if f.get("sub") == sub]
        assert order.index("reset") < len(order) - 1 - order[::-1].index("history")
        new_events = [f for f in client.frames if f["op"] == "events" and f["epoch"] == fresh["epoch"]]
        assert all(client.frames.index(f) > client.frames.index(fresh) for f in new_events)
        await client.close()


async def test_resume_replays_exactly_what_was_missed(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 4)
    async with running_gateway(redis_url) as running:
        first = await WsClient(running.ws_url).connect()
        subscribed = await first.subscribe(symbol)
        await publish_signals(redis_url, symbol, 3)
        await async_wait_until(lambda: first.position(subscribed["sub"]) == 7, what="seq 7")
        await first.close()
        await publish_signals(redis_url, symbol, 5)
        second = await WsClient(running.ws_url).connect()
        sub = (await second.subscribe(symbol, resume={"epoch": subscribed["epoch"], "seq": 7}))["sub"]
        await publish_signals(redis_url, symbol, 2)
        await async_wait_until(lambda: second.position(sub) == 14, what="seq 14")
        resumed = [f for f in second.frames if f["op"] == "events"]
        assert resumed[0]["from_seq"] == 8
        assert [e["seq"] for f in resumed for e in f["items"]] == list(range(8, 15))
        await second.close()


async def test_a_resume_with_a_foreign_epoch_is_reset(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 2)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        await client.subscribe(symbol, resume={"epoch": "not-the-epoch", "seq": 1})
        reset = await client.wait_for(lambda f: f["op"] == "reset")
        assert reset["reason"] == "epoch changed"
        history = await client.wait_for(lambda f: f["op"] == "history")
        assert history["reset"] is True and history["to_seq"] == 2
        await client.close()


async def test_healthz_follows_the_redis_listener(own_redis: EmbeddedRedis) -> None:
    from urllib.request import urlopen

    async with running_gateway(own_redis.url) as running:

        def status() -> tuple[int, dict[str, Any]]:
            try:
                with urlopen(f"{running.http_url}/healthz", timeout=5) as response:
                    return response.status, json.loads(response.read())
            except OSError as exc:  # HTTPError carries the 503 body
                return exc.code, json.loads(exc.read())  # type: ignore[attr-defined]

        code, body = await asyncio.to_thread(status)
        assert code == 200 and body["status"] == "ok" and body["redis"] == "up" and body["down"] == []
        assert {"database", "connections", "uptime_s", "bus", "recorder", "restarts"} <= set(body)
        own_redis.stop()
        await async_wait_until(lambda: not running.gateway.bus.up, what="bus down")
        code, body = await asyncio.to_thread(status)
        assert code == 503 and body["redis"] == "down" and body["status"] == "degraded"
        assert body["down"] == ["bus"]
        own_redis.start()
        await async_wait_until(lambda: running.gateway.bus.up, timeout=20, what="bus up")
        assert (await asyncio.to_thread(status))[0] == 200


async def test_batch_ms_gathers_a_burst_into_fewer_frames(redis_url: str, symbol: str) -> None:
    settings = gateway_settings(server={"batch_ms": 200.0})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        async with Publisher(redis_url, bot="b1", strategy="s1") as pub:
            await asyncio.gather(*(pub.signal(symbol, "buy", price=1, confidence=0.5) for _ in range(200)))
        await async_wait_until(lambda: client.position(sub) == 200, what="200 events")
        frames = [f for f in client.frames if f["op"] == "events"]
        assert client.seqs(sub) == list(range(1, 201))
        assert len(frames) <= 5, f"{len(frames)} frames for one burst"
        await client.close()


SPECS = st.lists(
    st.tuples(
        st.sampled_from(["signal", "trade", "candle"]),
        st.sampled_from(["b1", "b2"]),
        st.sampled_from(["s1", "s2"]),
        st.sampled_from(["buy", "sell", "hold"]),
        st.sampled_from([0.1, 0.5, 0.9]),
    ),
    min_size=1,
    max_size=25,
)
CLIENT_FILTERS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "kinds": st.lists(st.sampled_from(["signal", "trade", "candle"]), min_size=1, unique=True),
            "bots": st.lists(st.sampled_from(["b1", "b2"]), min_size=1, unique=True),
            "strategies": st.lists(st.sampled_from(["s1", "s2"]), min_size=1, unique=True),
            "signal_types": st.lists(st.sampled_from(["buy", "sell", "hold"]), min_size=1, unique=True),
            "min_confidence": st.sampled_from([0.5, 0.9]),
            "sides": st.lists(st.sampled_from(["buy", "sell"]), min_size=1, unique=True),
        },
    ),
    min_size=1,
    max_size=4,
)


async def test_real_clients_get_exactly_their_filters_events(redis_url: str, symbol: str) -> None:
    """Hypothesis over random streams and filters, through real websockets: exactly the filter's events,
    in seq order, once each, with contiguous ranges (the pure core's property test, end to end)."""
    from publishers.events import Candle, Signal, Trade
    from server.core.filters import parse_filter

    cases: list[tuple[list[Any], list[dict[str, Any]]]] = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(specs=SPECS, filters=CLIENT_FILTERS)
    def collect(specs: list[Any], filters: list[dict[str, Any]]) -> None:
        cases.append((specs, filters))

    collect()
    async with running_gateway(redis_url) as running:
        for number, (specs, filters) in enumerate(cases):
            sym = f"{symbol}H{number}"
            clients = [await WsClient(running.ws_url).connect() for _ in filters]
            subs = [(await c.subscribe(sym, filter=f))["sub"] for c, f in zip(clients, filters, strict=True)]
            published: list[dict[str, Any]] = []
            async with Publisher(redis_url) as pub:
                for i, (kind, bot, strategy, type_, confidence) in enumerate(specs):
                    ts = TS + i * 60_000  # distinct candle times: no coalescing in this property
                    event: Any
                    if kind == "signal":
                        event = Signal(
                            symbol=sym,
                            ts=ts,
                            bot=bot,
                            strategy=strategy,
                            type=type_,
                            price=1.0,
                            confidence=confidence,
                        )
                    elif kind == "trade":
                        event = Trade(
                            symbol=sym,
                            ts=ts,
                            bot=bot,
                            strategy=strategy,
                            side="sell" if type_ == "sell" else "buy",
                            action="entry",
                            price=1.0,
                            qty=1.0,
                            position=f"p{i}",
                        )
                    else:
                        event = Candle(symbol=sym, ts=ts, tf="1m", open=1, high=1, low=1, close=1, volume=1)
                    published.append(event.to_dict(await pub.publish(event)))
            last = len(published)
            fanout = running.gateway.fanout
            await async_wait_until(
                lambda s=sym, n=last, f=fanout: f.symbols[s].last_seq == n, what="the gateway took them all"
            )
            for client, sub, raw_filter in zip(clients, subs, filters, strict=True):
                flt = parse_filter(raw_filter)
                wanted = [e["seq"] for e in published if flt.matches(e)]
                # Everything is written to the sockets: wait for what is in flight, then compare.
                await async_wait_until(lambda c=client, s=sub, w=wanted: c.seqs(s) == w, what=f"{raw_filter}")
                assert client.seqs(sub) == wanted
                await client.close()


async def test_compressed_and_plain_connections_get_the_same_frames(redis_url: str, symbol: str) -> None:
    """Frames are built once on the wire for plain connections; compressed ones go through websockets."""
    settings = gateway_settings(server={"compression": True})
    async with running_gateway(redis_url, settings) as running:
        plain = await WsClient(running.ws_url).connect(compression=None)
        deflated = await WsClient(running.ws_url).connect()
        assert deflated.ws is not None and deflated.ws.protocol.extensions, "negotiated permessage-deflate"
        subs = [(await c.subscribe(symbol))["sub"] for c in (plain, deflated)]
        await publish_signals(redis_url, symbol, 30)
        for client, sub in zip((plain, deflated), subs, strict=True):
            await async_wait_until(lambda c=client, s=sub: c.position(s) == 30, what="30 events")
            assert client.seqs(sub) == list(range(1, 31))
        assert [f for f in plain.frames if f["op"] == "events"] == [
            f for f in deflated.frames if f["op"] == "events"
        ]
        await plain.close()
        await deflated.close()
