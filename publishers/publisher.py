"""`Publisher` (asyncio) and `SyncPublisher` (blocking): how bots publish events.

Each event is one EVALSHA of ``publish.lua``: seq, log entry and live message in one
atomic step. Calls of one publisher are sent in order on one pipeline, and each carries
the publisher's id and a call number, so a call retried after a lost reply is applied
once (the script answers a replay with the seqs it gave the first time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import redis
import redis.asyncio as aioredis

from publishers import keys
from publishers.config import load_settings, redact_url
from publishers.connection import TRANSIENT_ERRORS, async_client, sync_client
from publishers.errors import PublishError
from publishers.events import (
    BotStatus,
    Candle,
    Event,
    InvalidEventError,
    Signal,
    Trade,
    check_name,
    check_symbol,
    now_ms,
)
from publishers.script import (
    MAX_EVENTS_PER_CALL,
    PUBLISH_SCRIPT,
    PUBLISH_SHA,
    ScriptCall,
    ScriptResult,
    build_call,
    new_publisher_id,
    parse_result,
)

if TYPE_CHECKING:
    import pandas as pd

_PIPELINE_MAX = 256


@dataclass(slots=True)
class _Options:
    url: str
    bot: str | None
    strategy: str | None
    retry_attempts: int
    retry_timeout_s: float
    socket_timeout_s: float
    log_maxlen: int
    publisher_id: str = field(default_factory=new_publisher_id)


def _options(
    url: str | None,
    bot: str | None,
    strategy: str | None,
    retry_attempts: int | None,
    retry_timeout_s: float | None,
    log_maxlen: int | None,
) -> _Options:
    settings = load_settings().redis
    return _Options(
        url=url or settings.effective_url,
        bot=None if bot is None else check_name(bot, "bot"),
        strategy=None if strategy is None else check_name(strategy, "strategy"),
        retry_attempts=settings.publish_retry_attempts if retry_attempts is None else retry_attempts,
        retry_timeout_s=settings.publish_retry_timeout_s if retry_timeout_s is None else retry_timeout_s,
        socket_timeout_s=settings.socket_timeout_s,
        log_maxlen=settings.log_maxlen if log_maxlen is None else log_maxlen,
    )


class _EventFactory:
    """Builds validated events from the keyword API shared by both publishers."""

    def __init__(self, options: _Options) -> None:
        self._options = options
        self.symbols_used: list[str] = []

    def _identity(self, bot: str | None, strategy: str | None) -> tuple[str, str]:
        chosen_bot = bot or self._options.bot
        chosen_strategy = strategy or self._options.strategy
        if chosen_bot is None:
            raise InvalidEventError("bot", "is required: pass bot= to the publisher or to this call")
        if chosen_strategy is None:
            raise InvalidEventError(
                "strategy", "is required: pass strategy= to the publisher or to this call"
            )
        return chosen_bot, chosen_strategy

    def signal(
        self,
        symbol: str,
        type: str,
        price: float,
        confidence: float,
        ts: Any,
        meta: Any,
        bot: str | None,
        strategy: str | None,
    ) -> Signal:
        who, strat = self._identity(bot, strategy)
        return Signal(
            symbol=symbol,
            ts=now_ms() if ts is None else ts,
            bot=who,
            strategy=strat,
            type=type,
            price=price,
            confidence=confidence,
            meta=meta,
        )

    def trade(
        self,
        symbol: str,
        side: str,
        action: str,
        price: float,
        qty: float,
        position: str,
        fee: float,
        pnl: float | None,
        ts: Any,
        meta: Any,
        bot: str | None,
        strategy: str | None,
    ) -> Trade:
        who, strat = self._identity(bot, strategy)
        return Trade(
            symbol=symbol,
            ts=now_ms() if ts is None else ts,
            bot=who,
            strategy=strat,
            side=side,
            action=action,
            price=price,
            qty=qty,
            position=position,
            fee=fee,
            pnl=pnl,
            meta=meta,
        )

    def status(
        self,
        status: str,
        symbol: str | None,
        equity: float | None,
        meta: Any,
        bot: str | None,
        strategy: str | None,
    ) -> list[BotStatus]:
        who, strat = self._identity(bot, strategy)
        symbols = [check_symbol(symbol)] if symbol is not None else list(self.symbols_used)
        ts = now_ms()
        events = [
            BotStatus(symbol=s, ts=ts, bot=who, strategy=strat, status=status, equity=equity, meta=meta)
            for s in symbols
        ]
        if not events:  # validate even when there is no symbol to publish on
            BotStatus(symbol="X", ts=ts, bot=who, strategy=strat, status=status, equity=equity, meta=meta)
        return events

    def note_symbol(self, symbol: str) -> None:
        if symbol not in self.symbols_used:
            self.symbols_used.append(symbol)


def _registry_updates(events: Sequence[Event], seen: dict[str, set[str]]) -> dict[str, str]:
    """Registry entries (bot -> JSON) for the last status of each bot among ``events``."""
    latest: dict[str, BotStatus] = {}
    for event in events:
        if isinstance(event, BotStatus):
            latest[event.bot] = event
            seen.setdefault(event.bot, set()).add(event.symbol)
    return {bot: _registry_entry(event, seen[bot]) for bot, event in latest.items()}


def _registry_entry(event: BotStatus, symbols: Iterable[str]) -> str:
    return json.dumps(
        {
            "bot": event.bot,
            "strategy": event.strategy,
            "status": event.status,
            "equity": event.equity,
            "ts": event.ts,
            "symbols": sorted(set(symbols)),
        },
        separators=(",", ":"),
    )


def _group_calls(events: Sequence[Event], options: _Options, next_number: Any) -> list[ScriptCall]:
    """Consecutive events of one symbol become one script call (at most MAX_EVENTS_PER_CALL)."""
    calls: list[ScriptCall] = []
    run: list[str] = []
    run_symbol: str | None = None
    for event in events:
        if event.symbol != run_symbol or len(run) >= MAX_EVENTS_PER_CALL:
            if run_symbol is not None:
                calls.append(_call(run_symbol, run, options, next_number()))
            run, run_symbol = [], event.symbol
        run.append(event.body())
    if run_symbol is not None:
        calls.append(_call(run_symbol, run, options, next_number()))
    return calls


def _call(symbol: str, bodies: list[str], options: _Options, number: int) -> ScriptCall:
    return build_call(
        symbol, bodies, publisher_id=options.publisher_id, call_number=number, log_maxlen=options.log_maxlen
    )


def _publish_failed(options: _Options, attempts: int, exc: BaseException) -> PublishError:
    return PublishError(
        f"could not publish to Redis at {redact_url(options.url)} after {attempts} attempt(s) "
        f"within {options.retry_timeout_s:g}s: {exc}"
    )


def _is_noscript(result: object) -> bool:
    return isinstance(result, redis.exceptions.NoScriptError)


def _check_reply(options: _Options, result: object) -> ScriptResult:
    if isinstance(result, BaseException):
        raise PublishError(f"Redis at {redact_url(options.url)} refused the publish script: {result}")
    return parse_result(result)


class Publisher:
    """Publish events to signalpush from asyncio code.

    ``url`` defaults to ``$SIGNALPUSH_REDIS_URL``, then the config's ``redis.url``, then
    the embedded server's address. ``bot`` and ``strategy`` are the defaults of every
    call. With ``heartbeat_s`` set, ``status()`` is re-published every ``heartbeat_s``
    seconds in the background (the last status given, ``active`` at first).

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
        retry_attempts: int | None = None,
        retry_timeout_s: float | None = None,
        log_maxlen: int | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self._options = _options(url, bot, strategy, retry_attempts, retry_timeout_s, log_maxlen)
        self._events = _EventFactory(self._options)
        self._redis: aioredis.Redis | None = None
        self._call_number = 0
        self._pending: list[tuple[ScriptCall, asyncio.Future[ScriptResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat_s = heartbeat_s
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_status = "active"
        self._bot_symbols: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return (
            f"Publisher(url={redact_url(self._options.url)!r}, bot={self._options.bot!r}, "
            f"strategy={self._options.strategy!r})"
        )

    @property
    def url(self) -> str:
        return self._options.url

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Open the connection (publishing also connects on first use) and start the heartbeat."""
        self._client()
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
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

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

        Returns the seq of the last status event published (0 if there was no symbol yet).
        """
        events = self._events.status(status, symbol, equity, meta, bot, strategy)
        self._last_status = status
        seqs = await self.publish_many(events)
        return seqs[-1] if seqs else 0

    async def publish(self, event: Event) -> int:
        """Publish one already-built event; returns its seq."""
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Sequence[Event]) -> list[int]:
        """Publish events in order (consecutive events of a symbol share one script call).

        Bot status events also update the bot registry.
        """
        calls = _group_calls(events, self._options, self._next_number)
        futures = [self._enqueue(call) for call in calls]
        results = await asyncio.gather(*futures)
        for event in events:
            self._events.note_symbol(event.symbol)
        registry = _registry_updates(events, self._bot_symbols)
        if registry:
            await self._run(lambda r: r.hset(keys.BOTS_KEY, mapping=registry))
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

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = async_client(
                self._options.url,
                socket_timeout_s=self._options.socket_timeout_s,
                name=f"signalpush-publisher-{self._options.publisher_id}",
            )
        return self._redis

    def _enqueue(self, call: ScriptCall) -> asyncio.Future[ScriptResult]:
        future: asyncio.Future[ScriptResult] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="signalpush-publish")
        return future

    async def _flush(self) -> None:
        # One task sends everything queued, in order, so call numbers reach Redis in order.
        while self._pending:
            batch, self._pending = self._pending[:_PIPELINE_MAX], self._pending[_PIPELINE_MAX:]
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
        results: list[ScriptResult] = await self._run(lambda r: self._send(r, calls))
        return results

    async def _send(self, client: aioredis.Redis, calls: list[ScriptCall]) -> list[ScriptResult]:
        for _ in range(2):
            async with client.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
                replies = await pipe.execute(raise_on_error=False)
            if not any(_is_noscript(reply) for reply in replies):
                return [_check_reply(self._options, reply) for reply in replies]
            # Redis restarted and forgot the script: load it and send again (replays are deduplicated).
            await client.script_load(PUBLISH_SCRIPT)
        raise PublishError("Redis keeps forgetting the publish script (NOSCRIPT twice)")

    async def _run(self, operation: Any) -> Any:
        deadline = time.monotonic() + self._options.retry_timeout_s
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation(self._client())
            except TRANSIENT_ERRORS as exc:
                remaining = deadline - time.monotonic()
                if attempt > self._options.retry_attempts or remaining <= 0:
                    raise _publish_failed(self._options, attempt, exc) from exc
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)
            except redis.RedisError as exc:
                raise PublishError(f"Redis at {redact_url(self._options.url)} refused: {exc}") from exc

    async def _beat(self, interval_s: float) -> None:
        while True:
            with contextlib.suppress(PublishError):
                await self.status(self._last_status)
            await asyncio.sleep(interval_s)


