"""What each role's user is refused, against real Redis.

Every Redis version refuses what a role has no command for; Redis 7 also refuses a granted
command on a key the part never uses it on (one ACL selector per grant). Scripts run with the
caller's permissions, so a script the user loads itself gets no more than the user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from publishers import PublishError, SyncPublisher, keys
from tests.support.acl import acl_user

Refused = redis.exceptions.NoPermissionError


@pytest.fixture
def seeded(redis_url: str, symbol: str) -> str:
    """``symbol`` published once by the admin, so its meta, log and registry entries exist."""
    with SyncPublisher(redis_url, bot="b", strategy="s") as publisher:
        publisher.signal(symbol, "buy", price=1, confidence=0.5)
        publisher.status("active", equity=1.0)
    return symbol


@pytest.fixture
def as_role(redis_url: str) -> Iterator[Callable[[str], redis.Redis]]:
    """role -> a client logged in as a fresh user with that role (on this Redis's version)."""
    contexts: list[Any] = []
    clients: list[redis.Redis] = []

    def make(role: str) -> redis.Redis:
        context = acl_user(redis_url, role)
        contexts.append(context)
        _, url = context.__enter__()
        client = redis.Redis.from_url(url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
    for context in contexts:
        context.__exit__(None, None, None)


def _refused(call: Callable[[], object]) -> None:
    # Inside a script Redis reports a refused command as a script error naming the user.
    with pytest.raises((Refused, redis.exceptions.ResponseError), match="NOPERM|no permissions|can't"):
        call()


# -- every Redis version -------------------------------------------------------------------


def test_the_gateway_user_writes_nothing(as_role: Callable[[str], redis.Redis], seeded: str) -> None:
    gateway = as_role("gateway")
    meta, log, live = keys.meta_key(seeded), keys.log_key(seeded), keys.live_channel(seeded)
    for call in (
        lambda: gateway.hset(meta, "seq", 99),
        lambda: gateway.hincrby(meta, "seq", 1),
        lambda: gateway.xadd(log, {"e": "{}"}, id="99999999999-0"),
        lambda: gateway.xtrim(log, maxlen=0),
        lambda: gateway.delete(log),
        lambda: gateway.sadd(keys.SYMBOLS_KEY, "\xff\xfeBAD"),
        lambda: gateway.publish(live, "garbage"),
        lambda: gateway.eval("return 1", 0),
        lambda: gateway.script_load("return 1"),
        lambda: gateway.xgroup_create(log, "mine", id="0"),
        lambda: gateway.flushdb(),
    ):
        _refused(call)
    assert gateway.hmget(meta, ["epoch", "seq"])[1] == b"2"  # and it reads


def test_the_gateway_user_cannot_publish_through_the_script(redis_url: str, symbol: str) -> None:
    with acl_user(redis_url, "gateway") as (_, url):
        publisher = SyncPublisher(url, bot="b", strategy="s", retry_attempts=0)
        with pytest.raises(PublishError, match="NOPERM|permission"):
            publisher.signal(symbol, "buy", price=1, confidence=0.5)
        publisher.close()


def test_the_publisher_user_reads_and_subscribes_to_nothing_and_touches_only_its_keys(
    as_role: Callable[[str], redis.Redis], seeded: str
) -> None:
    publisher = as_role("publisher")
    log = keys.log_key(seeded)
    for call in (
        lambda: publisher.xrange(log),
        lambda: publisher.xread({log: "0"}),
        lambda: publisher.hgetall(keys.meta_key(seeded)),
        lambda: publisher.smembers(keys.SYMBOLS_KEY),
        lambda: publisher.hgetall(keys.BOTS_KEY),
        lambda: publisher.xgroup_create(log, "mine", id="0"),
        lambda: publisher.xtrim(log, maxlen=0),
        lambda: publisher.hdel(keys.meta_key(seeded), "epoch"),
        lambda: publisher.expire(keys.meta_key(seeded), 1),
        lambda: publisher.set("not-ours", "x"),
        lambda: publisher.get(keys.HEALTH_KEY),
        lambda: publisher.publish("sp:other", "x"),
        lambda: publisher.publish("not-ours", "x"),
        lambda: publisher.eval("return 1", 0),
        lambda: publisher.flushdb(),
    ):
        _refused(call)
    _refused(lambda: publisher.execute_command("SUBSCRIBE", keys.live_channel(seeded)))


def test_the_recorder_user_cannot_change_meta_publish_or_register(
    as_role: Callable[[str], redis.Redis], seeded: str
) -> None:
    recorder = as_role("recorder")
    meta, log = keys.meta_key(seeded), keys.log_key(seeded)
    for call in (
        lambda: recorder.hset(meta, "seq", 99),
        lambda: recorder.hincrby(meta, "seq", 1),
        lambda: recorder.hdel(meta, "epoch"),
        lambda: recorder.delete(log),
        lambda: recorder.xadd(log, {"e": "{}"}),
        lambda: recorder.publish(keys.live_channel(seeded), "x"),
        lambda: recorder.sadd(keys.SYMBOLS_KEY, "BAD"),
        lambda: recorder.hset(keys.BOTS_KEY, "b", "{}"),
        lambda: recorder.set("not-ours", "x"),
        lambda: recorder.eval("return 1", 0),
    ):
        _refused(call)
    # Nor through a script of its own: scripts run with the caller's permissions.
    sha = recorder.script_load("return redis.call('HSET', KEYS[1], 'seq', 99)")
    _refused(lambda: recorder.evalsha(sha, 1, meta))
    assert recorder.hget(meta, "seq") == b"2"


def test_a_limited_publisher_user_touches_no_other_symbol(redis_url: str, seeded: str) -> None:
    with acl_user(redis_url, "publisher", symbols=("NOTHING*",)) as (_, url):
        client = redis.Redis.from_url(url)
        for call in (
            lambda: client.hincrby(keys.meta_key(seeded), "seq", 1),
            lambda: client.xadd(keys.log_key(seeded), {"e": "{}"}, id="99999999999-0"),
            lambda: client.delete(keys.log_key(seeded)),
            lambda: client.publish(keys.live_channel(seeded), "garbage"),
        ):
            _refused(call)
        client.close()


# -- Redis 7: each command only on the keys it is used on --------------------------------


@pytest.fixture
def seeded7(redis7_url: str, symbol: str) -> str:
    with SyncPublisher(redis7_url, bot="b", strategy="s") as publisher:
        publisher.signal(symbol, "buy", price=1, confidence=0.5)
        publisher.status("active", equity=1.0)
    return symbol


def test_redis7_the_publisher_deletes_only_logs_and_adds_only_to_the_symbol_set(
    redis7_url: str, seeded7: str
) -> None:
    meta = keys.meta_key(seeded7)
    with acl_user(redis7_url, "publisher") as (_, url):
        client = redis.Redis.from_url(url)
        for call in (
            lambda: client.delete(meta),
            lambda: client.delete(keys.SYMBOLS_KEY),
            lambda: client.delete(keys.BOTS_KEY),
            lambda: client.sadd(meta, "x"),
            lambda: client.sadd(keys.meta_key("NEWSYM"), "x"),
            lambda: client.sadd(keys.BOTS_KEY, "x"),
            lambda: client.hset(keys.SYMBOLS_KEY, "x", "y"),
            lambda: client.hset(keys.log_key(seeded7), "x", "y"),
            lambda: client.xadd(meta, {"e": "{}"}),
            lambda: client.xadd(keys.SYMBOLS_KEY, {"e": "{}"}),
        ):
            _refused(call)
        # Scripts do not escalate: one the publisher loads itself is held to the same selectors.
        sha = client.script_load("return redis.call('DEL', KEYS[1])")
        _refused(lambda: client.evalsha(sha, 1, meta))
        sha = client.script_load("return redis.call('SADD', KEYS[1], 'x')")
        _refused(lambda: client.evalsha(sha, 1, meta))
        # What the publish script needs stays allowed (DEL of a log; its top id).
        assert client.xrevrange(keys.log_key(seeded7), count=1)
        assert client.xinfo_stream(keys.log_key(seeded7))["length"] == 2
        client.close()
    admin = redis.Redis.from_url(redis7_url)
    assert admin.hget(meta, "seq") == b"2" and admin.sismember(keys.SYMBOLS_KEY, seeded7)
    admin.close()


def test_redis7_the_recorder_writes_only_logs(redis7_url: str, seeded7: str) -> None:
    meta = keys.meta_key(seeded7)
    with acl_user(redis7_url, "recorder") as (_, url):
        client = redis.Redis.from_url(url)
        sha = client.script_load("return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)")
        for call in (
            lambda: client.xtrim(meta, maxlen=0),
            lambda: client.xtrim(keys.SYMBOLS_KEY, maxlen=0),
            lambda: client.xgroup_create(meta, "g", id="0"),
            lambda: client.evalsha(sha, 1, keys.SYMBOLS_KEY),
        ):
            _refused(call)
        client.close()


def test_redis7_the_gateway_holds_read_only_key_permissions_but_for_the_wall_fleet(redis7_url: str) -> None:
    with acl_user(redis7_url, "gateway") as (name, _):
        admin = redis.Redis.from_url(redis7_url)
        user = admin.acl_getuser(name)
        admin.close()
    # redis-py returns each selector as a flat [name, value, ...] list.
    selectors = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in user["selectors"]]
    words = [w for sel in selectors for w in _text(sel["keys"]).split()] + list(map(_text, user["keys"]))
    patterns = " ".join(words)
    assert "%R~sp:{*}:meta" in patterns and "%R~sp:{*}:log" in patterns
    fleet = {f"~{keys.DISPLAY_PREFIX}*", f"~{keys.DISPLAYS_KEY}", f"~{keys.VIEWS_KEY}"}
    assert fleet <= set(words), "the wall fleet's keys (docs/walls.md) are the only ones it writes"
    assert words and all(word.startswith("%R~") for word in words if word not in fleet), words


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
