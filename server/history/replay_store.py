"""The flight recorder's position lookups: where a time is in the recording (SQL, then the Redis
log's tail), the epoch after another, and the history as it stood at a position.

The consistency rule is the one of every read (docs/history.md): the log holds seqs F..S of the
current epoch and SQL every seq below F, so the current epoch is read from SQL below F and from the
log from F on. The cursor over the recorded events is server/history/replay_cursor.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.filters import EventFilter
from server.core.trust import check_event
from server.history import log_reader, replay_reads
from server.history.columns import CandleItem, EventItem
from server.history.reads import LOG_CHUNK, HistoryWindow, _database, assemble_window
from server.history.replay_reads import Mark
from server.history.source import read_meta

#: Log entries a position lookup examines at most (the log's tail not yet recorded).
MAX_LOG_SCAN: Final = 100_000


@dataclass(frozen=True, slots=True)
class Position:
    """After ``seq`` of ``epoch``, at recorded time ``ts`` (epoch None: nothing recorded)."""

    epoch: str | None
    seq: int
    ts: int


@dataclass(frozen=True, slots=True)
class NewEpoch:
    """The recorded stream moved to ``epoch`` at ``ts`` (a reset, as it happened): position (epoch, 0)."""

    epoch: str
    ts: int


class ReplayStore:
    """Position lookups and as-of-time histories of one database and Redis."""

    def __init__(self, engine: AsyncEngine, redis: aioredis.Redis) -> None:
        self.engine = engine
        self.redis = redis

    async def _log_marks(
        self, symbol: str, at_ms: int, *, inclusive: bool
    ) -> tuple[str | None, Mark | None, Mark | None]:
        """The current epoch, and its last log event before ``at_ms`` and first at/after it."""
        snapshot = await log_reader.snapshot(self.redis, symbol, 0, 1)
        before = after = None
        entries, scanned = snapshot.entries, 0
        if entries:
            first = check_event(entries[0].json, entries[0].seq, symbol)
            if type(first) is dict and first["ts"] > at_ms + replay_reads.FUTURE_SLACK_MS:
                # The log holds only what was recorded long after: nothing to look for there.
                return snapshot.epoch, None, Mark(first["ts"], entries[0].seq, snapshot.epoch or "")
        if entries and snapshot.epoch is not None:
            entries = await _log_chunk(self.redis, symbol, snapshot.epoch, entries[0].seq, snapshot.seq)
        while snapshot.epoch is not None and entries:
            for entry in entries:
                event = check_event(entry.json, entry.seq, symbol)
                if type(event) is not dict:
                    continue
                mark = Mark(event["ts"], entry.seq, snapshot.epoch)
                if event["ts"] < at_ms or (inclusive and event["ts"] == at_ms):
                    before = mark if before is None or mark > before else before
                elif after is None or mark < after:
                    after = mark
            scanned += len(entries)
            if len(entries) < LOG_CHUNK or scanned >= MAX_LOG_SCAN:
                break
            try:
                entries = await log_reader.chunk(
                    self.redis, symbol, snapshot.epoch, entries[-1].seq + 1, snapshot.seq, LOG_CHUNK
                )
            except log_reader.EpochMoved:
                break
        return snapshot.epoch, before, after

    async def mark_at(self, symbol: str, at_ms: int, *, inclusive: bool = False) -> Mark | None:
        """The last recorded event with ts < at_ms (<= with ``inclusive``), in SQL or the log."""
        _, in_log, _ = await self._log_marks(symbol, at_ms, inclusive=inclusive)
        async with _database(self.engine, symbol) as connection:
            in_sql = await replay_reads.mark_before(connection, symbol, at_ms, inclusive=inclusive)
        return max((m for m in (in_sql, in_log) if m is not None), default=None)

    async def end_mark(self, symbol: str, to_ms: int) -> Mark | None:
        """Where a window ending at ``to_ms`` (inclusive) stops: after the last event recorded at or
        before it; when nothing is recorded after it, after the last seq of that epoch (events
        stamped earlier than others, such as a candle's updates, are not left out at the end)."""
        current, in_log, first_after_log = await self._log_marks(symbol, to_ms, inclusive=True)
        async with _database(self.engine, symbol) as connection:
            in_sql = await replay_reads.mark_before(connection, symbol, to_ms, inclusive=True)
            mark = max((m for m in (in_sql, in_log) if m is not None), default=None)
            if mark is None or first_after_log is not None:
                return mark
            if await replay_reads.mark_from(connection, symbol, to_ms + 1) is not None:
                return mark
            last = await replay_reads.last_of_epoch(connection, symbol, mark.epoch)
        seq = max(mark.seq, last.seq if last is not None else 0)
        if mark.epoch == current:
            seq = max(seq, (await _meta(self.redis, symbol))[1])
        return Mark(mark.ts, seq, mark.epoch)

    async def locate(self, symbol: str, at_ms: int) -> Position:
        """The position a live subscriber had at ``at_ms``: after the last event recorded before it."""
        current, in_log, first_log = await self._log_marks(symbol, at_ms, inclusive=False)
        async with _database(self.engine, symbol) as connection:
            in_sql = await replay_reads.mark_before(connection, symbol, at_ms, inclusive=False)
            before = max((m for m in (in_sql, in_log) if m is not None), default=None)
            if before is not None:
                return Position(before.epoch, before.seq, at_ms)
            first_sql = await replay_reads.mark_from(connection, symbol, at_ms)
        first = min((m for m in (first_sql, first_log) if m is not None), default=None)
        if first is not None:  # nothing before: the whole epoch recorded first from its start
            return Position(first.epoch, 0, at_ms)
        return Position(current, 0, at_ms)

    async def epoch_after(self, symbol: str, epoch: str) -> NewEpoch | None:
        """The epoch recorded after ``epoch`` (the next reset), if any."""
        async with _database(self.engine, symbol) as connection:
            last = await replay_reads.last_of_epoch(connection, symbol, epoch)
            following = await replay_reads.mark_from(
                connection, symbol, last.ts if last is not None else 0, not_epoch=epoch
            )
        if following is not None:
            return NewEpoch(following.epoch, following.ts)
        current, _seq = await _meta(self.redis, symbol)
        if current is not None and current != epoch:
            return NewEpoch(current, last.ts if last is not None else 0)
        return None

    async def window_as_of(
        self,
        symbol: str,
        flt: EventFilter,
        position: Position,
        *,
        minutes: int,
        max_points: int,
        max_events: int,
    ) -> HistoryWindow:
        """The history frame's data a wall had at ``position`` (its window: ``minutes`` before it)."""
        epoch = position.epoch or ""
        since = position.ts - minutes * 60_000
        candles: list[CandleItem] = []
        events: list[EventItem] = []
        total = 0
        log_events, below = await self._log_window(symbol, flt, position, since)
        async with _database(self.engine, symbol) as connection:
            if flt.wants_kind("candle"):
                candles = await replay_reads.window_candles_as_of(
                    connection,
                    symbol,
                    since_ms=since,
                    at_ms=position.ts,
                    epoch=epoch,
                    seq=position.seq,
                    below_seq=below,
                )
            for kind in ("signal", "trade", "bot"):
                if flt.wants_kind(kind):
                    found, count = await replay_reads.window_events_as_of(
                        connection,
                        kind,
                        symbol,
                        flt,
                        since_ms=since,
                        at_ms=position.ts,
                        epoch=epoch,
                        seq=position.seq,
                        below_seq=below,
                        limit=max_events,
                    )
                    events.extend(found)
                    total += count
        return assemble_window(
            flt,
            position.epoch,
            position.seq,
            (candles, events, total),
            log_events,
            max_points=max_points,
            max_events=max_events,
        )

    async def _log_window(
        self, symbol: str, flt: EventFilter, position: Position, since: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The log's events of the position's epoch up to its seq in the window, and the log's first seq."""
        snapshot = await log_reader.snapshot(self.redis, symbol, 0, 1)
        if snapshot.epoch is None or snapshot.epoch != position.epoch:
            return [], None
        first = snapshot.entries[0].seq if snapshot.entries else snapshot.seq + 1
        found: list[dict[str, Any]] = []
        if first > position.seq:  # the position is recorded: nothing of the window in the log
            return found, first
        entries = await _log_chunk(self.redis, symbol, snapshot.epoch, first, position.seq)
        while entries:
            for entry in entries:
                if entry.seq > position.seq:
                    return found, first
                event = check_event(entry.json, entry.seq, symbol)
                if type(event) is dict and event["ts"] >= since and flt.matches(event):
                    found.append(event)
            if len(entries) < LOG_CHUNK:
                break
            try:
                entries = await log_reader.chunk(
                    self.redis, symbol, snapshot.epoch, entries[-1].seq + 1, position.seq, LOG_CHUNK
                )
            except log_reader.EpochMoved:
                break
        return found, first


async def _log_chunk(
    redis: aioredis.Redis, symbol: str, epoch: str, start: int, end: int
) -> list[log_reader.LogEntry]:
    try:
        return await log_reader.chunk(redis, symbol, epoch, start, end, LOG_CHUNK)
    except log_reader.EpochMoved:
        return []


async def _meta(redis: aioredis.Redis, symbol: str) -> tuple[str | None, int]:
    return await read_meta(redis, symbol)
