"""The flight recorder through the gateway: real Redis, SQLite (and PostgreSQL when configured),
real websockets. A live session recorded by a client is replayed and compared event for event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import Publisher, keys
from publishers.events import now_ms
from server.cli.runner import compose_gateway
from tests.support.fixtures_store import publish, running_recorder
from tests.support.gateway import RunningGateway, WsClient, gateway_settings
from tests.support.replay_stream import forget_symbol, stream


@pytest.fixture(autouse=True)
async def _forget_the_symbol(redis_url: str, symbol: str) -> AsyncIterator[None]:
    yield
    await forget_symbol(redis_url, symbol)


@contextlib.asynccontextmanager
async def replay_gateway(redis_url: str, engine: AsyncEngine) -> AsyncIterator[RunningGateway]:
    composed = compose_gateway(gateway_settings(history={"workers": 0}), redis_url, engine=engine)
    gateway = composed.gateway
    port = await gateway.start(host="127.0.0.1", port=0, http=composed.routes.handle)
    try:
        yield RunningGateway(gateway, port, composed.routes)
    finally:
        await gateway.stop()


def frames_of(client: WsClient, sub: str, op: str) -> list[dict[str, Any]]:
    return [f for f in client.frames if f.get("sub") == sub and f["op"] == op]


def items_of(client: WsClient, sub: str) -> list[dict[str, Any]]:
    return [item for frame in frames_of(client, sub, "events") for item in frame["items"]]


def contiguous(client: WsClient, sub: str) -> None:
    """Each events frame starts right after what the subscription's frames covered before it."""
    position: int | None = None
    for frame in client.frames:
        if frame.get("sub") != sub:
            continue
        if frame["op"] in ("history",):
            position = frame["to_seq"]
        elif frame["op"] == "events":
            assert position is not None and frame["from_seq"] == position + 1, (frame["from_seq"], position)
            position = frame["to_seq"]


async def record_live_session(
    redis_url: str, running: RunningGateway, symbol: str, flt: dict[str, Any], count: int
) -> tuple[WsClient, str]:
    """A client follows ``symbol`` live while ``count`` events are published through the Publisher."""
    live = await WsClient(running.ws_url).connect()
    sub = (await live.subscribe(symbol, filter=flt, history={"minutes": 60}))["sub"]
    await live.wait_for(lambda f: f["op"] == "history" and f["sub"] == sub)
    return live, sub


@pytest.mark.parametrize("recorded", [False, True], ids=["log", "sql"])
async def test_a_replay_at_max_speed_equals_what_the_live_client_received(
    redis_url: str, engine: AsyncEngine, symbol: str, recorded: bool
) -> None:
    t0 = now_ms() - 10 * 60_000
    events = stream(symbol, 260, t0, seed=3)
    flt = {"kinds": ["signal", "trade", "candle"], "min_confidence": 0.2}
    recording = running_recorder(redis_url, engine, [symbol]) if recorded else contextlib.nullcontext()
    async with recording as recorder:
        await publish(redis_url, events[:60])
        async with replay_gateway(redis_url, engine) as running:
            live, sub = await record_live_session(redis_url, running, symbol, flt, 200)
            await publish(redis_url, events[60:])
            await live.wait_for(lambda f: f["op"] == "events" and f["sub"] == sub and f["to_seq"] >= 260)
            if recorder is not None:
                await recorder.caught_up(symbol, 260)
            received = items_of(live, sub)
            assert received and received[0]["seq"] > 60

            player = await WsClient(running.ws_url).connect()
            reply = await player.subscribe(
                symbol,
                filter=flt,
                history={"minutes": 60},
                replay={"from": t0 + 60 * 1000, "to": t0 + 259 * 1000, "speed": "max"},
            )
            replay_sub = reply["sub"]
            assert replay_sub.startswith("r") and reply["replay"]["speed"] == "max"
            await player.wait_for(lambda f: f["op"] == "replay" and f["state"] == "end", timeout=20)
            replayed = items_of(player, replay_sub)
            assert replayed == received, "the same seqs, kinds and bodies, in the same order"
            # The history at `from` is the one the live client got (everything before seq 61).
            (history,) = frames_of(player, replay_sub, "history")
            (live_history,) = frames_of(live, sub, "history")
            assert history["to_seq"] == 60 and history["data"] == live_history["data"]
            contiguous(player, replay_sub)
            assert running.gateway.gauges()["replays"][0] == 1  # ended, open for a seek
            await live.close()
            await player.close()


