"""The flight recorder's reading side: where a time is, the history as it stood then, and a
cursor over the recorded events in seq order (SQL, then the Redis log's tail), epoch after epoch.

Memory is bounded per cursor: at most one page per event table is held (keyset pages on the
``(symbol, epoch, seq)`` index), plus one log chunk. The consistency rule is the one of
every read (docs/history.md): the log holds seqs F..S of the current epoch and SQL every
seq below F, so the current epoch is read from SQL below F and from the log from F on.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.filters import EventFilter
from server.core.trust import check_event
from server.history import log_reader, replay_reads
from server.history.columns import CandleItem, EventItem
from server.history.models import TABLES
from server.history.reads import LOG_CHUNK, HistoryWindow, _database, assemble_window
from server.history.replay_reads import Item, Mark
from server.history.source import read_meta

#: Rows per table per SQL page (bounded memory: at most one page per table is held).
PAGE_ROWS: Final = 5000
#: Log entries a position lookup examines at most (the log's tail not yet recorded).
MAX_LOG_SCAN: Final = 100_000
_SEQ = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Position:
    """After ``seq`` of ``epoch``, at recorded time ``ts`` (epoch None: nothing recorded)."""

    epoch: str | None
    seq: int
    ts: int


@dataclass(frozen=True, slots=True)
class Events:
    """Every event of ``epoch`` in (after, reached] that passes the filter (``items`` in seq order)."""

    epoch: str
    after: int
    reached: int
    items: list[Item]


@dataclass(frozen=True, slots=True)
class NewEpoch:
    """The recorded stream moved to ``epoch`` at ``ts`` (a reset, as it happened): position (epoch, 0)."""

    epoch: str
    ts: int


@dataclass(frozen=True, slots=True)
class End:
    """The window's end (``to``) is reached at ``reached`` of ``epoch``."""

    epoch: str | None
    reached: int


@dataclass(frozen=True, slots=True)
class LiveEdge:
    """Everything recorded so far is played (``to: "live"``): hand over at (epoch, seq)."""

    epoch: str | None
    seq: int


Step = Events | NewEpoch | End | LiveEdge


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


@dataclass(slots=True)
class _Table:
    """One kind's keyset page: rows fetched after ``fetched`` up to the segment's end."""

    kind: str
    rows: list[Item] = field(default_factory=list)
    #: The keyset: the last seq fetched (the segment's end once the table has nothing more).
    fetched: int = 0


