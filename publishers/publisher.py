"""`Publisher`: how asyncio bots publish events (see :mod:`publishers.calls` for the mechanics).

It is written once, against a :class:`~publishers.transport.Transport`: the blocking
:class:`~publishers.SyncPublisher` runs these same methods on a blocking transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import redis

from publishers import keys
from publishers.backoff import Backoff, RetryBudget
from publishers.calls import (
    PIPELINE_MAX,
    EventFactory,
    by_symbol,
    check_reply,
    group_calls,
    is_noscript,
    make_options,
    publish_failed,
    redis_major,
    refused,
    registry_updates,
)
from publishers.connection import TRANSIENT_ERRORS
from publishers.errors import PublishError
from publishers.events import BotStatus, Candle, Event, Signal, Trade
from publishers.options import PublisherOptions, redact_url
from publishers.registry import assign_bot_id, registry_entry
from publishers.script import ScriptCall, ScriptResult
from publishers.transport import AsyncTransport, Transport

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PUBLISH_BACKOFF", "Publisher"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Waits between a publish's tries: from 50 ms doubling up to 2 s, full jitter.
PUBLISH_BACKOFF = Backoff(first_s=0.05, max_s=2.0)


class Publisher:
    """Publish events to signalpush from asyncio code.

    ``url`` defaults to ``options.url``: ``$SIGNALPUSH_REDIS_URL``, else the embedded
    server's address; no file is read (:meth:`from_config` reads a config.yaml's ``redis``
    section). ``retry_attempts``, ``retry_timeout_s`` and ``log_maxlen`` given here override
    ``options``' (:class:`~publishers.options.PublisherOptions`). ``bot`` and ``strategy``
    are the defaults of every call. With ``heartbeat_s`` set, ``status()`` is re-published
    every ``heartbeat_s`` seconds in the background (the last status given, ``active`` at first).

    Every method validates first (raising ``ValueError`` naming the field before
    anything is sent) and returns the seq the event got. After the bounded retry
    (``retry_attempts``, ``retry_timeout_s``) a failed publish raises ``PublishError``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        bot: str | None = None,
        strategy: str | None = None,
        options: PublisherOptions | None = None,
        retry_attempts: int | None = None,
        retry_timeout_s: float | None = None,
        log_maxlen: int | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self._options = make_options(url, bot, strategy, options, retry_attempts, retry_timeout_s, log_maxlen)
        self._events = EventFactory(self._options)
        self._transport: Transport = self._make_transport()
        self._call_number = 0
        self._pending: list[tuple[ScriptCall, asyncio.Future[ScriptResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat_s = heartbeat_s
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_status = "active"
        self._bot_symbols: dict[str, set[str]] = {}
        self._bot_ids: dict[str, int | None] = {}
        self._registering = asyncio.Lock()
        self._registered: set[str] = set()
        self._prepared = False

    def __repr__(self) -> str:
        return (
            f"Publisher(url={redact_url(self._options.url)!r}, bot={self._options.bot!r}, "
            f"strategy={self._options.strategy!r})"
        )

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str],
        *,
        bot: str | None = None,
        strategy: str | None = None,
        heartbeat_s: float | None = None,
    ) -> Self:
        """A publisher with the options of the ``redis`` section of the config file at ``path``."""
        options = PublisherOptions.from_config(path)
        return cls(bot=bot, strategy=strategy, options=options, heartbeat_s=heartbeat_s)

    @property
    def url(self) -> str:
        return self._options.url

    @property
    def options(self) -> PublisherOptions:
        return self._options.config

    def _make_transport(self) -> Transport:
        return AsyncTransport(
            self._options.url,
            socket_timeout_s=self._options.socket_timeout_s,
            name=f"signalpush-publisher-{self._options.publisher_id}",
        )

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Start the heartbeat (the connection opens on first use)."""
        if self._heartbeat_s and self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(self._heartbeat_s), name="signalpush-heartbeat")

    async def aclose(self) -> None:
        """Stop the heartbeat, wait for queued publishes, close the connection."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        await self._transport.close()

    async def signal(
        self,
        symbol: str,
        type: str,
        *,
        price: float,
        confidence: float,
        ts: Any = None,
        meta: dict[str, Any] | None = None,
        bot: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Publish a buy/sell/hold signal; returns its seq."""
        return await self.publish(
            self._events.signal(symbol, type, price, confidence, ts, meta, bot, strategy)
        )

    async def trade(
        self,
        symbol: str,
        *,
        side: str,
        action: str,
        price: float,
        qty: float,
        position: str,
        fee: float = 0.0,
        pnl: float | None = None,
        ts: Any = None,
        meta: dict[str, Any] | None = None,
        bot: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Publish a trade (entry or exit of ``position``); returns its seq."""
        event = self._events.trade(
            symbol, side, action, price, qty, position, fee, pnl, ts, meta, bot, strategy
        )
        return await self.publish(event)

    async def candle(
        self,
        symbol: str,
        *,
        ts: Any,
        tf: str,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> int:
        """Publish a candle (same ts as the last one = an update of the live candle); returns its seq."""
        event = Candle(symbol=symbol, ts=ts, tf=tf, open=open, high=high, low=low, close=close, volume=volume)
        return await self.publish(event)

    async def status(
        self,
        status: str,
        *,
        symbol: str | None = None,
        equity: float | None = None,
        meta: dict[str, Any] | None = None,
        bot: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Publish the bot's status on ``symbol`` (else on every symbol used so far) and in the registry.

        Without any symbol yet (a bot that says ``active`` when it starts) the status goes to the
        registry alone, from where the recorders copy it into SQL. Returns the seq of the last
        status event published (0 if there was no symbol yet).
        """
        events = self._events.status(status, symbol, equity, meta, bot, strategy)
        self._last_status = status
        if not events:
            bare = self._events.bare_status(status, equity, meta, bot, strategy)
            await self._register_bots([bare.bot])
            entry = registry_entry(
                bot=bare.bot,
                strategy=bare.strategy,
                status=bare.status,
                equity=bare.equity,
                ts=bare.ts,
                symbols=self._bot_symbols.get(bare.bot, ()),
                bot_id=self._bot_ids.get(bare.bot),
            )
            await self._run(lambda t: t.hset(keys.BOTS_KEY, {bare.bot: entry}))
            return 0
        seqs = await self.publish_many(events)
        return seqs[-1] if seqs else 0

    @property
    def bot_ids(self) -> dict[str, int | None]:
        """The registry ids of the bots this publisher has published for (name -> id)."""
        return dict(self._bot_ids)

    async def _register_bots(self, names: Iterable[str]) -> None:
        """Give each new bot name its stable id (publishers/registry.py), once per publisher.

        One registration at a time: a thousand publishes started at once for a new bot make
        one round trip, not a thousand (which would exhaust the connection pool). The events
        are published already: a registry that refuses (a Redis user made before the ids
        existed lacks the grants: re-run ``signalpush acl``) costs the id, not the publish.
        """
        if not set(names) - self._bot_ids.keys():
            return
        async with self._registering:
            for name in sorted(set(names) - self._bot_ids.keys()):
                try:
                    self._bot_ids[name] = await self._run(_assigner(name))
                except PublishError as exc:
                    log.warning("bot %r got no registry id (publishing goes on): %s", name, exc)
                    self._bot_ids[name] = None

    async def publish(self, event: Event) -> int:
        """Publish one already-built event; returns its seq."""
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Sequence[Event]) -> list[int]:
        """Publish events in order (consecutive events of a symbol share one script call).

        Bot status events also update the bot registry.
        """
        if self._options.cluster and not self._prepared:
            await self._prepare_cluster()
        calls = group_calls(events, self._options, self._next_number)
        results = await self._send_all(calls)
        for event in events:
            self._events.note_symbol(event.symbol)
        unregistered = sorted({e.symbol for e in events} - self._registered)
        if self._options.cluster and unregistered:
            await self._run(lambda t: t.sadd(keys.SYMBOLS_KEY, unregistered))
            self._registered.update(unregistered)
        await self._register_bots(
            sorted({e.bot for e in events if isinstance(e, Signal | Trade | BotStatus)})
        )
        registry = registry_updates(events, self._bot_symbols, self._bot_ids)
        if registry:
            await self._run(lambda t: t.hset(keys.BOTS_KEY, registry))
        return [seq for result in results for seq in result.seqs]

    async def publish_frame(
        self, frame: pd.DataFrame, *, kind: str | None = None, symbol: str | None = None
    ) -> list[int]:
        """Publish a DataFrame of candles, signals or trades in row order; returns their seqs.

        Every row is validated before anything is sent. See :func:`publishers.frames.events_from_frame`.
        """
        from publishers.frames import events_from_frame

        events = events_from_frame(
            frame, kind=kind, symbol=symbol, bot=self._options.bot, strategy=self._options.strategy
        )
        return await self.publish_many(events)

    def _next_number(self) -> int:
        self._call_number += 1
        return self._call_number

    async def _send_all(self, calls: list[ScriptCall]) -> list[ScriptResult]:
        # Concurrent publishes share script pipelines: calls are queued and one task sends them.
        return await asyncio.gather(*(self._enqueue(call) for call in calls))

    def _enqueue(self, call: ScriptCall) -> asyncio.Future[ScriptResult]:
        future: asyncio.Future[ScriptResult] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="signalpush-publish")
        return future

    async def _flush(self) -> None:
        # One task sends everything queued, in order, so call numbers reach Redis in order.
        while self._pending:
            batch, self._pending = self._pending[:PIPELINE_MAX], self._pending[PIPELINE_MAX:]
            try:
                results = await self._send_with_retry([call for call, _ in batch])
            except PublishError as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)

    async def _send_with_retry(self, calls: list[ScriptCall]) -> list[ScriptResult]:
        return await self._run(lambda t: self._send(t, calls))

    async def _prepare_cluster(self) -> None:
        info = await self._run(lambda t: t.info())
        self._options.sharded = redis_major(info) >= 7
        self._prepared = True

    async def _send(self, transport: Transport, calls: list[ScriptCall]) -> list[ScriptResult]:
        if self._options.cluster:
            return await self._send_cluster(transport, calls)
        for _ in range(2):
            replies = await transport.pipeline(calls)
            if not any(is_noscript(reply) for reply in replies):
                return [check_reply(self._options, reply) for reply in replies]
            # Redis restarted and forgot the script: load it and send again (replays are deduplicated).
            await transport.script_load()
        raise PublishError("Redis keeps forgetting the publish script (NOSCRIPT twice)")

    async def _send_cluster(self, transport: Transport, calls: list[ScriptCall]) -> list[ScriptResult]:
        # Scripts cannot be pipelined on a cluster: each symbol's calls go one after another
        # (their call numbers must reach its slot in order), symbols side by side.
        results: dict[int, ScriptResult] = {}
        index = {id(call): i for i, call in enumerate(calls)}

        async def run_symbol(symbol_calls: list[ScriptCall]) -> None:
            for call in symbol_calls:
                try:
                    reply = await transport.evalsha(call)
                except redis.exceptions.NoScriptError:
                    await transport.script_load()
                    reply = await transport.evalsha(call)
                results[index[id(call)]] = check_reply(self._options, reply)

        await transport.each([run_symbol(group) for group in by_symbol(calls).values()])
        return [results[i] for i in range(len(calls))]

    async def _run(self, operation: Callable[[Transport], Awaitable[T]]) -> T:
        """``operation`` on the transport, retried on transient errors within the retry budget."""
        budget = RetryBudget(self._options.retry_attempts, self._options.retry_timeout_s, PUBLISH_BACKOFF)
        while True:
            try:
                return await operation(self._transport)
            except TRANSIENT_ERRORS as exc:
                delay = budget.next_delay()
                if delay is None:
                    raise publish_failed(self._options, budget.tries, exc) from exc
                await self._transport.sleep(delay)
            except redis.RedisError as exc:
                raise refused(self._options, exc) from exc

    async def _beat(self, interval_s: float) -> None:
        while True:
            with contextlib.suppress(PublishError):
                await self.status(self._last_status)
            await asyncio.sleep(interval_s)


def _assigner(bot: str) -> Callable[[Transport], Awaitable[int | None]]:
    async def assign(transport: Transport) -> int | None:
        return await assign_bot_id(transport, bot)

    return assign
