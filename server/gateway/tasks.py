"""Long-running tasks of a process (the bus, housekeeping, the recorder), restarted if they end.

Such a task runs until it is stopped; if it returns or raises, that is a bug: it is
logged with its traceback, counted, shown as down (``/healthz`` answers 503 naming it),
and started again after a backoff that doubles from ``backoff_s`` to ``max_backoff_s``
with full jitter (publishers/backoff.py; back to the start once it has run for
``healthy_after_s``), so a crash loop does not spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from publishers.backoff import Backoff, Retries

log = logging.getLogger(__name__)


class SupervisedTask:
    """Run ``factory()`` (a fresh coroutine each time) until :meth:`stop`, restarting it when it ends."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Coroutine[Any, Any, Any]],
        *,
        on_restart: Callable[[str], None] | None = None,
        backoff_s: float = 0.1,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
    ) -> None:
        self.name = name
        self.on_restart = on_restart
        self._factory = factory
        #: Restarts since the task last ran for ``healthy_after_s`` (their waits: full jitter).
        self.retries = Retries(Backoff(first_s=backoff_s, max_s=max_backoff_s))
        self._healthy_after_s = healthy_after_s
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Task[Any] | None = None
        self._stopping = False
        self.restarts = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"SupervisedTask({self.name!r}, up={self.up}, restarts={self.restarts})"

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def up(self) -> bool:
        """Running now (False while it waits to be restarted, and once stopped)."""
        return self._current is not None and not self._current.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"signalpush-{self.name}-supervisor")

    async def stop(self, timeout_s: float = 0.0) -> None:
        """Stop restarting; give the running coroutine ``timeout_s`` to return on its own, then cancel it."""
        self._stopping = True
        current = self._current
        if current is not None and not current.done() and timeout_s > 0:
            try:
                await asyncio.wait_for(asyncio.shield(current), timeout_s)
            except TimeoutError:
                log.warning("task did not stop in time; cancelling it", extra={"task": self.name})
            except (asyncio.CancelledError, Exception):
                pass  # it ended anyway: nothing more to wait for
        for task in (self._current, self._task):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._current, self._task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _supervise(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            self._current = asyncio.create_task(self._factory(), name=f"signalpush-{self.name}")
            try:
                await asyncio.shield(self._current)
            except asyncio.CancelledError:
                if self._current.done() and not self.stopping:
                    self._ended(None)  # the task cancelled itself: a bug like any other
                else:
                    raise
            except Exception as exc:
                self._ended(exc)
            else:
                if self.stopping:
                    return
                self._ended(None)
            if time.monotonic() - started >= self._healthy_after_s:
                self.retries.succeeded()
            await self.retries.wait()

    def _ended(self, exc: BaseException | None) -> None:
        self.restarts += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if exc is not None else "returned"
        log.error(
            "task ended unexpectedly; restarting it",
            exc_info=exc,
            extra={"task": self.name, "restarts": self.restarts},
        )
        if self.on_restart is not None:
            self.on_restart(self.name)
