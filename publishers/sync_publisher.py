"""`SyncPublisher`: the blocking twin of :class:`publishers.Publisher` for plain-Python bots."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import redis

from publishers import keys
from publishers.calls import (
    PIPELINE_MAX,
    EventFactory,
    check_reply,
    group_calls,
    is_noscript,
    make_options,
    publish_failed,
    redis_major,
    refused,
    registry_updates,
)
from publishers.connection import TRANSIENT_ERRORS, sync_client
from publishers.errors import PublishError
from publishers.events import Candle, Event
from publishers.script import PUBLISH_SCRIPT, PUBLISH_SHA, ScriptCall, ScriptResult
from server.settings import redact_url

if TYPE_CHECKING:
    import pandas as pd


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
        self._options = make_options(url, bot, strategy, retry_attempts, retry_timeout_s, log_maxlen)
        self._events = EventFactory(self._options)
        self._redis: redis.Redis | None = None
        self._lock = threading.RLock()
        self._call_number = 0
        self._last_status = "active"
        self._stop = threading.Event()
        self._bot_symbols: dict[str, set[str]] = {}
        self._registered: set[str] = set()
        self._prepared = False
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
            if self._options.cluster and not self._prepared:
                info = self._run(lambda r: r.info("server"))
                first = (
                    next(iter(info.values()))
                    if info and isinstance(next(iter(info.values())), dict)
                    else info
                )
                self._options.sharded = redis_major(first) >= 7
                self._prepared = True
            calls = group_calls(events, self._options, self._next_number)
            seqs: list[int] = []
            for start in range(0, len(calls), PIPELINE_MAX):
                chunk = calls[start : start + PIPELINE_MAX]
                results: list[ScriptResult] = self._run(lambda r, chunk=chunk: self._send(r, chunk))
                seqs.extend(seq for result in results for seq in result.seqs)
            for event in events:
                self._events.note_symbol(event.symbol)
            unregistered = {e.symbol for e in events} - self._registered
            if self._options.cluster and unregistered:
                self._run(lambda r: r.sadd(keys.SYMBOLS_KEY, *sorted(unregistered)))
                self._registered |= unregistered
            registry = registry_updates(events, self._bot_symbols)
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
        if self._options.cluster:
            # Scripts cannot be pipelined on a cluster: one call after another, in order.
            results = []
            for call in calls:
                try:
                    reply = client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
                except redis.exceptions.NoScriptError:
                    client.script_load(PUBLISH_SCRIPT)
                    reply = client.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
                results.append(check_reply(self._options, reply))
            return results
        for _ in range(2):
            with client.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.evalsha(PUBLISH_SHA, len(call.keys), *call.keys, *call.args)
                replies = pipe.execute(raise_on_error=False)
            if not any(is_noscript(reply) for reply in replies):
                return [check_reply(self._options, reply) for reply in replies]
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
                        raise publish_failed(self._options, attempt, exc) from exc
                    self._stop.wait(min(delay, remaining))
                    delay = min(delay * 2, 2.0)
                except redis.RedisError as exc:
                    raise refused(self._options, exc) from exc

    def _beat(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            with contextlib.suppress(PublishError):
                self.status(self._last_status)
