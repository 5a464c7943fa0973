"""The publish script checks before it writes: a refused call is a clear PublishError, writes
nothing and burns no seq (publishers/publish.lua, docs/history.md "The publish script's guards")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from publishers import Publisher, PublishError, SyncPublisher, keys
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, build_call

TS = 1_732_560_000_000


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    plain = redis.Redis.from_url(redis_url)
    yield plain
    plain.close()


async def publish(url: str, symbol: str, count: int = 1) -> list[int]:
    async with Publisher(url, bot="b", strategy="s", retry_attempts=0) as pub:
        return [await pub.signal(symbol, "buy", price=1, confidence=0.5, ts=TS) for _ in range(count)]


def meta_seq(client: redis.Redis, symbol: str) -> int:
    return int(client.hget(keys.meta_key(symbol), "seq") or 0)


async def listen(url: str, symbol: str) -> tuple[redis.asyncio.Redis, redis.asyncio.client.PubSub]:
    listener = redis.asyncio.Redis.from_url(url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(keys.live_channel(symbol))
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    return listener, pubsub


@pytest.mark.parametrize("delete_after_add", [False, True], ids=["xadd", "xadd-then-xdel"])
async def test_a_log_ahead_of_the_meta_is_refused_without_burning_a_seq(
    redis_url: str, client: redis.Redis, symbol: str, delete_after_add: bool
) -> None:
    assert await publish(redis_url, symbol, 3) == [1, 2, 3]
    client.xadd(keys.log_key(symbol), {"e": "x"}, id="99999999999-0")
    if delete_after_add:
        client.xdel(keys.log_key(symbol), "99999999999-0")  # its last generated id still blocks
    listener, pubsub = await listen(redis_url, symbol)
    for _ in range(3):
        with pytest.raises(PublishError) as caught:
            await publish(redis_url, symbol)
        message = str(caught.value)
        assert keys.log_key(symbol) in message and "99999999999-0" in message
        assert f"DEL {keys.log_key(symbol)}" in message and f"DEL {keys.meta_key(symbol)}" in message
    assert meta_seq(client, symbol) == 3, "a refused publish burns no seq"
    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None, "nothing published"
    client.delete(keys.log_key(symbol))  # the documented repair keeps the epoch and the seqs
    assert await publish(redis_url, symbol, 2) == [4, 5]
    await pubsub.aclose()
    await listener.aclose()


@pytest.mark.parametrize(
    ("key", "spoil", "says"),
    [
        ("meta", lambda c, k: c.set(k, "x"), "is not a hash"),
        ("meta", lambda c, k: c.hset(k, "seq", "many"), "field seq is not a whole number"),
        ("meta", lambda c, k: c.hset(k, "epoch", "no spaces allowed"), "holds an epoch"),
        ("log", lambda c, k: (c.delete(k), c.hset(k, "a", "b")), "is not a stream"),
    ],
    ids=["meta-string", "meta-seq-text", "meta-epoch-bad", "log-hash"],
)
async def test_keys_of_the_wrong_type_or_content_are_refused_by_name(
    redis_url: str, client: redis.Redis, symbol: str, key: str, spoil: object, says: str
) -> None:
    await publish(redis_url, symbol, 2)
    name = keys.meta_key(symbol) if key == "meta" else keys.log_key(symbol)
    spoil(client, name)  # type: ignore[operator]
    before = {k: client.dump(k) for k in (keys.meta_key(symbol), keys.log_key(symbol))}
    with pytest.raises(PublishError) as caught:
        await publish(redis_url, symbol)
    assert name in str(caught.value) and says in str(caught.value)
    assert {k: client.dump(k) for k in before} == before, "nothing written"


async def test_a_registry_of_the_wrong_type_is_refused_before_anything_is_written(
    redis_url: str, client: redis.Redis, symbol: str
) -> None:
    members = client.smembers(keys.SYMBOLS_KEY)
    client.delete(keys.SYMBOLS_KEY)
    client.set(keys.SYMBOLS_KEY, "not a set")
    try:
        with pytest.raises(PublishError, match="sp:symbols is not a set"):
            await publish(redis_url, symbol)
        assert not client.exists(keys.meta_key(symbol), keys.log_key(symbol))
    finally:
        client.delete(keys.SYMBOLS_KEY)
        if members:
            client.sadd(keys.SYMBOLS_KEY, *members)


def test_the_script_refuses_a_name_that_is_not_a_symbol_or_keys_of_another_symbol(
    client: redis.Redis, symbol: str
) -> None:
    client.script_load(PUBLISH_SCRIPT)
    body = f'"kind":"signal","symbol":"{symbol}"}}'
    call = build_call(symbol, [body], publisher_id="", call_number=1, log_maxlen=1000)
    bad_name = (*call.args[:4], "\xff\xfeBAD", *call.args[5:])
    with pytest.raises(redis.ResponseError, match="is not a symbol"):
        client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *bad_name)
    other = (*call.args[:4], f"{symbol}X", *call.args[5:])
    with pytest.raises(redis.ResponseError, match="not those of symbol"):
        client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *other)
    bad_epoch = ("no spaces", *call.args[1:])
    with pytest.raises(redis.ResponseError, match="candidate epoch"):
        client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *bad_epoch)
    assert not client.exists(keys.meta_key(symbol), keys.log_key(symbol))
    assert not client.sismember(keys.SYMBOLS_KEY, "\xff\xfeBAD")


def test_the_sync_publisher_maps_a_refusal_the_same_way(
    redis_url: str, client: redis.Redis, symbol: str
) -> None:
    asyncio.run(publish(redis_url, symbol, 1))
    client.xadd(keys.log_key(symbol), {"e": "x"}, id="99999999999-0")
    with (
        SyncPublisher(redis_url, bot="b", strategy="s", retry_attempts=0) as pub,
        pytest.raises(PublishError, match="refused to publish: .*99999999999-0"),
    ):
        pub.signal(symbol, "buy", price=1, confidence=0.5, ts=TS)
    assert meta_seq(client, symbol) == 1
