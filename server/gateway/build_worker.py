"""The history worker process: builds history windows, figures and their JSON off the gateway's loop.

A 30-day window with its figure is seconds of CPU (SQL rows into tuples, candles into
buckets, pandas and plotly for the figure, several MiB of JSON) and hundreds of MiB of
short-lived memory. Run on the gateway's loop, or on threads of its process (the GIL),
it stalls every other client's live events for as long. Here it runs in a process of a
small pool (``history.workers``); the gateway gets finished JSON bytes and only sends them.

Everything in this module runs in the worker, on its own event loop, with its own Redis
client and database engine. Results are plain picklable values; a failure comes back as
:class:`Failure` (exception classes with custom constructors do not pickle reliably).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from publishers.errors import SignalpushError
from server.core.filters import EventFilter
from server.errors import BusError, ProtocolError, StoreError
from server.settings import HistorySettings

log = logging.getLogger(__name__)

_PARENT_CHECK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class BuiltWindow:
    """A history window, encoded: ``body`` is the JSON members ``"data":{...}`` (and
    ``,"figure":{...}`` when asked) as UTF-8, ready to be put in a history frame."""

    epoch: str | None
    to_seq: int
    truncated: bool
    omitted: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong in the worker: ``kind`` is bus, store, protocol (with ``code``) or bug."""

    kind: str
    message: str
    code: str = ""

    def error(self) -> SignalpushError:
        if self.kind == "bus":
            return BusError(self.message)
        if self.kind == "protocol":
            return ProtocolError(self.code, self.message)
        return StoreError(self.message)


def encode(value: Any) -> bytes:
    """Compact JSON (no NaN: the builders turn non-finite numbers into null) as UTF-8.

    A lone surrogate (JSON text in the log may hold ``"\\ud800"``) becomes ``?``: a frame
    must be valid UTF-8 or the client drops the connection.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "replace")


def symbol_figure(symbol: str, data: Any, max_points: int) -> dict[str, Any]:
    """The wall figure of a window's ``data`` with its KPI tiles (blocking CPU work)."""
    from server.charts.wall import build_symbol_figure, kpis

    figure = build_symbol_figure(symbol, data, max_points=max_points)
    figure["kpis"] = kpis(data)
    return figure


def window_body(symbol: str, data: Any, max_points: int, figure: bool) -> bytes:
    """The ``"data":...`` (and ``"figure":...``) members of a history frame; the figure keeps
    at most ``max_points`` points a trace (``history.max_points``, whatever the data holds)."""
    body = b'"data":' + encode(data)
    if figure:
        body += b',"figure":' + encode(symbol_figure(symbol, data, max_points))
    return body


_LIBC: Any = None


def trim_memory() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``; elsewhere nothing).

    CPython frees the big temporary lists and strings of a build, but glibc keeps the pages
    in its arenas; without this the process stays at its peak RSS.
    """
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else False
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class _Worker:
    def __init__(self, redis_url: str, database_url: str, settings: HistorySettings) -> None:
        from publishers.connection import async_client
        from server.history.engine import create_engine
        from server.history.source import StoreHistory

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.settings = settings
        self.redis = async_client(redis_url, name="signalpush-history-worker")
        self.engine = create_engine(database_url)
        self.source = StoreHistory(self.redis, self.engine, settings)


_WORKER: _Worker | None = None


def init_worker(redis_url: str, database_url: str, settings: HistorySettings, parent_pid: int) -> None:
    """Pool initializer: the worker's loop, Redis client and engine; exit when the gateway is gone."""
    global _WORKER
    _WORKER = _Worker(redis_url, database_url, settings)

    def watch_parent() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)  # the gateway died (even SIGKILL): nobody will ask for history again

    threading.Thread(target=watch_parent, name="signalpush-parent-watch", daemon=True).start()


def _run(build: Any) -> Any:
    """Run a build coroutine on the worker's loop; errors become a :class:`Failure`."""
    import redis.exceptions
    import sqlalchemy.exc

    assert _WORKER is not None, "init_worker was not called"
    try:
        return _WORKER.loop.run_until_complete(build)
    except ProtocolError as exc:
        return Failure("protocol", exc.message, exc.code)
    except BusError as exc:
        return Failure("bus", str(exc))
    except (redis.exceptions.RedisError, OSError) as exc:
        return Failure("bus", f"Redis failed while history was read: {exc}")
    except (StoreError, sqlalchemy.exc.SQLAlchemyError) as exc:
        return Failure("store", str(exc))
    except Exception as exc:  # a bug: reported as such, the worker stays usable
        log.exception("history build crashed")
        return Failure("bug", f"history build crashed: {type(exc).__name__}: {exc}")
    finally:
        trim_memory()


def build_window(symbol: str, flt: EventFilter, minutes: int, max_points: int, figure: bool) -> Any:
    """A subscription's history window (and figure) as a :class:`BuiltWindow`."""

    async def build() -> BuiltWindow:
        assert _WORKER is not None
        window = await _WORKER.source.window(symbol, flt, minutes=minutes, max_points=max_points)
        body = window_body(symbol, window.data, _WORKER.settings.max_points, figure)
        return BuiltWindow(window.epoch, window.to_seq, window.truncated, window.omitted, body)

    return _run(build())


def build_api_history(symbol: str, flt: EventFilter, minutes: int, max_points: int) -> Any:
    """The JSON body of ``GET /api/history``."""
    from server.history.reads import history_payload

    async def build() -> bytes:
        assert _WORKER is not None
        payload = await history_payload(
            _WORKER.engine, _WORKER.redis, symbol, flt, minutes, max_points, _WORKER.settings.max_events
        )
        return encode(payload)

    return _run(build())


def build_api_figure(symbol: str, flt: EventFilter, minutes: int, max_points: int) -> Any:
    """The JSON body of ``GET /api/figure``."""

    async def build() -> bytes:
        assert _WORKER is not None
        window = await _WORKER.source.window(symbol, flt, minutes=minutes, max_points=max_points)
        figure = symbol_figure(symbol, window.data, _WORKER.settings.max_points)
        return encode({"symbol": symbol, "epoch": window.epoch, "to_seq": window.to_seq, **figure})

    return _run(build())


def warm_up() -> bool:
    """Import what builds need (run once when a worker starts, so the first build is not slower)."""
    import server.charts.wall
    import server.history.reads  # noqa: F401

    return True
