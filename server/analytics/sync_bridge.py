"""Blocking twins of async code: one private event loop on a background thread.

Sync entry points (a plain Dash callback, a notebook cell, a script) must not call
``asyncio.run`` per call: pooled database connections belong to the loop that opened
them, and a notebook already runs a loop. So every sync call is handed to one
long-lived loop on a daemon thread, and its engines live there.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class BackgroundLoop:
    """An event loop running forever on its own daemon thread; :meth:`run` blocks on a coroutine."""

    def __init__(self, name: str = "signalpush-sync") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the private loop and return its result (blocking the caller)."""
        if self.in_loop_thread():
            coroutine.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop thread (use the async method)")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    async def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on the private loop from another loop."""
        if self.in_loop_thread():
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def on_shutdown(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Await ``closer`` on the loop before the interpreter exits (e.g. an engine's dispose)."""
        self._closers.append(closer)

    def forget(self, closer: Callable[[], Awaitable[None]]) -> None:
        if closer in self._closers:
            self._closers.remove(closer)

    def shutdown(self) -> None:
        """Run the registered closers, then stop the loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        closers, self._closers = self._closers, []

        async def close_all() -> None:
            for closer in closers:
                try:
                    await closer()
                except Exception:
                    pass

        asyncio.run_coroutine_threadsafe(close_all(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class OnBackgroundLoop(Protocol):
    """An object whose blocking methods run its coroutines on a background loop."""

    @property
    def background_loop(self) -> BackgroundLoop: ...


S = TypeVar("S", bound=OnBackgroundLoop)


def blocking_twin(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """The blocking twin of an ``async`` method: the same coroutine, run on ``self.background_loop``.

    Written once as ``get_bots = blocking_twin(get_bots_async)``, so a twin cannot drift from
    its async method (same arguments, same behaviour, same errors).
    """

    @functools.wraps(method)
    def twin(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.background_loop.run(method(self, *args, **kwargs))

    name = method.__name__.removesuffix("_async")
    twin.__name__ = name
    twin.__qualname__ = method.__qualname__.removesuffix("_async")
    twin.__doc__ = f"Blocking twin of :meth:`{method.__name__}`.\n\n{method.__doc__ or ''}".rstrip()
    return twin


_shared: BackgroundLoop | None = None
_shared_lock = threading.Lock()


def shared_loop() -> BackgroundLoop:
    """The process-wide background loop (started on first use, closed before exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = BackgroundLoop()
            _register_exit(_shared.shutdown)
        return _shared


def _register_exit(callback: Callable[[], None]) -> None:
    # aiosqlite runs each connection on a non-daemon thread, and the interpreter joins
    # those BEFORE plain atexit handlers run: pooled connections would hang the exit.
    # threading._register_atexit runs before that join (concurrent.futures uses it).
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(callback)
            return
        except RuntimeError:  # interpreter already shutting down
            pass
    atexit.register(callback)
