"""The recorder: copies every symbol's Redis log into SQL, exactly once, and trims the log behind it.

One consumer group (``keys.RECORDER_GROUP``) spans every recorder, so several share the
work. Each round reads what is new in every symbol's log (the epoch read in the same
atomic step, server/history/recorder_reads.py) and holds it; the batch in hand is
inserted (idempotent: unique symbol, epoch, seq; one executemany per table) and COMMITted
once it holds ``batch_size`` events or its first read is ``batch_wait_ms`` old, then
acknowledged, and the log trimmed below the lowest unacknowledged seq. Entries a dead
recorder left pending are claimed after ``claim_idle_ms``; after any failure a recorder
first re-reads its own pending entries (and commits those at once). The ``bots`` table is
written only for bots whose row changed (server/history/bots.py). Redis or database
outages are retried with backoff, logged once per change of state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.backoff import Backoff, Retries
from publishers.connection import async_client, is_cluster_url
from publishers.events import now_ms
from publishers.options import redact_url
from server.history import logops
from server.history.bot_registry import BOTS_EVERY_S as _BOTS_EVERY_S
from server.history.bot_registry import sync_bots
from server.history.bots import BotCache
from server.history.engine import create_engine
from server.history.recorder_reads import (
    DATABASE_ERRORS,
    DatabaseDown,
    RecorderBase,
    RedisDown,
    default_consumer_name,
)
from server.history.recorder_state import Batch
from server.history.writer import commit_batches, commit_each_symbol

__all__ = ["Recorder", "default_consumer_name"]

log = logging.getLogger(__name__)

#: Waits after Redis or the database failed a round (full jitter).
_OUTAGE_BACKOFF: Final = Backoff(first_s=0.1, max_s=5.0)
_WATERMARK_EVERY_S: Final = 1.0
_CONSUMER_SWEEP_EVERY_S: Final = 300.0
#: How often bots whose last_seen was held back are written (server/history/bots.py).
_BOT_FLUSH_EVERY_S: Final = 1.0
#: Consumers with nothing pending and idle this long (a recorder that went away) are deleted.
_DEAD_CONSUMER_IDLE_MS: Final = 3_600_000


class Recorder(RecorderBase):
    """Copies every symbol's log into SQL; run several at once to share the work.

    ``database`` is a URL (the recorder makes and disposes its engine) or an engine.
    ``claim_idle_ms``: entries pending that long on another consumer (a recorder that
    died) are claimed. ``symbol_refresh_s``: how often the symbol registry is re-read.
    ``symbols`` restricts the recorder to those symbols (default: every symbol in the
    registry, new ones included), e.g. to shard symbols across recorders.
    """

    #: The batch in hand: read, not committed yet, and when its first read was.
    _held: list[Batch]
    _held_since: float
    _bots: BotCache
    _next_bot_flush_at: float
    #: When the bot registry (ids, statuses before any symbol) is next copied into SQL.
    _next_bots_at: float

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set (the batch in hand is committed first)."""
        owns_engine = isinstance(self._database, str)
        engine = create_engine(self._database) if isinstance(self._database, str) else self._database
        client = async_client(
            self.redis_url,
            socket_timeout_s=self._socket_timeout_s,
            name=f"signalpush-recorder-{self.consumer}",
        )
        log.info(
            "recorder started",
            extra={
                "consumer": self.consumer,
                "redis": redact_url(self.redis_url),
                "database": str(engine.url),
            },
        )
        retries = Retries(_OUTAGE_BACKOFF)
        self._held, self._held_since = [], 0.0
        self._bots = BotCache()  # a new run may follow a rollback: write every bot once again
        self._next_bot_flush_at = time.monotonic() + _BOT_FLUSH_EVERY_S
        self._next_bots_at = 0.0
        self._next_sweep_at = time.monotonic() + _CONSUMER_SWEEP_EVERY_S
        self._symbols.recover_all()  # a restart after a failure: our own pending entries first
        try:
            while not stop.is_set():
                try:
                    busy = await self._round(client, engine)
                    self._recovered("redis")
                    self._recovered("database")
                    retries.succeeded()
                    if not busy:
                        await self._pause(client, stop)
                    continue
                except RedisDown as exc:
                    self._failed("redis", exc.__cause__ or exc)
                except DatabaseDown as exc:
                    self._failed("database", exc.__cause__ or exc)
                self._drop_held()
                await _wait(stop, retries.next_delay())
            with contextlib.suppress(RedisDown, DatabaseDown):
                await self._flush(client, engine)  # stopping: the batch in hand goes in first
        finally:
            await client.aclose()
            if owns_engine:
                await engine.dispose()
            log.info("recorder stopped", extra={"consumer": self.consumer, **self._counters})

    async def _round(self, client: Any, engine: AsyncEngine) -> bool:
        """One read pass over every symbol, committing the batch in hand when it is due;
        True if a log had more to read."""
        await self._refresh_symbols(client)
        if time.monotonic() >= self._next_bots_at:
            self._next_bots_at = time.monotonic() + _BOTS_EVERY_S
            await sync_bots(client, engine, self._warnings)
        if not self._symbols:
            return False
        claimed: list[Batch] = []
        if not self._held and time.monotonic() >= self._next_claim_at:
            # Before this round's reads and with nothing in hand, so our own in-flight entries
            # are never claimed back.
            claimed = await self._claim_all(client)
            self._next_claim_at = time.monotonic() + max(self.claim_idle_ms / 2000, 0.05)
        # Our own pending entries re-read (after a failure) are committed before the next read,
        # which would hand them over again.
        recovering = any(self._symbols[name].recover for name in self._symbols.ready())
        read, busy = await self._read_all(client)
        self._hold(claimed + read)
        if self._held and (claimed or recovering or self._due()):
            known = len(self._bots)
            await self._flush(client, engine)
            if len(self._bots) > known:
                self._next_bots_at = 0.0  # new bots in SQL: give them their registry ids now
        elif not self._held and time.monotonic() >= self._next_bot_flush_at:
            await self._commit(engine, [])  # bots whose last_seen was held back
        if time.monotonic() >= self._next_bot_flush_at:
            self._next_bot_flush_at = time.monotonic() + _BOT_FLUSH_EVERY_S
        self._next_sweep_at = time.monotonic() + _CONSUMER_SWEEP_EVERY_S
        if time.monotonic() >= self._next_bots_at:
            self._next_bots_at = time.monotonic() + _BOTS_EVERY_S
            await sync_bots(client, engine, self._warnings)
        if time.monotonic() >= self._next_watermark_at:
            await self._refresh_watermarks(client)
            self._next_watermark_at = time.monotonic() + _WATERMARK_EVERY_S
        if time.monotonic() >= self._next_sweep_at:
            await self._sweep_consumers(client)
            self._next_sweep_at = time.monotonic() + _CONSUMER_SWEEP_EVERY_S
        return busy

    # -- the batch in hand -----------------------------------------------------------------

    def _hold(self, batches: list[Batch]) -> None:
        if batches and not self._held:
            self._held_since = time.monotonic()
        self._held += batches

    def _held_events(self) -> int:
        return sum(len(b.seqs) for b in self._held)

    def _due(self) -> bool:
        """The batch in hand holds ``batch_size`` events, or its first read is ``batch_wait_ms`` old."""
        if self._held_events() >= self.settings.batch_size:
            return True
        return time.monotonic() - self._held_since >= self.settings.batch_wait_ms / 1000

    def _drop_held(self) -> None:
        """After a failure: the entries in hand stay pending and are re-read (recover mode)."""
        for batch in self._held:
            self._symbols[batch.symbol].recover = True
        self._held = []

    async def _flush(self, client: Any, engine: AsyncEngine) -> None:
        """Commit and acknowledge the batch in hand."""
        if not self._held:
            return
        batches, self._held = self._held, []
        try:
            committed = await self._commit(engine, batches)
        except DatabaseDown:
            self._held = batches
            raise
        await self._acknowledge(client, committed)

    async def _pause(self, client: Any, stop: asyncio.Event) -> None:
        """Nothing more to read now: wait for the batch in hand to be due, else for a new entry."""
        if self._held:
            remaining = self._held_since + self.settings.batch_wait_ms / 1000 - time.monotonic()
            await _wait(stop, max(0.0, remaining))
        else:
            await self._idle(client, stop)

    async def _commit(self, engine: AsyncEngine, batches: list[Batch]) -> list[Batch]:
        """Insert and COMMIT; returns the batches committed (to acknowledge).

        If the one transaction fails, each symbol's batch is tried alone: a symbol whose
        rows the database refuses while others' go in is skipped with backoff (its entries
        stay pending); if every symbol fails, the database is down.
        """
        try:
            self._committed(await commit_batches(engine, batches, self._bots))
            return batches
        except DATABASE_ERRORS as exc:
            for batch in batches:
                self._symbols[batch.symbol].recover = True
            if len({b.symbol for b in batches}) < 2:
                raise DatabaseDown from exc
        committed, refused = await commit_each_symbol(engine, batches, DATABASE_ERRORS, self._bots)
        if not committed:
            raise DatabaseDown from next(iter(refused.values()))
        self._committed(sum(len(b.events) for b in committed))
        for name, error in refused.items():
            self._symbol_failed(name, f"the database refused its rows: {error}")
        return committed

    def _committed(self, recorded: int | None) -> None:
        if recorded is not None:
            self._counters["events_recorded"] += recorded
            self._counters["batches"] += 1
            self._last_commit_ms = now_ms()

    async def _acknowledge(self, client: Any, batches: list[Batch]) -> None:
        """Ack (only after the commit) and trim behind what is committed."""
        calls = [
            logops.ack_args(b.symbol, self.consumer, b.epoch, b.seqs, trim=self.settings.trim)
            for b in batches
        ]
        try:
            replies = await self._redis(logops.run_scripts(client, calls))
        except RedisDown:
            for batch in batches:
                self._symbols[batch.symbol].recover = True
            raise
        for batch, reply in zip(batches, replies, strict=True):
            self._note_watermark(batch.symbol, reply)

    async def _refresh_watermarks(self, client: Any) -> None:
        names = self._symbols.ready()
        calls = [logops.ack_args(n, self.consumer, "", [], trim=self.settings.trim) for n in names]
        replies = await self._redis(logops.run_scripts(client, calls)) if calls else []
        for name, reply in zip(names, replies, strict=True):
            self._note_watermark(name, reply)
        waiting = list(self._symbols.unrecordable())
        if waiting:
            await self._read_meta_seqs(client, waiting)

    async def _read_meta_seqs(self, client: Any, names: list[str]) -> None:
        """The meta seq of symbols that cannot be recorded, so their lag keeps telling the truth."""
        for name, seq in (await self._redis(logops.meta_seqs(client, names))).items():
            self._symbols[name].meta_seq = seq

    def _note_watermark(self, symbol: str, reply: Any) -> None:
        result = self._reply(symbol, reply, logops.parse_ack)
        if result is None:
            return
        state = self._symbols[symbol]
        state.committed = result.committed
        state.meta_seq = result.meta_seq

    async def _sweep_consumers(self, client: Any) -> None:
        """Forget consumers of recorders that went away (nothing pending, idle for an hour)."""
        for name in list(self._symbols.logs):
            await self._redis(
                logops.forget_dead_consumers(client, name, self.consumer, _DEAD_CONSUMER_IDLE_MS)
            )

    async def _idle(self, client: Any, stop: asyncio.Event) -> None:
        """Wait up to block_ms for a new entry on any log (or for stop)."""
        names = self._symbols.ready()
        if not names or stop.is_set() or is_cluster_url(self.redis_url):
            # On a cluster the logs live on several nodes: one blocking XREAD cannot wait on all.
            await _wait(stop, self.settings.block_ms / 1000)
            return
        streams = {keys.log_key(name): "$" for name in names}
        try:
            await self._redis(client.xread(streams, count=1, block=self.settings.block_ms))
        except RedisDown as exc:
            if not isinstance(exc.__cause__, redis.ResponseError):
                raise
            # A log of the wrong type fails the one XREAD for all: find it, leave it out.
            await self._find_bad_logs(client, names)
            await _wait(stop, self.settings.block_ms / 1000)

    async def _find_bad_logs(self, client: Any, names: list[str]) -> None:
        for name, kind in (await self._redis(logops.log_types(client, names))).items():
            if kind not in ("stream", "none"):
                self._symbol_failed(name, f"{keys.log_key(name)} is a {kind}, not a stream")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
