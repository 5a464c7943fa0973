from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from typing import Any

import pandas as pd
import pytest
import redis

from publishers import Publisher, PublishError, SyncPublisher, keys
from publishers.script import PUBLISH_SHA, build_call, parse_live_message, parse_result
from server.cli.embedded import EmbeddedRedis
from tests.support import async_wait_until, scaled

TS = 1_732_560_000_000


def log_events(client: redis.Redis, symbol: str) -> list[dict[str, Any]]:
    entries = client.xrange(keys.log_key(symbol))
    events = []
    for entry_id, fields in entries:
        event = json.loads(fields[keys.LOG_FIELD.encode()])
        assert entry_id == f"{event['seq']}-0".encode()
        events.append(event)
    return events


async def test_concurrent_publishers_give_each_symbol_contiguous_seqs(redis_url: str, symbol: str) -> None:
    symbols = [f"{symbol}A", f"{symbol}B", f"{symbol}C"]
    per_publisher = 1000
    received: dict[str, list[int]] = {s: [] for s in symbols}
    listener = redis.asyncio.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(*(keys.live_channel(s) for s in symbols))
    total = 8 * per_publisher

    async def listen() -> None:
        count = 0
        while count < total:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            _, seq, published, event = parse_live_message(message["data"])
            assert abs(published - time.time() * 1000) < 60_000
            assert json.loads(event)["seq"] == seq
            received[keys.symbol_of(message["channel"])].append(seq)
            count += 1

    async def run_publisher(index: int) -> list[tuple[str, int]]:
        got = []
        async with Publisher(redis_url, bot=f"bot-{index}", strategy="momentum") as pub:
            for i in range(per_publisher):
                sym = symbols[(index + i) % 3]
                got.append((sym, await pub.signal(sym, "buy", price=100 + i, confidence=0.5, ts=TS + i)))
        return got

    listening = asyncio.create_task(listen())
    results = await asyncio.gather(*(run_publisher(i) for i in range(8)))
    await asyncio.wait_for(listening, scaled(30))
    await pubsub.aclose()
    await listener.aclose()

    client = redis.Redis.from_url(redis_url)
    returned: dict[str, list[int]] = {s: [] for s in symbols}
    for got in results:
        for sym, seq in got:
            returned[sym].append(seq)
    for sym in symbols:
        count = len(returned[sym])
        assert sorted(returned[sym]) == list(range(1, count + 1)), "each seq given once, no gap"
        assert [e["seq"] for e in log_events(client, sym)] == list(range(1, count + 1))
        assert received[sym] == list(range(1, count + 1)), "live channel delivers in seq order"
        assert int(client.hget(keys.meta_key(sym), "seq") or 0) == count
        assert client.sismember(keys.SYMBOLS_KEY, sym)
    assert sum(len(v) for v in returned.values()) == total
    client.close()


async def test_events_reach_the_log_exactly_as_documented(redis_url: str, symbol: str) -> None:
    async with Publisher(redis_url, bot="momo-1", strategy="momentum") as pub:
        seq = await pub.signal(symbol, "sell", price=10.5, confidence=0.25, ts=TS, meta={"why": "test"})
        seq2 = await pub.trade(
            symbol, side="sell", action="exit", price=11, qty=2, position="p1", pnl=-1.0, fee=0.1, ts=TS + 1
        )
        seq3 = await pub.candle(symbol, ts=TS, tf="1m", open=10, high=12, low=9, close=11, volume=5)
    assert (seq, seq2, seq3) == (1, 2, 3)
    client = redis.Redis.from_url(redis_url)
    events = log_events(client, symbol)
    assert events[0] == {
        "seq": 1,
        "kind": "signal",
        "symbol": symbol,
        "ts": TS,
        "bot": "momo-1",
        "strategy": "momentum",
        "type": "sell",
        "price": 10.5,
        "confidence": 0.25,
        "meta": {"why": "test"},
    }
    assert events[1]["pnl"] == -1.0 and events[1]["position"] == "p1"
    assert events[2]["kind"] == "candle" and events[2]["high"] == 12
    client.close()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p, s: p.signal(s, "buy", price=math.nan, confidence=0.5), "price"),
        (lambda p, s: p.signal(s, "buy", price=math.inf, confidence=0.5), "price"),
        (lambda p, s: p.signal(s, "buy", price=1, confidence=1.5), "confidence"),
        (lambda p, s: p.signal(s, "moon", price=1, confidence=0.5), "type"),
        (lambda p, s: p.signal("", "buy", price=1, confidence=0.5), "symbol"),
        (lambda p, s: p.signal(s, "buy", price="1", confidence=0.5), "price"),
        (lambda p, s: p.signal(s, "buy", price=1, confidence=0.5, meta={"x": "y" * 5000}), "meta"),
        (lambda p, s: p.trade(s, side="up", action="entry", price=1, qty=1, position="p"), "side"),
        (lambda p, s: p.trade(s, side="buy", action="entry", price=1, qty=math.nan, position="p"), "qty"),
        (lambda p, s: p.candle(s, ts=TS, tf="1m", open=1, high=0.5, low=0.4, close=1, volume=1), "high"),
        (lambda p, s: p.status("asleep", symbol=s), "status"),
    ],
)
async def test_invalid_input_raises_before_anything_reaches_redis(
    redis_url: str, symbol: str, call: Any, field: str
) -> None:
    async with Publisher(redis_url, bot="b", strategy="s") as pub:
        with pytest.raises(ValueError, match=f"^{field}: "):
            await call(pub, symbol)
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(keys.meta_key(symbol), keys.log_key(symbol))
    assert not client.sismember(keys.SYMBOLS_KEY, symbol)
    client.close()


