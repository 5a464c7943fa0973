"""Least-privilege Redis users: each role's rules as rendered, and each part working with its user.

"Working" includes "Redis refused it nothing": a refused command that the part survives (a
retry loop, a fallback) would otherwise pass unnoticed, so every test here reads the ACL LOG.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from publishers import Publisher, PublishError, SyncPublisher, keys
from server.cli.acl import render, rules, setuser_command, user_url
from server.cli.runner import running_gateway as running_serve
from server.history.migrate import upgrade_database
from server.history.recorder import Recorder
from server.settings import RecorderSettings, load_settings
from tests.support import async_wait_until
from tests.support.acl import acl_user, refusals
from tests.support.gateway import WsClient, running_gateway

# -- the rules as rendered (pure) ---------------------------------------------------------


def test_on_redis_7_each_command_is_allowed_only_on_the_keys_it_is_used_on() -> None:
    publisher = rules("publisher", redis_major=7)
    root = [rule for rule in publisher if not rule.startswith("(")]
    assert not [rule for rule in root if "~" in rule or "&" in rule], "the root grants no key and no channel"
    assert "+del" not in root and "+sadd" not in root and "+publish" not in root
    selectors = [rule for rule in publisher if rule.startswith("(")]
    (deleting,) = [s for s in selectors if "+del" in s.split()]
    assert deleting == "(resetchannels +xadd +del %W~sp:{*}:log)"
    (adding,) = [s for s in selectors if "+sadd" in s.split()]
    assert adding == "(resetchannels +sadd %W~sp:symbols)"
    (publishing,) = [s for s in selectors if "+publish" in s.split()]
    assert publishing == "(resetchannels +publish +spublish &sp:{*}:live)"


def test_on_redis_7_the_gateway_reads_every_key_and_writes_only_the_wall_fleet() -> None:
    gateway = rules("gateway", redis_major=7)
    key_rules = [word for rule in gateway for word in rule.strip("()").split() if "~" in word]
    fleet = {f"~{keys.DISPLAY_PREFIX}*", f"~{keys.DISPLAYS_KEY}", f"~{keys.VIEWS_KEY}"}
    assert key_rules and all(word.startswith("%R~") for word in key_rules if word not in fleet), key_rules
    assert fleet <= set(key_rules)


def test_on_redis_7_the_recorder_reads_meta_and_the_symbols_only() -> None:
    recorder = rules("recorder", redis_major=7)
    commands = {word for rule in recorder for word in rule.strip("()").split() if word.startswith("+")}
    assert not commands & {"+hset", "+hdel", "+hincrby", "+del", "+sadd", "+publish", "+xadd"}
    writable = {w for rule in recorder for w in rule.strip("()").split() if w.startswith(("~", "%W~"))}
    # The meta hash is writable only for EVALSHA (which declares its keys read-write); no
    # command that writes a hash is granted anywhere.
    (script,) = [rule for rule in recorder if "+evalsha" in rule]
    assert writable == {"~sp:{*}:meta", "~sp:{*}:log"} and "~sp:{*}:meta" in script


def test_redis_6_rules_are_one_flat_set() -> None:
    for role in ("publisher", "gateway", "recorder", "serve"):
        flat = rules(role, redis_major=6)
        assert not [rule for rule in flat if rule.startswith(("(", "%"))], role
        assert not {"+spublish", "+ssubscribe", "+sunsubscribe"} & set(flat), role


def test_symbol_patterns_limit_the_per_symbol_keys_and_channels() -> None:
    limited = " ".join(rules("publisher", symbols=("BTC*", "ETHUSDT")))
    assert "~sp:{BTC*}:meta" in limited and "~sp:{ETHUSDT}:meta" in limited
    assert "&sp:{BTC*}:live" in limited and "{*}" not in limited
    assert "%W~sp:symbols" in limited  # the registries are shared
    for bad in ("BTC}", "a b", "[AB]*", "", "sp:{X}:meta ~*"):
        with pytest.raises(ValueError, match="symbol pattern"):
            rules("publisher", symbols=(bad,))


def test_the_printed_line_reads_back_as_the_same_arguments() -> None:
    for role in ("publisher", "serve"):
        line = render(role, "sp-x", "pw")
        assert shlex.split(line) == setuser_command(role, "sp-x", "pw")
    with pytest.raises(ValueError, match="publishers only"):
        rules("gateway", symbols=("BTC*",))


def test_the_cli_prints_a_line_redis_accepts(redis_url: str, symbol: str) -> None:
    major = redis.Redis.from_url(redis_url).info("server")["redis_version"].split(".")[0]
    name = f"sp-test-cli-{symbol.lower()}"
    options = ["--password", "pw-cli-test", "--redis-major", major, "--symbols", f"{symbol},X*"]
    result = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "acl", "publisher", name, *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    admin = redis.Redis.from_url(redis_url)
    try:
        assert admin.execute_command(*shlex.split(result.stdout.strip())) in (b"OK", "OK", True)
        with SyncPublisher(user_url(redis_url, name, "pw-cli-test"), bot="b", strategy="s") as publisher:
            assert publisher.signal(symbol, "buy", price=1, confidence=0.5) == 1
    finally:
        admin.execute_command("ACL", "DELUSER", name)
        admin.close()
    refused = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "acl", "publisher", name, "--symbols", "BTC}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "bad symbol pattern" in refused.stderr


# -- each part works with its user (every Redis version) ----------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def test_the_publisher_user_publishes_and_the_gateway_user_serves(redis_url: str, symbol: str) -> None:
    with acl_user(redis_url, "publisher") as (pub_name, pub_url), acl_user(redis_url, "gateway") as gw:
        gw_name, gw_url = gw
        async with running_gateway(gw_url) as running:
            client = await WsClient(running.ws_url).connect()
            sub = (await client.subscribe(symbol, history={"minutes": 5}))["sub"]
            async with Publisher(pub_url, bot="b", strategy="s") as pub:
                for _ in range(3):
                    await pub.signal(symbol, "buy", price=1, confidence=0.5)
                await pub.status("active", equity=1.0)
            with SyncPublisher(pub_url, bot="b2", strategy="s") as sync_pub:
                sync_pub.signal(symbol, "sell", price=1, confidence=0.5)
            await async_wait_until(
                lambda: client.position(sub) == 5, what="5 events through the gateway user"
            )
            listed = await asyncio.to_thread(_get_json, f"{running.http_url}/api/symbols")
            assert any(item["symbol"] == symbol and item["seq"] == 5 for item in listed["symbols"])
            await client.close()
        assert refusals(redis_url, pub_name) == []
        assert refusals(redis_url, gw_name) == []


async def test_the_recorder_user_records_and_is_refused_nothing(
    redis_url: str, symbol: str, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'acl.db'}"
    await upgrade_database(url)
    with acl_user(redis_url, "publisher") as (_, pub_url), acl_user(redis_url, "recorder") as (name, rec_url):
        async with Publisher(pub_url, bot="b", strategy="s") as pub:
            for _ in range(5):
                await pub.signal(symbol, "buy", price=1, confidence=0.5)
        settings = RecorderSettings(block_ms=50)
        recorder = Recorder(rec_url, url, settings, symbols=[symbol], claim_idle_ms=100)
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        await async_wait_until(
            lambda: recorder.committed().get(symbol) == 5, what="5 events recorded as the recorder user"
        )
        async with Publisher(pub_url, bot="b", strategy="s") as pub:
            await pub.signal(symbol, "buy", price=1, confidence=0.5)
        await async_wait_until(lambda: recorder.committed().get(symbol) == 6, what="the 6th, after idling")
        stop.set()
        await task
        # The symbol list the recorder reads when it records every symbol.
        assert symbol.encode() in redis.Redis.from_url(rec_url).smembers(keys.SYMBOLS_KEY)
        assert refusals(redis_url, name) == []


async def test_the_serve_user_runs_the_gateway_and_its_recorder(
    redis_url: str, symbol: str, tmp_path: Path
) -> None:
    settings = load_settings(
        env={},
        overrides={
            "server": {"host": "127.0.0.1", "port": 0},
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"},
            # Other tests' logs share this Redis: record them, but leave them untrimmed.
            "recorder": {"trim": False, "block_ms": 50},
        },
    )
    with acl_user(redis_url, "publisher") as (_, pub_url), acl_user(redis_url, "serve") as (name, serve_url):
        async with running_serve(settings, serve_url) as (gateway, port):
            await async_wait_until(lambda: gateway.bus.up, what="the bus to connect as the serve user")
            client = await WsClient(f"ws://127.0.0.1:{port}/ws").connect()
            sub = (await client.subscribe(symbol))["sub"]
            async with Publisher(pub_url, bot="b", strategy="s") as pub:
                for _ in range(4):
                    await pub.signal(symbol, "buy", price=1, confidence=0.5)
            await async_wait_until(lambda: client.position(sub) == 4, what="4 events through the serve user")
            await client.close()
        assert refusals(redis_url, name) == []


async def test_a_publisher_limited_to_some_symbols_cannot_publish_others(redis_url: str, symbol: str) -> None:
    other = f"U{symbol[1:]}"
    with acl_user(redis_url, "publisher", symbols=(f"{symbol[:5]}*",)) as (_, url):
        async with Publisher(url, bot="b", strategy="s", retry_attempts=0) as pub:
            assert await pub.signal(symbol, "buy", price=1, confidence=0.5) == 1
            with pytest.raises(PublishError, match="NOPERM|permission"):
                await pub.signal(other, "buy", price=1, confidence=0.5)
        client = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.publish(keys.live_channel(other), "x")
        client.close()
    assert not redis.Redis.from_url(redis_url).exists(keys.meta_key(other))