class SyncPublisher:
    """The blocking twin of :class:`Publisher` for plain-Python bots (thread-safe).

    Same methods and arguments, without ``await``; use it as a context manager or call
    :meth:`close`. ``heartbeat_s`` runs the status heartbeat on a daemon thread.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        bot: str | None = None,
        strategy: str | None = None,
        retry_attempts: int | None = None,
        retry_timeout_s: float | None = None,
        log_maxlen: int | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self._options = _options(url, bot, strategy, retry_attempts, retry_timeout_s, log_maxlen)
        self._events = _EventFactory(self._options)
        self._redis: redis.Redis | None = None
        self._lock = threading.RLock()
        self._call_number = 0
        self._last_status = "active"
        self._stop = threading.Event()
        self._bot_symbols: dict[str, set[str]] = {}
        self._heartbeat: threading.Thread | None = None
        if heartbeat_s:
            self._heartbeat = threading.Thread(
                target=self._beat, args=(heartbeat_s,), name="signalpush-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def __repr__(self) -> str:
        return (
            f"SyncPublisher(url={redact_url(self._options.url)!r}, bot={self._options.bot!r}, "
            f"strategy={self._options.strategy!r})"
        )

    @property
    def url(self) -> str:
        return self._options.url

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the heartbeat and close the connection."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        with self._lock:
            if self._redis is not None:
                self._redis.close()
                self._redis = None

    def signal(
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
        return self.publish(self._events.signal(symbol, type, price, confidence, ts, meta, bot, strategy))

    def trade(
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
        return self.publish(
            self._events.trade(symbol, side, action, price, qty, position, fee, pnl, ts, meta, bot, strategy)
        )

    def candle(
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
        """Publish a candle; returns its seq."""
        return self.publish(
            Candle(symbol=symbol, ts=ts, tf=tf, open=open, high=high, low=low, close=close, volume=volume)
        )

    def status(
        self,
        status: str,
        *,
        symbol: str | None = None,
        equity: float | None = None,
        meta: dict[str, Any] | None = None,
        bot: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Publish the bot's status (see :meth:`Publisher.status`); returns the last seq or 0."""
        events = self._events.status(status, symbol, equity, meta, bot, strategy)
        self._last_status = status
        seqs = self.publish_many(events)
        return seqs[-1] if seqs else 0

    def publish(self, event: Event) -> int:
        """Publish one already-built event; returns its seq."""
        return self.publish_many([event])[0]

    def publish_many(self, events: Sequence[Event]) -> list[int]:
        """Publish events in order; returns their seqs."""
        with self._lock:
            calls = _group_calls(events, self._options, self._next_number)
            seqs: list[int] = []
            for start in range(0, len(calls), _PIPELINE_MAX):
                chunk = calls[start : start + _PIPELINE_MAX]
                results: list[ScriptResult] = self._run(lambda r, chunk=chunk: self._send(r, chunk))
                seqs.extend(seq for result in results for seq in result.seqs)
            for event in events:
                self._events.note_symbol(event.symbol)
            registry = _registry_updates(events, self._bot_symbols)
            if registry:
                self._run(lambda r: r.hset(keys.BOTS_KEY, mapping=registry))
            return seqs

    def publish_frame(
        self, frame: pd.DataFrame, *, kind: str | None = None, symbol: str | None = None
    ) -> list[int]:
        """Publish a DataFrame of candles, signals or trades in row order; returns their seqs."""
        from publishers.frames import events_from_frame

        events = events_from_frame(
            frame, kind=kind, symbol=symbol, bot=self._options.bot, strategy=self._options.strategy
        )
        return self.publish_many(events)

    def _next_number(self) -> int:
        self._call_number += 1
        return self._call_number

    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = sync_client(
                self._options.url,
                socket_timeout_s=self._options.socket_timeout_s,
                name=f"signalpush-publisher-{self._options.publisher_id}",
            )
        return self._redis

    def _send(self, client: redis.Redis, calls: list[ScriptCall]) -> list[ScriptResult]:
        for _ in range(2):
            with client.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
                replies = pipe.execute(raise_on_error=False)
            if not any(_is_noscript(reply) for reply in replies):
                return [_check_reply(self._options, reply) for reply in replies]
            client.script_load(PUBLISH_SCRIPT)
        raise PublishError("Redis keeps forgetting the publish script (NOSCRIPT twice)")

    def _run(self, operation: Any) -> Any:
        with self._lock:
            deadline = time.monotonic() + self._options.retry_timeout_s
            delay = 0.05
            attempt = 0
            while True:
                attempt += 1
                try:
                    return operation(self._client())
                except TRANSIENT_ERRORS as exc:
                    remaining = deadline - time.monotonic()
                    if attempt > self._options.retry_attempts or remaining <= 0:
                        raise _publish_failed(self._options, attempt, exc) from exc
                    self._stop.wait(min(delay, remaining))
                    delay = min(delay * 2, 2.0)
                except redis.RedisError as exc:
                    raise PublishError(f"Redis at {redact_url(self._options.url)} refused: {exc}") from exc

    def _beat(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            with contextlib.suppress(PublishError):
                self.status(self._last_status)
