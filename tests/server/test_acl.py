"""Least-privilege Redis users: a publisher that only publishes, a gateway that only reads and subscribes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from publishers import Publisher, PublishError, SyncPublisher
from server.acl import setuser_command
from tests.support import async_wait_until
from tests.support.gateway import WsClient, running_gateway


def _with_user(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{username}:{password}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def acl_users(redis_url: str) -> Iterator[dict[str, str]]:
    """Role -> a URL logging in as a fresh user with that role's rules."""
    admin = redis.Redis.from_url(redis_url)
    major = int(str(admin.info("server")["redis_version"]).split(".")[0])
    urls = {}
    names = []
    for role in ("publisher", "gateway", "recorder"):
        name, password = f"sp-test-{role}-{secrets.token_hex(3)}", secrets.token_hex(12)
        admin.execute_command(*setuser_command(role, name, password, redis_major=major))
        urls[role] = _with_user(redis_url, name, password)
        names.append(name)
    yield urls
    admin.execute_command("ACL", "DELUSER", *names)
    admin.close()


async def test_the_publisher_user_publishes_and_the_gateway_user_serves(
    acl_users: dict[str, str], symbol: str
) -> None:
    async with running_gateway(acl_users["gateway"]) as running:
        client = await WsClient(running.ws_url).connect()
        sub = (await client.subscribe(symbol, history={"minutes": 5}))["sub"]
        async with Publisher(acl_users["publisher"], bot="b", strategy="s") as pub:
            for _ in range(3):
                await pub.signal(symbol, "buy", price=1, confidence=0.5)
            await pub.status("active", equity=1.0)
        await async_wait_until(lambda: client.position(sub) == 4, what="4 events through the gateway user")
        await client.close()


def test_the_gateway_user_cannot_publish(acl_users: dict[str, str], symbol: str) -> None:
    publisher = SyncPublisher(acl_users["gateway"], bot="b", strategy="s", retry_attempts=0)
    with pytest.raises(PublishError, match="NOPERM|permission"):
        publisher.signal(symbol, "buy", price=1, confidence=0.5)
    publisher.close()


def test_the_publisher_user_cannot_read_logs_or_touch_other_keys(
    acl_users: dict[str, str], symbol: str
) -> None:
    with SyncPublisher(acl_users["publisher"], bot="b", strategy="s") as publisher:
        publisher.signal(symbol, "buy", price=1, confidence=0.5)
    client = redis.Redis.from_url(acl_users["publisher"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.xrange(f"sp:{{{symbol}}}:log")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("not-ours", "x")
    client.close()


async def test_the_recorder_user_records(acl_users: dict[str, str], symbol: str, tmp_path: Any) -> None:
    import asyncio

    from publishers.config import RecorderSettings
    from server.store.migrate import upgrade_database
    from server.store.recorder import Recorder

    url = f"sqlite+aiosqlite:///{tmp_path / 'acl.db'}"
    await upgrade_database(url)
    async with Publisher(acl_users["publisher"], bot="b", strategy="s") as pub:
        for _ in range(5):
            await pub.signal(symbol, "buy", price=1, confidence=0.5)
    recorder = Recorder(acl_users["recorder"], url, RecorderSettings(), symbols=[symbol])
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    await async_wait_until(
        lambda: recorder.committed().get(symbol) == 5, what="5 events recorded as the recorder user"
    )
    stop.set()
    await task
