"""History builds within budgets, off the gateway's event loop.

A history window with a figure is the one request whose cost is out of proportion to its
size: a 40-byte frame asks for seconds of CPU, hundreds of MiB and a multi-MiB answer.
Bounds (docs/protocol.md "History budget"):

* per connection: its catch-ups run one at a time (:class:`~server.gateway.session.Session`), so
  one connection has at most one build and one history frame in flight;
* per process: at most ``history.workers`` builds at once (one when built in-process);
  at most ``history.max_waiting`` requests wait for one, later ones get ``error busy``
  (HTTP 503); and no build starts while the history frames built and not yet sent pass
  ``history.max_bytes_in_flight``;
* the builds run in worker processes (:mod:`server.gateway.build_worker`), so the loop only
  sends finished bytes; a pool idle for ``POOL_IDLE_S`` is shut down (its memory returned;
  a worker also calls ``malloc_trim`` after each build).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final

from server.core.filters import EventFilter
from server.errors import ProtocolError, StoreError
from server.gateway import build_worker as history_worker
from server.gateway.build_worker import BuiltWindow, Failure, window_body
from server.gateway.metrics import GatewayMetrics
from server.history.source import HistorySource, Window
from server.settings import HistorySettings

log = logging.getLogger(__name__)

#: Seconds without a build after which the worker processes are stopped.
POOL_IDLE_S: Final = 30.0

FigureBuilder = Callable[[str, Window], Awaitable[dict[str, Any] | None]]


class HistoryBudget:
    """Build slots (FIFO), a cap on waiting requests, and the bytes of history frames in flight."""

    def __init__(
        self, builds: int, max_waiting: int, max_bytes: int, metrics: GatewayMetrics | None = None
    ) -> None:
        self.metrics = metrics
        self.builds = builds
        self.max_waiting = max_waiting
        self.max_bytes = max_bytes
        self.running = 0
        self.bytes_in_flight = 0
        self.busy_total = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    def _free(self) -> bool:
        return self.running < self.builds and self.bytes_in_flight < self.max_bytes

    def admit(self) -> None:
        """ProtocolError(busy) when ``max_waiting`` requests already wait for a build.

        Asked of new requests (a subscribe with history, an HTTP history or figure), before
        anything is set up for them; a subscription's later catch-ups (after a reset) wait.
        """
        if self.waiting >= self.max_waiting:
            self.busy_total += 1
            if self.metrics is not None:
                self.metrics.history_busy += 1
            raise ProtocolError(
                "busy", f"history: {self.waiting} history requests are waiting; retry in a moment"
            )

    async def acquire(self) -> None:
        """Wait for a build slot (first come, first served)."""
        if not self._waiters and self._free():
            self.running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as it was cancelled: pass the slot on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self) -> None:
        self.running -= 1
        self._wake()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def hold(self, size: int) -> None:
        """A history frame of ``size`` bytes is being sent."""
        self.bytes_in_flight += size

    def drop(self, size: int) -> None:
        """That frame is sent (or its connection gone): its bytes are free again."""
        self.bytes_in_flight -= size
        self._wake()

    def gauges(self) -> dict[str, tuple[float, str]]:
        """For /metrics: builds running, requests waiting, bytes in flight."""
        return {
            "history_builds": (self.running, "History builds running"),
            "history_waiting": (self.waiting, "History requests waiting for a build"),
            "history_bytes_in_flight": (
                self.bytes_in_flight,
                "Bytes of history frames built and not yet sent",
            ),
        }

    def _wake(self) -> None:
        while self._waiters and self._free():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.running += 1
                waiter.set_result(None)


class WorkerPool:
    """The history worker processes, started on first use and stopped when idle."""

    def __init__(self, redis_url: str, database_url: str, settings: HistorySettings) -> None:
        self._args = (redis_url, database_url, settings, os.getpid())
        self._size = settings.workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.last_used = time.monotonic()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        if self._pool is None:
            # spawn, not fork: the gateway has threads (and a running loop) that a fork would copy.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._size,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=history_worker.init_worker,
                initargs=self._args,
            )
        self.last_used = time.monotonic()
        return self._pool.submit(fn, *args)

    @property
    def started(self) -> bool:
        return self._pool is not None

    def pids(self) -> list[int]:
        """Process ids of the running workers (for tests and the bench)."""
        processes = self._pool._processes if self._pool is not None else None
        return [process.pid for process in (processes or {}).values() if process.pid is not None]

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class HistoryBuilds:
    """Builds history windows and API bodies within ``budget``: in worker processes when
    ``pool`` is given, else on this process (``source`` and ``figure``; tests, no database)."""

    def __init__(
        self,
        budget: HistoryBudget,
        pool: WorkerPool | None,
        source: HistorySource,
        figure: FigureBuilder,
    ) -> None:
        self.budget = budget
        self.pool = pool
        self.source = source
        self.figure = figure

    @classmethod
    def create(
        cls,
        settings: HistorySettings,
        *,
        redis_url: str,
        database_url: str | None,
        source: HistorySource,
        figure: FigureBuilder,
        metrics: GatewayMetrics | None = None,
    ) -> HistoryBuilds:
        """Worker processes when ``history.workers`` > 0 and there is a database, else in-process."""
        pool = None
        if settings.workers > 0 and database_url is not None:
            pool = WorkerPool(redis_url, database_url, settings)
        builds = settings.workers if pool is not None else 1
        budget = HistoryBudget(builds, settings.max_waiting, settings.max_bytes_in_flight, metrics)
        return cls(budget, pool, source, figure)

    async def window(
        self, symbol: str, flt: EventFilter, *, minutes: int, max_points: int, figure: bool
    ) -> BuiltWindow:
        """A subscription's history window (with its figure when asked), encoded."""
        if self.pool is not None:
            built: BuiltWindow = await self.call(
                history_worker.build_window, symbol, flt, minutes, max_points, figure
            )
            return built
        async with self.budget.slot():
            window = await self.source.window(symbol, flt, minutes=minutes, max_points=max_points)
            shown = await self.figure(symbol, window) if figure else None
            body = await asyncio.to_thread(_inline_body, window.data, shown)
            return BuiltWindow(window.epoch, window.to_seq, window.truncated, window.omitted, body)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker process, holding a build slot until the worker is done with it
        (also when the caller is cancelled: an abandoned build still occupies its worker)."""
        assert self.pool is not None
        await self.budget.acquire()
        loop = asyncio.get_running_loop()
        try:
            future = self.pool.submit(fn, *args)
        except BaseException:
            self.budget.release()
            raise

        def done(_: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self.budget.release)

        future.add_done_callback(done)
        try:
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self.pool.stop()  # the next build starts fresh workers
            raise StoreError("the history worker process died; retry") from None
        if isinstance(result, Failure):
            if result.kind == "bug":
                log.warning("history build failed", extra={"error": result.message[:300]})
            raise result.error()
        return result

    def tidy(self, now: float) -> None:
        """Stop the worker processes after POOL_IDLE_S without a build (their memory goes back)."""
        pool = self.pool
        if (
            pool is not None
            and pool.started
            and self.budget.running == 0
            and now - pool.last_used > POOL_IDLE_S
        ):
            pool.stop()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()


def _inline_body(data: Any, figure: dict[str, Any] | None) -> bytes:
    body = window_body("", data, 0, False)
    if figure is not None:
        body += b',"figure":' + history_worker.encode(figure)
    return body