async def test_seek_lands_on_the_history_of_that_time_and_pause_holds(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    t0 = now_ms() - 10 * 60_000
    events = stream(symbol, 200, t0, seed=5)
    await publish(redis_url, events)
    async with running_recorder(redis_url, engine, [symbol]) as recorder:
        await recorder.caught_up(symbol, 200)
    async with replay_gateway(redis_url, engine) as running:
        player = await WsClient(running.ws_url).connect()
        sub = (
            await player.subscribe(
                symbol,
                filter={"kinds": ["signal"]},
                replay={"from": t0 + 20_000, "to": t0 + 199_000, "speed": 1},
            )
        )["sub"]
        (history,) = [await player.wait_for(lambda f: f["op"] == "history")]
        signals = [e for e in events if e.kind == "signal"]
        assert history["to_seq"] == 20
        assert history["data"]["signal"]["seq"] == [
            i + 1 for i, e in enumerate(events[:20]) if e.kind == "signal"
        ]

        await player.send({"op": "replay_control", "ref": "p", "sub": sub, "action": "pause"})
        paused = await player.wait_for(lambda f: f.get("ref") == "p")
        assert (paused["op"], paused["state"]) == ("replay", "paused")
        await player.send(
            {"op": "replay_control", "ref": "s", "sub": sub, "action": "seek", "to": t0 + 150_500}
        )
        await player.wait_for(lambda f: f["op"] == "history" and f["reset"])
        sought = [f for f in player.frames if f["op"] == "history"][-1]
        assert sought["to_seq"] == 151
        assert sought["data"]["signal"]["seq"] == [
            i + 1 for i, e in enumerate(events[:151]) if e.kind == "signal"
        ]
        # Paused: nothing comes, however long we wait (0.5 s of replay at speed 1000 is 500 events).
        await player.send({"op": "replay_control", "ref": "v", "sub": sub, "action": "speed", "speed": 1000})
        await player.wait_for(lambda f: f.get("ref") == "v")
        await asyncio.sleep(0.5)  # asserting an absence: no event may arrive while paused
        assert not frames_of(player, sub, "events")
        await player.send({"op": "replay_control", "ref": "g", "sub": sub, "action": "resume"})
        await player.wait_for(lambda f: f["op"] == "replay" and f["state"] == "end", timeout=20)
        after = [item["seq"] for item in items_of(player, sub)]
        assert after == [i + 1 for i, e in enumerate(events) if e.kind == "signal" and i + 1 > 151]
        assert len(signals) > len(after)
        contiguous(player, sub)
        await player.close()


async def test_to_live_hands_over_with_no_hole_and_no_duplicate_while_publishing(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    t0 = now_ms() - 5 * 60_000
    await publish(redis_url, stream(symbol, 300, t0, seed=9))
    stop = asyncio.Event()

    async def keep_publishing() -> int:
        sent = 0
        async with Publisher(redis_url, bot="momo-1", strategy="momentum") as bot:
            while not stop.is_set():
                await bot.signal(symbol, "buy", price=100.0, confidence=0.9)
                sent += 1
                await asyncio.sleep(0.002)
        return sent

    async with running_recorder(redis_url, engine, [symbol]), replay_gateway(redis_url, engine) as running:
        publisher = asyncio.create_task(keep_publishing())
        player = await WsClient(running.ws_url).connect()
        sub = (await player.subscribe(symbol, replay={"from": t0 + 100_500, "to": "live", "speed": "max"}))[
            "sub"
        ]
        handed = await player.wait_for(lambda f: f["op"] == "replay" and f["state"] == "live", timeout=30)
        live = await player.wait_for(lambda f: f["op"] == "subscribed" and f["sub"] != sub)
        await player.wait_for(lambda f: f["op"] == "events" and f["sub"] == live["sub"])
        stop.set()
        sent = await publisher
        total = 300 + sent
        await player.wait_for(
            lambda f: f["op"] == "events" and f["sub"] == live["sub"] and f["to_seq"] >= total, timeout=30
        )
        seqs = [item["seq"] for item in items_of(player, sub)] + [
            item["seq"] for item in items_of(player, live["sub"])
        ]
        assert seqs == list(range(102, total + 1)), "every seq once, in order, across the handover"
        assert handed["time"] >= t0
        contiguous(player, sub)
        await player.close()


async def test_a_replay_across_a_reset_replays_the_reset_as_it_happened(
    redis_url: str, engine: AsyncEngine, redis_client: aioredis.Redis, symbol: str
) -> None:
    t0 = now_ms() - 10 * 60_000
    first, second = stream(symbol, 30, t0, seed=1), stream(symbol, 20, t0 + 60_000, seed=2)
    async with running_recorder(redis_url, engine, [symbol]) as recorder:
        await publish(redis_url, first)
        await recorder.caught_up(symbol, 30)
        old = (await redis_client.hget(keys.meta_key(symbol), "epoch")).decode()
        await redis_client.delete(keys.meta_key(symbol))  # Redis lost its state: a new epoch
        await publish(redis_url, second)
        new = (await redis_client.hget(keys.meta_key(symbol), "epoch")).decode()
        async with replay_gateway(redis_url, engine) as running:
            player = await WsClient(running.ws_url).connect()
            sub = (await player.subscribe(symbol, replay={"from": t0, "to": t0 + 80_000, "speed": "max"}))[
                "sub"
            ]
            await player.wait_for(lambda f: f["op"] == "replay" and f["state"] == "end", timeout=20)
    mine = [f for f in player.frames if f.get("sub") == sub and f["op"] in ("history", "events", "reset")]
    ops = [f["op"] for f in mine]
    reset_at = ops.index("reset")
    assert ops[0] == "history" and ops[reset_at + 1] == "history" and mine[reset_at + 1]["reset"]
    before = [i["seq"] for f in mine[:reset_at] if f["op"] == "events" for i in f["items"]]
    after = [i["seq"] for f in mine[reset_at:] if f["op"] == "events" for i in f["items"]]
    assert before == list(range(1, 31)) and after == list(range(1, 21))
    assert {f["epoch"] for f in mine[:reset_at] if f["op"] == "events"} == {old}
    assert {f["epoch"] for f in mine[reset_at:] if f["op"] == "events"} == {new}
    # The new epoch's history holds the old epoch's rows (no seq: seqs restarted), as live walls got.
    assert mine[reset_at + 1]["to_seq"] == 0
    assert len(mine[reset_at + 1]["data"]["signal"]["ts"]) == sum(1 for e in first if e.kind == "signal")
    await player.close()


async def test_bad_replay_requests_are_refused_and_the_connection_stays(
    redis_url: str, engine: AsyncEngine, symbol: str
) -> None:
    async with replay_gateway(redis_url, engine) as running:
        client = await WsClient(running.ws_url).connect()
        bad = [
            {"from": "yesterday"},
            {"from": 10**30},
            {"from": now_ms(), "speed": 0},
            {"from": now_ms(), "speed": "fast"},
            {"from": now_ms(), "to": now_ms() - 60_000},
            {"to": "live"},
            {"from": now_ms(), "loop": True},
        ]
        for index, replay in enumerate(bad):
            await client.send({"op": "subscribe", "ref": index, "symbol": symbol, "replay": replay})
            error = await client.wait_for(lambda f, i=index: f.get("ref") == i)  # type: ignore[misc]
            assert (error["op"], error["code"]) == ("error", "bad_request"), (replay, error)
        await client.send({"op": "replay_control", "ref": "x", "sub": "r999", "action": "pause"})
        error = await client.wait_for(lambda f: f.get("ref") == "x")
        assert error["code"] == "bad_request" and "no replay" in error["message"]
        assert (await client.subscribe(symbol))["op"] == "subscribed"
        await client.close()
