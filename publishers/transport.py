"""The Redis calls a publisher makes, asyncio or blocking, behind one set of ``async`` methods.

:class:`~publishers.Publisher` is written once, against :class:`Transport`. With
:class:`AsyncTransport` it runs on the caller's event loop. With :class:`BlockingTransport`
every method does blocking I/O and returns without ever suspending, so the same coroutines
complete on their first step: :func:`drive` runs them without an event loop. That is how
:class:`~publishers.SyncPublisher` delegates to ``Publisher`` instead of copying it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio as aioredis

from publishers.connection import async_client, sync_client
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, ScriptCall

T = TypeVar("T")


class Transport(Protocol):
    """What a publisher asks of Redis (and of time), asyncio or blocking."""

    async def pipeline(self, calls: Sequence[ScriptCall]) -> list[object]:
        """EVALSHA every call in one round trip; errors come back as values, in order."""
        ...

    async def evalsha(self, call: ScriptCall) -> object: ...

    async def script_load(self) -> None: ...

    async def info(self) -> dict[str, Any]: ...

    async def sadd(self, key: str, members: Sequence[str]) -> None: ...

    async def hset(self, key: str, mapping: Mapping[str, str]) -> None: ...

    async def hget(self, key: str, field: str) -> object: ...

    async def hsetnx(self, key: str, field: str, value: str) -> bool: ...

    async def incr(self, key: str) -> int: ...

    async def sleep(self, seconds: float) -> None: ...

    async def each(self, coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
        """Run the coroutines (side by side when the transport can)."""
        ...

    async def close(self) -> None: ...


class AsyncTransport:
    """Redis through ``redis.asyncio`` on the running event loop."""

    def __init__(self, url: str, *, socket_timeout_s: float, name: str) -> None:
        self._url, self._timeout, self._name = url, socket_timeout_s, name
        self._client: aioredis.Redis | None = None

    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = async_client(self._url, socket_timeout_s=self._timeout, name=self._name)
        return self._client

    async def pipeline(self, calls: Sequence[ScriptCall]) -> list[object]:
        async with self.client().pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
            replies: list[object] = await pipe.execute(raise_on_error=False)
        return replies

    async def evalsha(self, call: ScriptCall) -> object:
        reply: object = await self.client().evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
        return reply

    async def script_load(self) -> None:
        await self.client().script_load(PUBLISH_SCRIPT)

    async def info(self) -> dict[str, Any]:
        reply: dict[str, Any] = await self.client().info("server")
        return reply

    async def sadd(self, key: str, members: Sequence[str]) -> None:
        await self.client().sadd(key, *members)

    async def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        await self.client().hset(key, mapping=dict(mapping))  # type: ignore[arg-type]

    async def hget(self, key: str, field: str) -> object:
        reply: object = await self.client().hget(key, field)
        return reply

    async def hsetnx(self, key: str, field: str, value: str) -> bool:
        return bool(await self.client().hsetnx(key, field, value))

    async def incr(self, key: str) -> int:
        return int(await self.client().incr(key))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def each(self, coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
        await asyncio.gather(*coroutines)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class BlockingTransport:
    """Redis through blocking ``redis-py``: its methods never suspend (see :func:`drive`).

    ``stop`` cuts a retry's wait short (the publisher is closing).
    """

    def __init__(
        self, url: str, *, socket_timeout_s: float, name: str, stop: threading.Event | None = None
    ) -> None:
        self._url, self._timeout, self._name = url, socket_timeout_s, name
        self._client: redis.Redis | None = None
        self.stop = stop or threading.Event()

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = sync_client(self._url, socket_timeout_s=self._timeout, name=self._name)
        return self._client

    async def pipeline(self, calls: Sequence[ScriptCall]) -> list[object]:
        with self.client().pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
            replies: list[object] = pipe.execute(raise_on_error=False)
        return replies

    async def evalsha(self, call: ScriptCall) -> object:
        reply: object = self.client().evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
        return reply

    async def script_load(self) -> None:
        self.client().script_load(PUBLISH_SCRIPT)

    async def info(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.client().info("server")
        return reply

    async def sadd(self, key: str, members: Sequence[str]) -> None:
        self.client().sadd(key, *members)

    async def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        self.client().hset(key, mapping=dict(mapping))  # type: ignore[arg-type]

    async def hget(self, key: str, field: str) -> object:
        reply: object = self.client().hget(key, field)
        return reply

    async def hsetnx(self, key: str, field: str, value: str) -> bool:
        return bool(self.client().hsetnx(key, field, value))

    async def incr(self, key: str) -> int:
        return int(self.client().incr(key))

    async def sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    async def each(self, coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
        for coroutine in coroutines:
            await coroutine

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (one on a :class:`BlockingTransport`) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a blocking publisher's coroutine suspended: it awaited something not blocking")
