"""The flight recorder's replay: a cursor over the recorded events in seq order (SQL, then the
Redis log's tail), epoch after epoch, from a position found by
:class:`~server.history.replay_store.ReplayStore`.

Memory is bounded per cursor: at most one page per event table is held (keyset pages on the
``(symbol, epoch, seq)`` index), plus one log chunk. The consistency rule is the one of
every read (docs/history.md): the log holds seqs F..S of the current epoch and SQL every
seq below F, so the current epoch is read from SQL below F and from the log from F on.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.filters import EventFilter
from server.core.trust import check_event
from server.history import log_reader, replay_reads
from server.history.models import TABLES
from server.history.reads import LOG_CHUNK, _database
from server.history.replay_reads import Item, Mark
from server.history.replay_store import NewEpoch, Position, ReplayStore
from server.history.source import read_meta

#: Rows per table per SQL page (bounded memory: at most one page per table is held).
PAGE_ROWS: Final = 5000
_SEQ = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Events:
    """Every event of ``epoch`` in (after, reached] that passes the filter (``items`` in seq order)."""

    epoch: str
    after: int
    reached: int
    items: list[Item]


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
        current, _seq = await read_meta(self.store.redis, self.symbol)
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
