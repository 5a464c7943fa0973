"""The live signal-quality stream: the ``perf`` op's feed (docs/analytics.md, "Signal quality, live").

A gateway folds signal quality only while a client wants it: the first ``perf`` subscriber
starts the feed, which reads the window (``lookback``) from SQL once, then every
``interval_s`` reads each symbol forward from where it stopped — from SQL for what the
recorder committed and trimmed, from the Redis log for the rest (server/analytics/
quality_live.py keeps the cursors and the fold) — and pushes the rows that changed to its
subscribers, one encoding per distinct filter. With no subscriber left for ``idle_s`` the
state is dropped (its memory with it). A failed read is logged (rate-limited) and retried on
the next tick: the feed never ends on one, and a bad log entry is dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import redis
import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.server import ServerConnection

from publishers import keys
from server.analytics.quality import QualityRules
from server.analytics.quality_live import MAX_SPAN, LiveQuality, Meta, SymbolRead
from server.analytics.quality_rows import quality_query, range_query
from server.analytics.queries import BotFilter
from server.core.perfwire import PerfSubscribe, perf_frame
from server.core.trust import symbol_name
from server.errors import BusError, ProtocolError, SignalpushError
from server.history.log_reader import meta_of, snapshot
from server.logs import RateLimitedLog

log = logging.getLogger(__name__)

#: The most symbols the feed follows (a registry flooded with names costs no more than this).
MAX_SYMBOLS: Final = 10_000
DAY_MS: Final = 86_400_000
#: Sends one frame to connections; returns those it skipped (their buffer is full).
SendTo = Callable[[list[ServerConnection], str], list[ServerConnection]]


def _now_ms() -> int:
    return int(time.time() * 1000)


class PerfFeed:
    """Signal quality of every bot and strategy, folded live and pushed to ``perf`` subscribers."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        engine: AsyncEngine,
        rules: QualityRules | None = None,
        interval_s: float = 1.0,
        lookback_days: float = 30.0,
        idle_s: float = 300.0,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.rules = rules or QualityRules()
        self.interval_s = interval_s
        self.lookback_ms = int(lookback_days * DAY_MS)
        self.idle_s = idle_s
        self.ready_timeout_s = ready_timeout_s
        self.subscribers: dict[ServerConnection, PerfSubscribe] = {}
        self.live: LiveQuality | None = None
        self.failures = 0
        self.steps = 0
        self._send: SendTo | None = None
        #: Subscribers that missed a frame (full buffer): they get every row next time.
        self._behind: set[ServerConnection] = set()
        self._wanted = asyncio.Event()
        self._ready = asyncio.Event()
        self._throttle = RateLimitedLog(log)

    def __repr__(self) -> str:
        state = "off" if self.live is None else f"{len(self.live.cursors)} symbols"
        return f"PerfFeed(subscribers={len(self.subscribers)}, {state}, interval_s={self.interval_s})"

    # -- subscribers ----------------------------------------------------------------------

    async def subscribe(self, ws: ServerConnection, request: PerfSubscribe, send: SendTo) -> None:
        """Add (or replace) ``ws``'s subscription and send it every row its filter selects."""
        self._send = send
        self.subscribers[ws] = request
        self._wanted.set()
        try:
            await asyncio.wait_for(self._ready.wait(), self.ready_timeout_s)
        except TimeoutError:
            self.subscribers.pop(ws, None)
            raise ProtocolError("busy", "perf: the signal-quality feed is not ready yet; retry") from None
        live = cast(LiveQuality, self.live)
        rows = [r for r in live.stream.snapshot() if request.wants(r["bot"], r["strategy"])]
        self._behind.discard(ws)
        send([ws], perf_frame(rows, full=True, now_ms=_now_ms(), ref=request.ref))

    def unsubscribe(self, ws: ServerConnection) -> bool:
        """Forget ``ws``'s subscription; False if it had none."""
        self._behind.discard(ws)
        return self.subscribers.pop(ws, None) is not None

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait for a subscriber, start from SQL, then step every ``interval_s`` (supervised)."""
        idle_since: float | None = None
        while True:
            if self.live is None:
                await self._wanted.wait()
                if not await self._guarded(self._begin):
                    await asyncio.sleep(self.interval_s)
                    continue
                self._ready.set()
            await asyncio.sleep(self.interval_s)
            await self._guarded(self.step)
            if self.subscribers:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_s:
                self._stop_folding()
                idle_since = None

    def _stop_folding(self) -> None:
        self.live = None
        self._ready.clear()
        self._wanted.clear()

    async def _guarded(self, work: Callable[[], Any]) -> bool:
        """``work()``; False (logged, rate-limited, and counted) if it failed."""
        try:
            await work()
        except (SignalpushError, SQLAlchemyError, redis.RedisError, OSError) as exc:
            self.failures += 1
            self._throttle.warning(type(exc).__name__, "perf feed step failed", error=str(exc)[:200])
            return False
        return True

    async def _begin(self) -> None:
        now = _now_ms()
        start, end = now - self.lookback_ms, now + DAY_MS  # a publisher's clock may run ahead
        metas = await self._metas(await self._symbols())
        async with self.engine.connect() as connection:
            rows = (await connection.execute(quality_query(BotFilter(), start, end))).all()
        reads = [
            await self._read(symbol, epoch, 0) for symbol, (epoch, seq) in metas.items() if epoch and seq
        ]
        live = LiveQuality(self.rules, start)
        # The fold of a 30-day window is CPU work: off the loop (nothing else touches ``live`` yet).
        await asyncio.to_thread(live.begin, metas, rows, [r for r in reads if r is not None])
        live.stream.take_changed()
        self.live = live

    async def step(self) -> None:
        """Read every symbol forward, fold, push the changed rows."""
        live = self.live
        if live is None:
            return
        reads = []
        for symbol, epoch, after in live.plan(await self._metas(await self._symbols())):
            read = await self._read(symbol, epoch, after)
            if read is not None:
                reads.append(read)
        spans = [span for span in (read.sql_span for read in reads) if span is not None]
        rows: Sequence[Any] = []
        if spans:
            async with self.engine.connect() as connection:
                rows = (await connection.execute(range_query(spans))).all()
        live.advance(reads, rows)
        self.steps += 1
        self._push(live.take_rows())

    def _push(self, changed: list[dict[str, Any]]) -> None:
        send = self._send
        if send is None or not self.subscribers:
            return
        now = _now_ms()
        by_key: dict[Any, list[ServerConnection]] = defaultdict(list)
        for ws, request in self.subscribers.items():
            by_key[(request.key, ws in self._behind)].append(ws)
        everything: list[dict[str, Any]] | None = None
        for (_key, behind), connections in by_key.items():
            request = self.subscribers[connections[0]]
            if behind:
                everything = (
                    everything if everything is not None else cast(LiveQuality, self.live).stream.snapshot()
                )
                rows = [r for r in everything if request.wants(r["bot"], r["strategy"])]
            else:
                rows = [r for r in changed if request.wants(r["bot"], r["strategy"])]
                if not rows:
                    continue
            skipped = send(connections, perf_frame(rows, full=behind, now_ms=now))
            self._behind.difference_update(connections)
            self._behind.update(skipped)

    # -- reads ----------------------------------------------------------------------------

    async def _symbols(self) -> list[str]:
        try:
            members = cast(set[bytes], await self.redis.smembers(keys.SYMBOLS_KEY))
        except (redis.RedisError, OSError) as exc:
            raise BusError(f"cannot read the symbol registry {keys.SYMBOLS_KEY}: {exc}") from exc
        names = sorted(name for name in map(symbol_name, members) if name is not None)
        return names[:MAX_SYMBOLS]

    async def _metas(self, symbols: list[str]) -> dict[str, Meta]:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol in symbols:
                    pipe.hmget(keys.meta_key(symbol), keys.META_EPOCH, keys.META_SEQ)
                replies = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise BusError(f"cannot read the symbols' meta: {exc}") from exc
        metas: dict[str, Meta] = {}
        for symbol, (epoch, seq) in zip(symbols, replies, strict=True):
            try:
                metas[symbol] = meta_of(symbol, epoch, seq)
            except BusError as exc:
                self._throttle.warning(f"meta {symbol}", "perf feed skips a symbol", error=str(exc)[:200])
        return metas

    async def _read(self, symbol: str, epoch: str | None, after: int) -> SymbolRead | None:
        """``symbol``'s log from ``after + 1`` with its meta, atomically (None: the epoch moved)."""
        snap = await snapshot(self.redis, symbol, after + 1, MAX_SPAN)
        if epoch is None or snap.epoch != epoch:
            return None
        return SymbolRead(symbol, epoch, after, snap.seq, [(e.seq, e.json) for e in snap.entries])