class ReplayCursor:
    """The recorded events after a position, in seq order, page by page, across epochs.

    ``end`` None follows the recording up to the live edge (``to: "live"``), else stops at
    the mark ``end`` (the last event recorded at or before ``to``).
    """

    def __init__(
        self,
        store: ReplayStore,
        symbol: str,
        flt: EventFilter,
        start: Position,
        end: Mark | None,
        *,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        self.store = store
        self.symbol = symbol
        self.flt = flt
        self.end = end
        self.page_rows = page_rows
        self.epoch = start.epoch
        self.position = start.seq
        self._tables: list[_Table] = []
        self._epoch_last: int | None = None

    def __repr__(self) -> str:
        return f"ReplayCursor({self.symbol}, epoch={self.epoch}, position={self.position})"

    def _prepare(self, through: int) -> None:
        """Keep each table's buffered page to (position, through]: the log may have moved the
        position on since, and a table whose keyset reached ``through`` has nothing more."""
        if not self._tables:
            self._tables = [
                _Table(kind, fetched=self.position) for kind in TABLES if self.flt.wants_kind(kind)
            ]
        for table in self._tables:
            rows = table.rows
            if rows and rows[0][0] <= self.position:
                del rows[: bisect.bisect_right(rows, self.position, key=_SEQ)]
            if rows and rows[-1][0] > through:
                del rows[bisect.bisect_right(rows, through, key=_SEQ) :]
            if not rows:
                table.fetched = max(table.fetched, self.position)
            table.fetched = min(table.fetched, through)

    async def next(self) -> Step:
        """The next step of the replay: a page of events, an epoch change, the end or the live edge."""
        epoch = self.epoch
        if epoch is None:
            return await self._no_epoch()
        # Only the log's first entry after the position: whether it is there (read the log) or
        # not yet (SQL holds everything below it).
        snapshot = await log_reader.snapshot(self.store.redis, self.symbol, self.position + 1, 1)
        stop = self.end.seq if self.end is not None and self.end.epoch == epoch else None
        if snapshot.epoch == epoch:
            target = snapshot.seq if stop is None else min(stop, snapshot.seq)
            if self.position >= target:
                return self._at_end(epoch)
            entries = snapshot.entries
            if entries and entries[0].seq == self.position + 1:
                try:
                    chunk = await log_reader.chunk(
                        self.store.redis, self.symbol, epoch, self.position + 1, target, LOG_CHUNK
                    )
                except log_reader.EpochMoved:
                    return await self.next()  # the epoch ended meanwhile: read it from SQL
                return self._from_log(epoch, chunk, target)
            first_in_log = entries[0].seq if entries else snapshot.seq + 1
            return await self._from_sql(epoch, min(target, first_in_log - 1))
        if self._epoch_last is None:
            async with _database(self.store.engine, self.symbol) as connection:
                last = await replay_reads.last_of_epoch(connection, self.symbol, epoch)
            self._epoch_last = last.seq if last is not None else self.position
        target = self._epoch_last if stop is None else min(stop, self._epoch_last)
        if self.position >= target:
            if stop is not None:
                return End(epoch, self.position)
            following = await self.store.epoch_after(self.symbol, epoch)
            if following is None:
                return End(epoch, self.position) if self.end is not None else LiveEdge(epoch, self.position)
            if self.end is not None and (following.ts, 0) > (self.end.ts, self.end.seq):
                return End(epoch, self.position)
            self._enter(following.epoch)
            return following
        return await self._from_sql(epoch, target)

    def _enter(self, epoch: str) -> None:
        self.epoch, self.position = epoch, 0
        self._tables, self._epoch_last = [], None

    def _at_end(self, epoch: str) -> Step:
        if self.end is None:
            return LiveEdge(epoch, self.position)
        return End(epoch, self.position)

    async def _no_epoch(self) -> Step:
        current, _seq = await _meta(self.store.redis, self.symbol)
        if current is None:
            return End(None, 0) if self.end is not None else LiveEdge(None, 0)
        following = NewEpoch(current, 0)
        self._enter(current)
        return following

    def _from_log(self, epoch: str, entries: list[log_reader.LogEntry], target: int) -> Events:
        items: list[Item] = []
        after = reached = self.position
        flt, symbol = self.flt, self.symbol
        for entry in entries:
            if entry.seq != reached + 1 or entry.seq > target:
                break
            event = check_event(entry.json, entry.seq, symbol)
            # An invalid entry is a void seq: skipped, as the live path and the recorder skip it.
            if type(event) is dict and flt.matches(event):
                items.append((entry.seq, event["ts"], entry.json))
            reached = entry.seq
        self.position = reached
        return Events(epoch, after, reached, items)

    async def _from_sql(self, epoch: str, through: int) -> Events:
        """The next pages of the event tables in (position, through], merged in seq order."""
        self._prepare(through)
        after = self.position
        async with _database(self.store.engine, self.symbol) as connection:
            for table in self._tables:
                if not table.rows and table.fetched < through:
                    await self._fill(connection, table, epoch, through)
        pending = [t.fetched for t in self._tables if t.fetched < through]
        bound = min(pending) if pending else through
        items: list[Item] = []
        for table in self._tables:
            cut = bisect.bisect_right(table.rows, bound, key=_SEQ)
            if cut:
                items.extend(table.rows[:cut])
                del table.rows[:cut]
        if len(self._tables) > 1:
            items.sort(key=_SEQ)
        self.position = max(after, bound)
        return Events(epoch, after, self.position, items)

    async def _fill(self, connection: AsyncConnection, table: _Table, epoch: str, through: int) -> None:
        rows = await replay_reads.page(
            connection,
            table.kind,
            self.symbol,
            self.flt,
            epoch=epoch,
            after_seq=table.fetched,
            through_seq=through,
            limit=self.page_rows,
        )
        table.rows = rows
        table.fetched = through if len(rows) < self.page_rows else rows[-1][0]