async def test_a_publisher_without_bot_says_so(redis_url: str, symbol: str) -> None:
    async with Publisher(redis_url) as pub:
        with pytest.raises(ValueError, match="^bot: is required"):
            await pub.signal(symbol, "buy", price=1, confidence=0.5)
        assert await pub.signal(symbol, "buy", price=1, confidence=0.5, bot="b", strategy="s") == 1


async def test_a_replayed_call_is_applied_once(redis_url: str, symbol: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.script_load(__import__("publishers.script", fromlist=["x"]).PUBLISH_SCRIPT)
    body = '"kind":"candle","symbol":"%s","ts":%d,"tf":"1m","open":1,"high":1,"low":1,"close":1,"volume":1}'
    first = build_call(symbol, [body % (symbol, TS)], publisher_id="pid1", call_number=1, log_maxlen=1000)
    again = build_call(symbol, [body % (symbol, TS)], publisher_id="pid1", call_number=1, log_maxlen=1000)
    one = parse_result(client.evalsha(PUBLISH_SHA, len(first.keys), *first.keys, *first.args))
    two = parse_result(client.evalsha(PUBLISH_SHA, len(again.keys), *again.keys, *again.args))
    assert (one.first_seq, one.replayed) == (1, False)
    assert (two.first_seq, two.replayed, two.epoch) == (1, True, one.epoch)
    assert client.xlen(keys.log_key(symbol)) == 1
    client.close()


async def test_a_new_epoch_restarts_seqs_and_drops_the_old_log(redis_url: str, symbol: str) -> None:
    async with Publisher(redis_url, bot="b", strategy="s") as pub:
        for _ in range(3):
            await pub.signal(symbol, "buy", price=1, confidence=0.5)
        client = redis.Redis.from_url(redis_url)
        old_epoch = client.hget(keys.meta_key(symbol), "epoch")
        client.delete(keys.meta_key(symbol))  # what a Redis that lost its state looks like
        assert await pub.signal(symbol, "buy", price=1, confidence=0.5) == 1
    assert client.hget(keys.meta_key(symbol), "epoch") != old_epoch
    assert [e["seq"] for e in log_events(client, symbol)] == [1]
    client.close()


async def test_publish_error_while_redis_is_down_then_contiguous_after(
    own_redis: EmbeddedRedis, symbol: str
) -> None:
    pub = Publisher(own_redis.url, bot="b", strategy="s", retry_attempts=3, retry_timeout_s=1.0)
    assert await pub.signal(symbol, "buy", price=1, confidence=0.5) == 1
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(PublishError, match="after .* attempt") as caught:
        await pub.signal(symbol, "buy", price=1, confidence=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < scaled(5), "the retry is bounded"
    assert "127.0.0.1" in str(caught.value)
    own_redis.start()
    assert await pub.signal(symbol, "buy", price=1, confidence=0.5) == 2
    assert await pub.signal(symbol, "sell", price=1, confidence=0.5) == 3
    await pub.aclose()
    client = redis.Redis.from_url(own_redis.url)
    assert [e["seq"] for e in log_events(client, symbol)] == [1, 2, 3]
    client.close()


async def test_a_publish_waiting_for_redis_succeeds_when_it_comes_back(
    own_redis: EmbeddedRedis, symbol: str
) -> None:
    pub = Publisher(own_redis.url, bot="b", strategy="s", retry_attempts=50, retry_timeout_s=scaled(20))
    assert await pub.signal(symbol, "buy", price=1, confidence=0.5) == 1
    own_redis.stop()
    pending = asyncio.create_task(pub.signal(symbol, "buy", price=1, confidence=0.5))
    await asyncio.sleep(0.3)  # let it fail a few times first: this is the scenario, not a wait for an event
    assert not pending.done()
    await asyncio.to_thread(own_redis.start)
    assert await asyncio.wait_for(pending, scaled(20)) == 2
    await pub.aclose()


async def test_status_goes_to_every_symbol_used_and_to_the_registry(redis_url: str, symbol: str) -> None:
    other = f"{symbol}X"
    async with Publisher(redis_url, bot=f"bot-{symbol}", strategy="s") as pub:
        assert await pub.status("active") == 0
        await pub.signal(symbol, "buy", price=1, confidence=0.5)
        await pub.signal(other, "buy", price=1, confidence=0.5)
        assert await pub.status("paused", equity=1234.5) == 2
    client = redis.Redis.from_url(redis_url)
    for sym in (symbol, other):
        last = log_events(client, sym)[-1]
        assert (last["kind"], last["status"], last["equity"]) == ("bot", "paused", 1234.5)
    entry = json.loads(client.hget(keys.BOTS_KEY, f"bot-{symbol}") or b"{}")
    assert entry["status"] == "paused"
    assert entry["symbols"] == sorted([symbol, other])
    client.close()


async def test_heartbeat_republishes_status(redis_url: str, symbol: str) -> None:
    client = redis.Redis.from_url(redis_url)
    async with Publisher(redis_url, bot="hb", strategy="s", heartbeat_s=0.05) as pub:
        await pub.status("active", symbol=symbol)
        await async_wait_until(lambda: client.xlen(keys.log_key(symbol)) >= 3, what="3 heartbeats")
    client.close()


def test_sync_publisher_is_a_thread_safe_twin(redis_url: str, symbol: str) -> None:
    with SyncPublisher(redis_url, bot="sync", strategy="s") as pub:
        assert pub.signal(symbol, "buy", price=1, confidence=0.5, ts=TS) == 1
        seqs: list[int] = []

        def work() -> None:
            for i in range(200):
                seqs.append(
                    pub.trade(symbol, side="buy", action="entry", price=1 + i, qty=1, position=f"p{i}")
                )

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seqs) == list(range(2, 802))
        with pytest.raises(ValueError, match="^confidence: "):
            pub.signal(symbol, "buy", price=1, confidence=2)
    client = redis.Redis.from_url(redis_url)
    assert [e["seq"] for e in log_events(client, symbol)] == list(range(1, 802))
    client.close()


def test_sync_publisher_raises_publish_error_when_redis_is_unreachable(symbol: str) -> None:
    from server.cli.embedded import free_port

    pub = SyncPublisher(
        f"redis://127.0.0.1:{free_port()}/0", bot="b", strategy="s", retry_attempts=2, retry_timeout_s=0.5
    )
    with pytest.raises(PublishError, match="after 3 attempt"):
        pub.signal(symbol, "buy", price=1, confidence=0.5)
    pub.close()


async def test_publish_frame_loads_candles_signals_and_trades_in_order(redis_url: str, symbol: str) -> None:
    times = pd.date_range("2024-11-25 00:00", periods=1200, freq="1min", tz="UTC")
    candles = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}, index=times)
    signals = pd.DataFrame(
        {"ts": times[:3], "type": ["buy", "sell", "hold"], "price": 1.0, "confidence": [0.1, 0.5, 0.9]}
    )
    trades = pd.DataFrame(
        {
            "timestamp": [TS, TS + 60_000],
            "side": ["buy", "sell"],
            "action": ["entry", "exit"],
            "price": [1.0, 1.2],
            "qty": 2.0,
            "position": "p1",
            "pnl": [math.nan, 0.4],
        }
    )
    async with Publisher(redis_url, bot="loader", strategy="import") as pub:
        assert await pub.publish_frame(candles, symbol=symbol) == list(range(1, 1201))
        assert await pub.publish_frame(signals, symbol=symbol) == [1201, 1202, 1203]
        assert await pub.publish_frame(trades, symbol=symbol) == [1204, 1205]
        bad = signals.assign(confidence=[0.1, 7.0, 0.2])
        with pytest.raises(ValueError, match=r"^confidence: row 1: "):
            await pub.publish_frame(bad, symbol=symbol)
    client = redis.Redis.from_url(redis_url)
    events = log_events(client, symbol)
    assert len(events) == 1205
    assert events[0]["ts"] == int(times[0].timestamp() * 1000) and events[0]["tf"] == "1m"
    assert [e["type"] for e in events[1200:1203]] == ["buy", "sell", "hold"]
    assert events[1203]["pnl"] is None and events[1204]["pnl"] == 0.4
    client.close()


def test_publisher_uses_the_configured_url_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Publisher().url == "redis://127.0.0.1:6399/0"
    monkeypatch.setenv("SIGNALPUSH_REDIS_URL", "redis://127.0.0.1:6380/3")
    assert SyncPublisher().url == "redis://127.0.0.1:6380/3"
    assert "6380" in repr(Publisher(bot="b"))


def test_the_sync_publisher_is_the_async_one_driven_without_a_loop() -> None:
    import inspect

    from publishers.transport import drive

    methods = [
        name
        for name, member in inspect.getmembers(Publisher, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in ("connect", "aclose")
    ]
    assert methods == ["candle", "publish", "publish_frame", "publish_many", "signal", "status", "trade"]
    for name in methods:
        assert getattr(SyncPublisher, name).__wrapped__ is getattr(Publisher, name), name
        assert inspect.signature(getattr(SyncPublisher, name)) == inspect.signature(getattr(Publisher, name))

    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        drive(suspends())
