"""`SyncPublisher`: the blocking twin of :class:`publishers.Publisher` for plain-Python bots.

It is not a copy: each method runs ``Publisher``'s own coroutine on a blocking transport
(:mod:`publishers.transport`), where it completes without an event loop, under a lock that
makes the publisher safe to share between threads. Only the heartbeat (a thread instead
of a task) is its own.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from publishers.calls import PIPELINE_MAX
from publishers.errors import PublishError
from publishers.options import PublisherOptions, redact_url
from publishers.publisher import Publisher
from publishers.script import ScriptCall, ScriptResult
from publishers.transport import BlockingTransport, Transport, drive

P = ParamSpec("P")
T = TypeVar("T")


class _BlockingPublisher(Publisher):
    """``Publisher`` on a blocking transport: its coroutines never suspend."""

    def __init__(self, *args: Any, stop: threading.Event, **kwargs: Any) -> None:
        self._stop = stop
        super().__init__(*args, **kwargs)

    def _make_transport(self) -> Transport:
        return BlockingTransport(
            self._options.url,
            socket_timeout_s=self._options.socket_timeout_s,
            name=f"signalpush-publisher-{self._options.publisher_id}",
            stop=self._stop,
        )

    async def _send_all(self, calls: list[ScriptCall]) -> list[ScriptResult]:
        # No queue: the caller holds the lock, so the calls are sent here, in order.
        results: list[ScriptResult] = []
        for start in range(0, len(calls), PIPELINE_MAX):
            results += await self._send_with_retry(calls[start : start + PIPELINE_MAX])
        return results


def _blocking(
    method: Callable[Concatenate[Publisher, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncPublisher, P], T]:
    """The blocking twin of a ``Publisher`` method: its coroutine, driven under the lock."""

    @functools.wraps(method)
    def blocking(self: SyncPublisher, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            return drive(method(self._publisher, *args, **kwargs))

    blocking.__qualname__ = f"SyncPublisher.{method.__name__}"
    return blocking


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
        options: PublisherOptions | None = None,
        retry_attempts: int | None = None,
        retry_timeout_s: float | None = None,
        log_maxlen: int | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._publisher = _BlockingPublisher(
            url,
            bot=bot,
            strategy=strategy,
            options=options,
            retry_attempts=retry_attempts,
            retry_timeout_s=retry_timeout_s,
            log_maxlen=log_maxlen,
            stop=self._stop,
        )
        self._heartbeat: threading.Thread | None = None
        if heartbeat_s:
            self._heartbeat = threading.Thread(
                target=self._beat, args=(heartbeat_s,), name="signalpush-heartbeat", daemon=True
            )
            self._heartbeat.start()

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

    def __repr__(self) -> str:
        options = self._publisher._options
        return (
            f"SyncPublisher(url={redact_url(options.url)!r}, bot={options.bot!r}, "
            f"strategy={options.strategy!r})"
        )

    @property
    def url(self) -> str:
        return self._publisher.url

    @property
    def options(self) -> PublisherOptions:
        return self._publisher.options

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
        self._aclose()

    _aclose = _blocking(Publisher.aclose)
    signal = _blocking(Publisher.signal)
    trade = _blocking(Publisher.trade)
    candle = _blocking(Publisher.candle)
    status = _blocking(Publisher.status)
    publish = _blocking(Publisher.publish)
    publish_many = _blocking(Publisher.publish_many)
    publish_frame = _blocking(Publisher.publish_frame)

    def _beat(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            with contextlib.suppress(PublishError):
                self.status(self._publisher._last_status)
