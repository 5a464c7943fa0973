"""Untrusted bus: nothing written into Redis stops, poisons or swallows the live feed.

Each test plays an attacker holding a publisher credential (PUBLISH and XADD on a symbol's
keys) against a real gateway, real Redis and real websocket clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import tracemalloc
from typing import Any
from urllib.request import urlopen

import pytest
import redis

from publishers import Publisher, keys
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, build_call
from tests.support import async_wait_until
from tests.support.gateway import RunningGateway, WsClient, gateway_settings, running_gateway

TS = 1_732_560_000_000


async def publish_signals(url: str, symbol: str, count: int, ts: int | None = TS) -> list[int]:
    async with Publisher(url, bot="b1", strategy="s1") as pub:
        return [await pub.signal(symbol, "buy", price=1 + i, confidence=0.5, ts=ts) for i in range(count)]


def forged_event(symbol: str, seq: int, bot: str = "evil") -> str:
    return json.dumps(
        {"seq": seq, "kind": "signal", "symbol": symbol, "ts": TS, "bot": bot, "strategy": "s1",
         "type": "sell", "price": 666.0, "confidence": 1.0, "meta": {}},
        separators=(",", ":"),
    )  # fmt: skip


class Attacker:
    """PUBLISH on a symbol's live channel as a publisher credential can."""

    def __init__(self, url: str, symbol: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.symbol = symbol

    def meta(self) -> tuple[str, int]:
        epoch, seq = self.client.hmget(keys.meta_key(self.symbol), ["epoch", "seq"])
        return epoch.decode(), int(seq)

    def publish(self, payload: bytes | str) -> None:
        self.client.publish(keys.live_channel(self.symbol), payload)

    def envelope(self, seq: int, event: str, epoch: str | None = None) -> str:
        return f"{epoch or self.meta()[0]} {seq} {int(time.time() * 1000)} {event}"

    def close(self) -> None:
        self.client.close()


def healthz(running: RunningGateway) -> tuple[int, dict[str, Any]]:
    try:
        with urlopen(f"{running.http_url}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except OSError as exc:  # HTTPError carries the 503 body
        return exc.code, json.loads(exc.read())  # type: ignore[attr-defined]


def metric(running: RunningGateway, line_start: str) -> float:
    with urlopen(f"{running.http_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def resets(client: WsClient) -> list[dict[str, Any]]:
    return [f for f in client.frames if f["op"] == "reset"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("garbage", "envelope"),
        (b"\xff\xfe\x00 2 3 {}", "envelope"),
        ("{epoch} {next} {ms} not json", "json"),
        ("{epoch} {next} {ms} [1,2,3]", "json"),
    ],
    ids=["garbage", "not-utf8", "body-not-json", "body-an-array"],
)
async def test_garbage_on_the_live_channel_is_dropped_logged_counted_and_the_feed_goes_on(
    redis_url: str, symbol: str, payload: bytes | str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.gateway.livepath")
    await publish_signals(redis_url, symbol, 2)
    other = f"{symbol}O"
    attacker = Attacker(redis_url, symbol)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        other_sub = (await client.subscribe(other))["sub"]
        if isinstance(payload, str):
            epoch, seq = attacker.meta()
            payload = payload.format(epoch=epoch, next=seq + 1, ms=int(time.time() * 1000))
        attacker.publish(payload)
        await publish_signals(redis_url, symbol, 3)
        await publish_signals(redis_url, other, 2)
        await async_wait_until(lambda: client.position(sub) == 5, what="the events after the garbage")
        await async_wait_until(lambda: client.position(other_sub) == 2, what="the other symbol's events")
        assert client.seqs(sub) == [3, 4, 5] and client.seqs(other_sub) == [1, 2]
        assert all(e["bot"] == "b1" for e in client.events(sub)), "nothing of the garbage reached a client"
        assert not [f for f in client.frames if f["op"] == "status"], "the bus never went down"
        assert running.gateway.bus.up and running.gateway.tasks["bus"].up
        assert running.gateway.metrics.task_restarts["bus"] == 0
        assert running.gateway.metrics.bus_rejected[reason] == 1
        assert (
            await asyncio.to_thread(metric, running, f'signalpush_bus_rejected_total{{reason="{reason}"}}')
            == 1
        )
        assert (await asyncio.to_thread(healthz, running))[0] == 200
        logged = [r for r in caplog.records if getattr(r, "reason", None) == reason]
        assert len(logged) == 1 and logged[0].symbol == symbol  # type: ignore[attr-defined]
        await client.close()
    attacker.close()


async def test_a_forged_seq_jump_is_dropped_and_costs_no_memory_for_the_jump(
    redis_url: str, symbol: str
) -> None:
    await publish_signals(redis_url, symbol, 3)
    attacker = Attacker(redis_url, symbol)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        tracemalloc.start()
        try:
            for jump in (2_000_000, 20_000_000):
                attacker.publish(attacker.envelope(3 + jump, forged_event(symbol, 3 + jump)))
            await publish_signals(redis_url, symbol, 3)
            await async_wait_until(lambda: client.position(sub) == 6, what="the real events after the jump")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB traced while dropping a forged jump"
        assert client.seqs(sub) == [4, 5, 6]
        assert all(e["bot"] == "b1" for e in client.events(sub))
        assert running.gateway.fanout.symbols[symbol].last_seq == 6
        assert running.gateway.metrics.bus_rejected["unconfirmed"] == 2
        assert not resets(client)
        await client.close()
    attacker.close()


async def test_a_forged_epoch_reaches_nobody_and_resets_nobody(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 2)
    attacker = Attacker(redis_url, symbol)
    async with running_gateway(redis_url) as running:
        clients = [await WsClient(running.ws_url).connect() for _ in range(3)]
        subs = [(await c.subscribe(symbol))["sub"] for c in clients]
        for seq in (1, 3, 50):
            attacker.publish(attacker.envelope(seq, forged_event(symbol, seq), epoch="f0f0f0f0f0f0"))
        await publish_signals(redis_url, symbol, 2)
        for client, sub in zip(clients, subs, strict=True):
            await async_wait_until(lambda c=client, s=sub: c.position(s) == 4, what="the real events")
            assert client.seqs(sub) == [3, 4] and not resets(client)
            assert all(f.get("epoch") != "f0f0f0f0f0f0" for f in client.frames)
        assert running.gateway.metrics.bus_rejected["epoch"] == 3
        for client in clients:
            await client.close()
    attacker.close()


async def test_forged_replays_of_sent_seqs_cause_no_reset_storm(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 1)
    attacker = Attacker(redis_url, symbol)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        await publish_signals(redis_url, symbol, 5)
        await async_wait_until(lambda: client.position(sub) == 6, what="6 events")
        for round_ in range(20):
            seq = 2 + round_ % 5
            attacker.publish(attacker.envelope(seq, forged_event(symbol, seq, bot=f"evil{round_}")))
        await publish_signals(redis_url, symbol, 2)
        await async_wait_until(lambda: client.position(sub) == 8, what="the events after the replays")
        assert client.seqs(sub) == list(range(2, 9))
        assert not resets(client), "a replay the log does not confirm resets nobody"
        assert running.gateway.metrics.bus_rejected["diverged"] == 20
        await client.close()
    attacker.close()


def publish_raw(url: str, symbol: str, bodies: list[str]) -> None:
    """Through the publish script, as any credential can: the bodies are not validated there."""
    client = redis.Redis.from_url(url)
    client.script_load(PUBLISH_SCRIPT)
    call = build_call(symbol, bodies, publisher_id="", call_number=1, log_maxlen=10_000)
    client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
    client.close()


async def test_a_genuine_event_with_an_invalid_body_is_a_void_seq(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 2)
    settings = gateway_settings(server={"heartbeat_s": 0.5})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        publish_raw(redis_url, symbol, [f'"kind":"signal","symbol":"{symbol}"}}'])  # seq 3: void
        await publish_signals(redis_url, symbol, 1)
        publish_raw(redis_url, symbol, ['"kind":"meteor"}', "not json at all"])  # 5 and 6, at the tail
        state = running.gateway.fanout.symbols[symbol]
        await async_wait_until(lambda: state.last_seq == 6, what="the position past the void tail")
        await async_wait_until(lambda: client.position(sub) == 6, what="a frame moving the client past it")
        assert client.seqs(sub) == [4], "no item for a void seq; frames stay contiguous (checked in seqs)"
        assert not resets(client)
        await publish_signals(redis_url, symbol, 1)
        await async_wait_until(lambda: client.position(sub) == 7, what="seq 7")
        assert client.seqs(sub) == [4, 7]
        await client.close()


async def test_with_confirm_live_a_forged_next_event_reaches_nobody(redis_url: str, symbol: str) -> None:
    await publish_signals(redis_url, symbol, 2)
    attacker = Attacker(redis_url, symbol)
    settings = gateway_settings(server={"confirm_live": True})
    async with running_gateway(redis_url, settings) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        attacker.publish(attacker.envelope(3, forged_event(symbol, 3)))
        await publish_signals(redis_url, symbol, 3)
        await async_wait_until(lambda: client.position(sub) == 5, what="the real events")
        assert [e["bot"] for e in client.events(sub)] == ["b1"] * 3
        assert not resets(client)
        await client.close()
    attacker.close()


async def test_without_confirm_live_a_forged_next_event_is_taken_back_with_one_reset(
    redis_url: str, symbol: str
) -> None:
    """The documented cost of the fast path: a well-formed next event is sent before any check;
    the real one under that seq then proves it false (the log holds it) and resets the symbol once."""
    await publish_signals(redis_url, symbol, 2, ts=None)
    attacker = Attacker(redis_url, symbol)
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        attacker.publish(attacker.envelope(3, forged_event(symbol, 3)))
        await async_wait_until(lambda: client.position(sub) == 3, what="the forged event")
        await publish_signals(redis_url, symbol, 2, ts=None)
        await async_wait_until(lambda: len(resets(client)) == 1, what="the reset")
        history = await client.wait_for(lambda f: f["op"] == "history" and f["reset"])
        assert history["to_seq"] >= 3 and "evil" not in json.dumps(history["data"])
        await async_wait_until(lambda: client.position(sub) == 4, what="seq 4")
        assert client.view(sub) == [1, 2, 3, 4]
        reset_at = client.frames.index(resets(client)[0])
        assert all(e["bot"] == "b1" for f in client.frames[reset_at:] for e in f.get("items", []))
        await client.close()
    attacker.close()


async def test_a_crashed_bus_task_is_restarted_counted_and_shown_in_healthz(
    redis_url: str, symbol: str
) -> None:
    async with running_gateway(redis_url) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol))["sub"]
        bus = running.gateway.bus
        deliver = bus._on_batch

        async def crash_once(batch: Any) -> None:
            bus._on_batch = deliver
            raise RuntimeError("a bug in the live path")

        bus._on_batch = crash_once  # type: ignore[method-assign]
        await publish_signals(redis_url, symbol, 1)
        await client.wait_for(lambda f: f["op"] == "status" and f["bus"] == "down")
        await client.wait_for(lambda f: f["op"] == "status" and f["bus"] == "up", timeout=20)
        await publish_signals(redis_url, symbol, 2)
        await async_wait_until(lambda: client.position(sub) == 3, what="every event after the restart")
        assert client.seqs(sub) == [1, 2, 3], "the resync after the restart filled what the crash dropped"
        assert running.gateway.metrics.task_restarts["bus"] == 1
        assert await asyncio.to_thread(metric, running, 'signalpush_task_restarts_total{task="bus"}') == 1
        code, body = await asyncio.to_thread(healthz, running)
        assert code == 200 and body["restarts"]["bus"] == 1
        await client.close()


async def test_healthz_names_a_task_that_is_down(redis_url: str) -> None:
    from server.gateway.tasks import SupervisedTask

    async with running_gateway(redis_url) as running:
        ended = asyncio.Event()

        async def recorder_that_fails() -> None:
            ended.set()
            raise RuntimeError("boom")

        task = SupervisedTask("recorder", recorder_that_fails, backoff_s=30.0)
        running.gateway.supervise(task)
        await ended.wait()
        await async_wait_until(lambda: not task.up, what="the task to end")
        code, body = await asyncio.to_thread(healthz, running)
        assert code == 503 and body["down"] == ["recorder"] and body["recorder"] == "down"
        assert body["status"] == "degraded" and body["redis"] == "up" and body["restarts"]["recorder"] == 1
        await task.stop()


async def test_api_symbols_leaves_out_names_that_are_not_symbols_and_unusable_metas(
    redis_url: str, symbol: str
) -> None:
    await publish_signals(redis_url, symbol, 2)
    spoiled, bad_names = f"{symbol}S", (b"\xff\xfeBAD", b"BTCUSDT\n", b'x"}\n')
    client = redis.Redis.from_url(redis_url)
    client.sadd(keys.SYMBOLS_KEY, *bad_names, spoiled)
    client.set(keys.meta_key(spoiled), "not a hash")
    try:
        async with running_gateway(redis_url) as running:

            def symbols() -> tuple[int, dict[str, Any]]:
                with urlopen(f"{running.http_url}/api/symbols", timeout=5) as response:
                    return response.status, json.loads(response.read())

            status, body = await asyncio.to_thread(symbols)
            listed = {entry["symbol"]: entry for entry in body["symbols"]}
            assert status == 200 and listed[symbol]["seq"] == 2 and listed[symbol]["epoch"]
            assert spoiled not in listed and not {"BTCUSDT\n", 'x"}\n'} & set(listed)
    finally:
        client.srem(keys.SYMBOLS_KEY, *bad_names, spoiled)
        client.delete(keys.meta_key(spoiled))
        client.close()
