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
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.config import RecorderSettings, redact_url
from publishers.connection import async_client, is_cluster_url
from publishers.events import event_from_dict, now_ms
from server.store import logops
from server.store.engine import create_engine
from server.store.writer import insert_events

log = logging.getLogger(__name__)

_BACKOFF_START_S: Final = 0.1
_BACKOFF_MAX_S: Final = 5.0
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


@dataclass
class _Symbol:
    """What the recorder knows about one symbol's log."""

    recover: bool = True  # read our own pending entries before new ones
    claim_cursor: str = "0-0"
    committed: int = 0
    meta_seq: int = 0


@dataclass
class _Batch:
    symbol: str
    epoch: str
    seqs: list[int]
    events: list[dict[str, Any]]


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
        self._symbols: dict[str, _Symbol] = {}
        self._only = None if symbols is None else tuple(symbols)
        self._next_symbols_at = 0.0
        self._next_claim_at = 0.0
        self._next_watermark_at = 0.0
        self._next_sweep_at = time.monotonic() + _CONSUMER_SWEEP_EVERY_S
        self._up = {"redis": True, "database": True}
        self._counters = {"events_recorded": 0, "batches": 0, "claimed": 0, "skipped": 0, "lost": 0}
        self._last_commit_ms: int | None = None

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
        }

    def committed(self) -> dict[str, int]:
        """Per symbol: every seq up to this one is committed in SQL (as last seen in Redis)."""
        return {name: max(0, s.committed) for name, s in sorted(self._symbols.items())}

    def lag(self) -> dict[str, int]:
        """Per symbol: the symbol's seq minus the highest seq below which everything is committed."""
        return {name: max(0, s.meta_seq - max(s.committed, 0)) for name, s in sorted(self._symbols.items())}

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
        backoff = _BACKOFF_START_S
        try:
            while not stop.is_set():
                try:
                    busy = await self._round(client, engine)
                    self._recovered("redis")
                    self._recovered("database")
                    backoff = _BACKOFF_START_S
                    if not busy:
                        await self._idle(client, stop)
                    continue
                except _RedisDown as exc:
                    self._failed("redis", exc.__cause__ or exc)
                except _DatabaseDown as exc:
                    self._failed("database", exc.__cause__ or exc)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
        finally:
            await client.aclose()
            if owns_engine:
                await engine.dispose()
            log.info("recorder stopped", extra={"consumer": self.consumer, **self._counters})

    async def _round(self, client: Any, engine: AsyncEngine) -> bool:
        """One read-insert-commit-ack pass over every symbol; True if a log had more to read."""
        await self._refresh_symbols(client)
        if not self._symbols:
            return False
        batches: list[_Batch] = []
        if time.monotonic() >= self._next_claim_at:
            # Before this round's reads, so our own in-flight entries are never claimed back.
            batches = await self._claim_all(client)
            self._next_claim_at = time.monotonic() + max(self.claim_idle_ms / 2000, 0.05)
        read, busy = await self._read_all(client)
        batches += read
        if batches:
            await self._commit(engine, batches)
            await self._acknowledge(client, batches)
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
            for name in self._only:
                self._symbols.setdefault(name, _Symbol())
            self._next_symbols_at = float("inf")
            return
        try:
            members = await client.smembers(keys.SYMBOLS_KEY)
        except _REDIS_ERRORS as exc:
            raise _RedisDown from exc
        for raw in members:
            self._symbols.setdefault(raw.decode() if isinstance(raw, bytes) else str(raw), _Symbol())
        self._next_symbols_at = time.monotonic() + self._symbol_refresh_s

    async def _read_all(self, client: Any) -> tuple[list[_Batch], bool]:
        count = self.settings.batch_size
        names = list(self._symbols)
        modes: list[logops.ReadMode] = ["own" if self._symbols[n].recover else "new" for n in names]
        calls = [logops.read_args(n, m, count, self.consumer) for n, m in zip(names, modes, strict=True)]
        replies = await self._redis(logops.run_scripts(client, calls))
        batches: list[_Batch] = []
        busy = False
        for name, mode, reply in zip(names, modes, replies, strict=True):
            result = logops.parse_read(reply)
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

    async def _claim_all(self, client: Any) -> list[_Batch]:
        names = list(self._symbols)
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
            result = logops.parse_read(reply)
            self._symbols[name].claim_cursor = result.cursor or "0-0"
            if result.entries:
                self._counters["claimed"] += len(result.entries)
                log.info("claimed pending entries", extra={"symbol": name, "count": len(result.entries)})
            batch = self._decode(name, result)
            if batch is not None:
                batches.append(batch)
        return batches

    def _decode(self, symbol: str, result: logops.ReadResult) -> _Batch | None:
        if result.epoch is None or not result.entries:
            return None
        batch = _Batch(symbol, result.epoch, [], [])
        gone: list[int] = []
        malformed: list[int] = []
        for entry in result.entries:
            batch.seqs.append(entry.seq)  # acknowledged whatever happens: nothing can be done twice
            if not entry.json:
                gone.append(entry.seq)
                continue
            event = _valid_event(entry)
            if event is None:
                malformed.append(entry.seq)
                continue
            batch.events.append(event)
        if gone:
            self._counters["lost"] += len(gone)
            log.warning(
                "log entries were trimmed (hard cap) before they were recorded",
                extra={"symbol": symbol, "count": len(gone), "first_seq": gone[0]},
            )
        if malformed:
            self._counters["skipped"] += len(malformed)
            log.warning(
                "skipped malformed log entries",
                extra={"symbol": symbol, "count": len(malformed), "first_seq": malformed[0]},
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

    async def _commit(self, engine: AsyncEngine, batches: list[_Batch]) -> None:
        # A claim and a re-read may hand the same entry over twice in one round.
        unique = {(b.symbol, b.epoch, e["seq"]): (b.epoch, e) for b in batches for e in b.events}
        pairs = list(unique.values())
        if pairs:
            try:
                async with engine.begin() as connection:
                    await insert_events(connection, pairs)
            except _DATABASE_ERRORS as exc:
                for batch in batches:
                    self._symbols[batch.symbol].recover = True
                raise _DatabaseDown from exc
            self._counters["events_recorded"] += len(pairs)
            self._counters["batches"] += 1
            self._last_commit_ms = now_ms()

    async def _acknowledge(self, client: Any, batches: list[_Batch]) -> None:
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
            self._note_watermark(batch.symbol, logops.parse_ack(reply))

    async def _refresh_watermarks(self, client: Any) -> None:
        names = list(self._symbols)
        calls = [logops.ack_args(n, self.consumer, "", [], trim=self.settings.trim) for n in names]
        replies = await self._redis(logops.run_scripts(client, calls))
        for name, reply in zip(names, replies, strict=True):
            self._note_watermark(name, logops.parse_ack(reply))

    def _note_watermark(self, symbol: str, result: logops.AckResult) -> None:
        state = self._symbols[symbol]
        state.committed = result.committed
        state.meta_seq = result.meta_seq

    async def _sweep_consumers(self, client: Any) -> None:
        """Forget consumers of recorders that went away (nothing pending, idle for an hour)."""
        for name in list(self._symbols):
            try:
                consumers = await client.xinfo_consumers(keys.log_key(name), keys.RECORDER_GROUP)
                for info in consumers:
                    consumer = _text(info.get("name", ""))
                    if (
                        consumer != self.consumer
                        and not info.get("pending")
                        and info.get("idle", 0) > _DEAD_CONSUMER_IDLE_MS
                    ):
                        await client.xgroup_delconsumer(keys.log_key(name), keys.RECORDER_GROUP, consumer)
            except redis.ResponseError:
                continue  # no log or no group yet
            except _REDIS_ERRORS as exc:
                raise _RedisDown from exc

    async def _idle(self, client: Any, stop: asyncio.Event) -> None:
        """Wait up to block_ms for a new entry on any log (or for stop)."""
        if not self._symbols or stop.is_set() or is_cluster_url(self.redis_url):
            # On a cluster the logs live on several nodes: one blocking XREAD cannot wait on all.
            await _wait(stop, self.settings.block_ms / 1000)
            return
        streams = {keys.log_key(name): "$" for name in self._symbols}
        await self._redis(client.xread(streams, count=1, block=self.settings.block_ms))

    async def _redis(self, operation: Any) -> Any:
        try:
            return await operation
        except _REDIS_ERRORS as exc:
            for state in self._symbols.values():
                state.recover = True
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


def _valid_event(entry: logops.LogEntry) -> dict[str, Any] | None:
    try:
        event = json.loads(entry.json)
        if not isinstance(event, dict) or event.get("seq") != entry.seq:
            return None
        event_from_dict(event)  # validates every field, so a bad entry cannot poison a batch
    except (ValueError, TypeError):
        return None
    return event


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
