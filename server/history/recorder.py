"""The recorder: copies every symbol's Redis log into SQL, exactly once, and trims the log behind it.

One consumer group (``keys.RECORDER_GROUP``) spans every recorder, so several share the
work. Each round reads a batch from every symbol's log (the epoch read in the same atomic
step), inserts it (idempotent: unique symbol, epoch, seq), COMMITs, then acknowledges and
trims the log below the lowest unacknowledged seq. Entries a dead recorder left pending
are claimed after ``claim_idle_ms``; after any failure a recorder first re-reads its own
pending entries. Redis or database outages are retried with backoff, logged once per
change of state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Any, Final

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.backoff import Backoff, Retries
from publishers.connection import async_client, is_cluster_url
from publishers.events import now_ms
from publishers.options import redact_url
from server.history import logops
from server.history.bot_registry import BOTS_EVERY_S as _BOTS_EVERY_S
from server.history.bot_registry import sync_bots
from server.history.engine import create_engine
from server.history.recorder_state import Batch, Symbols, decode, parse_reply
from server.history.writer import commit_batches, commit_each_symbol
from server.logs import RateLimitedLog
from server.settings import RecorderSettings

log = logging.getLogger(__name__)

#: Waits after Redis or the database failed a round (full jitter).
_OUTAGE_BACKOFF: Final = Backoff(first_s=0.1, max_s=5.0)
_WATERMARK_EVERY_S: Final = 1.0
_CONSUMER_SWEEP_EVERY_S: Final = 300.0
#: Consumers with nothing pending and idle this long (a recorder that went away) are deleted.
_DEAD_CONSUMER_IDLE_MS: Final = 3_600_000
_REDIS_ERRORS: Final = (redis.RedisError, OSError)
_DATABASE_ERRORS: Final = (SQLAlchemyError, OSError, TimeoutError)


class _RedisDown(Exception):
    pass


class _DatabaseDown(Exception):
    pass


def default_consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random tag."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Recorder:
    """Copies every symbol's log into SQL; run several at once to share the work.

    ``database`` is a URL (the recorder makes and disposes its engine) or an engine.
    ``claim_idle_ms``: entries pending that long on another consumer (a recorder that
    died) are claimed. ``symbol_refresh_s``: how often the symbol registry is re-read.
    ``symbols`` restricts the recorder to those symbols (default: every symbol in the
    registry, new ones included), e.g. to shard symbols across recorders.
    """

    def __init__(
        self,
        redis_url: str,
        database: str | AsyncEngine,
        settings: RecorderSettings,
        *,
        consumer: str | None = None,
        claim_idle_ms: int = 30_000,
        symbol_refresh_s: float = 0.5,
        symbols: Sequence[str] | None = None,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self.redis_url = redis_url
        self.settings = settings
        self.consumer = consumer or default_consumer_name()
        self.claim_idle_ms = claim_idle_ms
        self._database = database
        self._symbol_refresh_s = symbol_refresh_s
        self._socket_timeout_s = max(socket_timeout_s, settings.block_ms / 1000 + 1.0)
        self._symbols = Symbols()
        self._only = None if symbols is None else tuple(symbols)
        self._next_symbols_at = 0.0
        self._next_claim_at = 0.0
        self._next_bots_at = 0.0
        self._next_watermark_at = 0.0
        self._next_sweep_at = time.monotonic() + _CONSUMER_SWEEP_EVERY_S
        self._up = {"redis": True, "database": True}
        self._counters = {
            "events_recorded": 0,
            "batches": 0,
            "claimed": 0,
            "skipped": 0,
            "lost": 0,
            "symbol_errors": 0,
            "forged": 0,
        }
        self._last_commit_ms: int | None = None
        #: Registry members that are not symbol names (left out), as of the last read.
        self._invalid_names = 0
        self._warnings = RateLimitedLog(log)

    # -- what /metrics shows -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters since start: events recorded, batches committed, last commit time, health."""
        return {
            "consumer": self.consumer,
            **self._counters,
            "last_commit_ms": self._last_commit_ms,
            "redis_up": self._up["redis"],
            "database_up": self._up["database"],
            "symbols": len(self._symbols),
            "unrecordable": len(self._symbols.unrecordable()),
            "invalid_names": self._invalid_names,
        }

    def committed(self) -> dict[str, int]:
        """Per symbol: every seq up to this one is committed in SQL (as last seen in Redis)."""
        return self._symbols.committed()

    def lag(self) -> dict[str, int]:
        """Per symbol: the symbol's seq minus the highest seq below which everything is committed.

        A symbol that cannot be recorded keeps growing here (its meta's seq is still read);
        :meth:`unrecordable` says why.
        """
        return self._symbols.lag()

    def unrecordable(self) -> dict[str, str]:
        """Symbols whose keys cannot be recorded now, and why (retried with backoff)."""
        return self._symbols.unrecordable()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Record until ``stop`` is set (the batch in hand is finished first)."""
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
        self._symbols.recover_all()  # a restart after a failure: our own pending entries first
        try:
            while not stop.is_set():
                try:
                    busy = await self._round(client, engine)
                    self._recovered("redis")
                    self._recovered("database")
                    retries.succeeded()
                    if not busy:
                        await self._idle(client, stop)
                    continue
                except _RedisDown as exc:
                    self._failed("redis", exc.__cause__ or exc)
                except _DatabaseDown as exc:
                    self._failed("database", exc.__cause__ or exc)
                await _wait(stop, retries.next_delay())
        finally:
            await client.aclose()
            if owns_engine:
                await engine.dispose()
            log.info("recorder stopped", extra={"consumer": self.consumer, **self._counters})

    async def _round(self, client: Any, engine: AsyncEngine) -> bool:
        """One read-insert-commit-ack pass over every symbol; True if a log had more to read."""
        await self._refresh_symbols(client)
        if time.monotonic() >= self._next_bots_at:
            self._next_bots_at = time.monotonic() + _BOTS_EVERY_S
            await sync_bots(client, engine, self._warnings)
        if not self._symbols:
            return False
        batches: list[Batch] = []
        if time.monotonic() >= self._next_claim_at:
            # Before this round's reads, so our own in-flight entries are never claimed back.
            batches = await self._claim_all(client)
            self._next_claim_at = time.monotonic() + max(self.claim_idle_ms / 2000, 0.05)
        read, busy = await self._read_all(client)
        batches += read
        if batches:
            committed = await self._commit(engine, batches)
            await self._acknowledge(client, committed)
        if time.monotonic() >= self._next_watermark_at:
            await self._refresh_watermarks(client)
            self._next_watermark_at = time.monotonic() + _WATERMARK_EVERY_S
        if time.monotonic() >= self._next_sweep_at:
            await self._sweep_consumers(client)
            self._next_sweep_at = time.monotonic() + _CONSUMER_SWEEP_EVERY_S
        return busy

    async def _refresh_symbols(self, client: Any) -> None:
        if time.monotonic() < self._next_symbols_at:
            return
        if self._only is not None:
            self._symbols.add(self._only)
            self._next_symbols_at = float("inf")
            return
        members: set[bytes] = set()
        try:
            members = await client.smembers(keys.SYMBOLS_KEY)
        except redis.ResponseError as exc:  # not a set: nothing to discover until someone repairs it
            self._warnings.warning(
                "registry",
                "recorder: the symbol registry is unusable",
                registry=keys.SYMBOLS_KEY,
                error=str(exc),
            )
        except _REDIS_ERRORS as exc:
            raise _RedisDown from exc
        self._invalid_names = self._symbols.add_registry(members)
        if self._invalid_names:
            self._warnings.warning(
                "invalid names",
                "recorder: the symbol registry holds names that are not symbols; skipped",
                registry=keys.SYMBOLS_KEY,
                count=self._invalid_names,
            )
        self._next_symbols_at = time.monotonic() + self._symbol_refresh_s

    def _symbol_failed(self, name: str, problem: str) -> None:
        """This symbol's keys failed (wrong type, unusable meta): skip it for a while, keep the others."""
        delay = self._symbols.failed(name, problem)
        self._counters["symbol_errors"] += 1
        self._warnings.warning(
            ("symbol", name),
            "recorder: cannot record a symbol; the others go on, it is retried with backoff",
            symbol=name,
            error=self._symbols[name].problem,
            retry_in_s=round(delay, 1),
        )

    def _reply(self, name: str, reply: Any, parse: Any) -> Any:
        """A script reply parsed, or None after marking the symbol failed (an error reply, a bad epoch)."""
        result = parse_reply(name, reply, parse)
        if isinstance(result, str):
            self._symbol_failed(name, result)
            return None
        return result

    async def _read_all(self, client: Any) -> tuple[list[Batch], bool]:
        count = self.settings.batch_size
        names = self._symbols.ready()
        modes: list[logops.ReadMode] = ["own" if self._symbols[n].recover else "new" for n in names]
        calls = [logops.read_args(n, m, count, self.consumer) for n, m in zip(names, modes, strict=True)]
        replies = await self._redis(logops.run_scripts(client, calls)) if calls else []
        batches: list[Batch] = []
        busy = False
        for name, mode, reply in zip(names, modes, replies, strict=True):
            result = self._reply(name, reply, logops.parse_read)
            if result is None:
                continue
            if self._symbols.ok(name):  # its log reads again: recordable
                log.info("recorder: a symbol can be recorded again", extra={"symbol": name})
            state = self._symbols[name]
            if mode == "own" and not result.entries:
                state.recover = False  # nothing of ours left pending: read new entries next round
                busy = True
            if len(result.entries) >= count:
                busy = True
            if mode == "new" and result.entries and result.last_delivered is not None:
                self._note_hard_cap_loss(name, result.last_delivered, result.entries[0].seq)
            batch = self._decode(name, result)
            if batch is not None:
                batches.append(batch)
        return batches, busy

    async def _claim_all(self, client: Any) -> list[Batch]:
        names = self._symbols.ready()
        if not names:
            return []
        calls = [
            logops.read_args(
                n,
                "claim",
                self.settings.batch_size,
                self.consumer,
                min_idle_ms=self.claim_idle_ms,
                cursor=self._symbols[n].claim_cursor,
            )
            for n in names
        ]
        replies = await self._redis(logops.run_scripts(client, calls))
        batches = []
        for name, reply in zip(names, replies, strict=True):
            result = self._reply(name, reply, logops.parse_read)
            if result is None:
                continue
            self._symbols[name].claim_cursor = result.cursor or "0-0"
            if result.entries:
                self._counters["claimed"] += len(result.entries)
                log.info("claimed pending entries", extra={"symbol": name, "count": len(result.entries)})
            batch = self._decode(name, result)
            if batch is not None:
                batches.append(batch)
        return batches

    def _decode(self, symbol: str, result: logops.ReadResult) -> Batch | None:
        if result.forged:
            self._counters["forged"] += result.forged
            self._warnings.warning(
                ("forged", symbol),
                "log entries above the symbol's seq (not written by the publish script) left out",
                symbol=symbol,
                count=result.forged,
            )
        batch = decode(symbol, result)
        if batch is None:
            return None
        if batch.gone:
            self._counters["lost"] += len(batch.gone)
            log.warning(
                "log entries were trimmed (hard cap) before they were recorded",
                extra={"symbol": symbol, "count": len(batch.gone), "first_seq": batch.gone[0]},
            )
        if batch.voids:
            self._counters["skipped"] += len(batch.voids)
            self._warnings.warning(
                ("malformed", symbol),
                "skipped malformed log entries (void seqs)",
                symbol=symbol,
                count=len(batch.voids),
                first_seq=batch.voids[0][0],
                reason=batch.voids[0][1],
            )
        return batch

    def _note_hard_cap_loss(self, symbol: str, last_delivered: int, first_seq: int) -> None:
        missing = first_seq - last_delivered - 1
        if missing > 0:
            self._counters["lost"] += missing
            log.warning(
                "the log's hard cap dropped events before they were recorded (raise redis.log_maxlen)",
                extra={"symbol": symbol, "from_seq": last_delivered + 1, "to_seq": first_seq - 1},
            )

    async def _commit(self, engine: AsyncEngine, batches: list[Batch]) -> list[Batch]:
        """Insert and COMMIT; returns the batches committed (to acknowledge).

        If the one transaction fails, each symbol's batch is tried alone: a symbol whose
        rows the database refuses while others' go in is skipped with backoff (its entries
        stay pending); if every symbol fails, the database is down.
        """
        try:
            self._committed(await commit_batches(engine, batches))
            return batches
        except _DATABASE_ERRORS as exc:
            for batch in batches:
                self._symbols[batch.symbol].recover = True
            if len({b.symbol for b in batches}) < 2:
                raise _DatabaseDown from exc
        committed, refused = await commit_each_symbol(engine, batches, _DATABASE_ERRORS)
        if not committed:
            raise _DatabaseDown from next(iter(refused.values()))
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
        except _RedisDown:
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
        except _RedisDown as exc:
            if not isinstance(exc.__cause__, redis.ResponseError):
                raise
            # A log of the wrong type fails the one XREAD for all: find it, leave it out.
            await self._find_bad_logs(client, names)
            await _wait(stop, self.settings.block_ms / 1000)

    async def _find_bad_logs(self, client: Any, names: list[str]) -> None:
        for name, kind in (await self._redis(logops.log_types(client, names))).items():
            if kind not in ("stream", "none"):
                self._symbol_failed(name, f"{keys.log_key(name)} is a {kind}, not a stream")

    async def _redis(self, operation: Any) -> Any:
        try:
            return await operation
        except _REDIS_ERRORS as exc:
            self._symbols.recover_all()
            raise _RedisDown from exc

    # -- health --------------------------------------------------------------------------

    def _failed(self, part: str, exc: BaseException) -> None:
        if self._up[part]:
            self._up[part] = False
            log.warning(f"recorder: {part} unavailable, retrying with backoff", extra={"error": str(exc)})

    def _recovered(self, part: str) -> None:
        if not self._up[part]:
            self._up[part] = True
            log.info(f"recorder: {part} is back")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
