"""What the gateway needs from history: a time window (backfill) and everything after a seq (resume).

:class:`LogHistory` answers from the Redis log alone (everything the log still holds);
the SQL-backed source extends it with what the recorder has stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

import redis
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from publishers import keys
from publishers.events import SCHEMA, now_ms
from server.core.filters import EventFilter
from server.core.trust import check_event
from server.errors import BusError
from server.history import log_reader
from server.history.reads import load_after, load_window
from server.settings import HistorySettings


@dataclass(frozen=True, slots=True)
class Window:
    """A backfill: columnar ``data`` for the window, complete up to ``to_seq`` of ``epoch``."""

    epoch: str | None
    to_seq: int
    data: dict[str, Any]
    truncated: bool = False
    omitted: int = 0


@dataclass(frozen=True, slots=True)
class After:
    """Events after a position, or a reset when it cannot be recovered (``reset_reason``).

    Every seq up to ``reached`` that passes the filter is in ``events``; when not
    ``complete``, ask again from ``reached`` (big replays come in chunks). ``to_seq`` is
    the symbol's last seq when this was read.
    """

    epoch: str | None
    to_seq: int
    events: list[tuple[int, str]] = field(default_factory=list)
    reset_reason: str | None = None
    reached: int = 0
    complete: bool = True


#: Events one ``after`` call returns at most.
AFTER_CHUNK = 5000
#: Log entries ``read_log`` returns at most.
RECENT_READ = 1000


class HistorySource(Protocol):
    async def window(self, symbol: str, flt: EventFilter, *, minutes: int, max_points: int) -> Window: ...

    async def after(
        self, symbol: str, flt: EventFilter, *, epoch: str, seq: int, until_seq: int | None = None
    ) -> After: ...

    async def read_log(self, symbol: str, first: int, last: int) -> list[tuple[int, str]]: ...


async def read_meta(client: aioredis.Redis, symbol: str) -> tuple[str | None, int]:
    """The symbol's current epoch (None if never published) and last seq.

    Raises BusError when Redis fails, or when the meta hash is not what the publish script
    writes (wrong type, an epoch that is not a token, a seq that is not a number).
    """
    try:
        reply = await client.hmget(keys.meta_key(symbol), [keys.META_EPOCH, keys.META_SEQ])
    except redis.ResponseError as exc:
        raise BusError(f"cannot read {keys.meta_key(symbol)}: {exc}") from exc
    epoch, seq = cast(list[bytes | None], reply)
    return log_reader.meta_of(symbol, epoch, seq)


async def snapshot(client: aioredis.Redis, symbol: str) -> tuple[str | None, int, list[tuple[int, str]]]:
    """The symbol's epoch, last seq and whole log, read atomically (one MULTI on one slot)."""
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.meta_key(symbol), [keys.META_EPOCH, keys.META_SEQ])
            pipe.xrange(keys.log_key(symbol))
            (epoch, seq), entries = await pipe.execute()
    except redis.ResponseError as exc:
        raise BusError(f"cannot read {symbol}'s log from Redis: {exc}") from exc
    current, last = log_reader.meta_of(symbol, epoch, seq)
    return (current, last, log_entries(entries))


#: The history frame's columns of each kind (the event schema's).
_COLUMNS: Final = {kind: spec.history_columns for kind, spec in SCHEMA.items()}


def columnar(events: Sequence[dict[str, Any]], flt: EventFilter) -> dict[str, Any]:
    """Events as the history frame's columnar ``data`` (candles: latest per ts)."""
    data: dict[str, dict[str, list[Any]]] = {
        kind: {name: [] for name in columns} for kind, columns in _COLUMNS.items() if flt.wants_kind(kind)
    }
    candles: dict[int, dict[str, Any]] = {}
    for event in events:
        kind = event["kind"]
        if kind not in data:
            continue
        if kind == "candle":
            candles[event["ts"]] = event
            continue
        for name, column in data[kind].items():
            column.append(event.get(name))
    if "candle" in data:
        for ts in sorted(candles):
            for name, column in data["candle"].items():
                column.append(candles[ts].get(name))
    return data


class LogHistory:
    """History from the Redis log alone (what it still holds)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def window(self, symbol: str, flt: EventFilter, *, minutes: int, max_points: int) -> Window:
        epoch, seq, entries = await snapshot(self._client, symbol)
        since = now_ms() - minutes * 60_000
        events = [checked for s, raw in entries if type(checked := check_event(raw, s, symbol)) is dict]
        chosen = [e for e in events if e["ts"] >= since and flt.matches(e)]
        return Window(epoch, seq, columnar(chosen, flt))

    async def after(
        self, symbol: str, flt: EventFilter, *, epoch: str, seq: int, until_seq: int | None = None
    ) -> After:
        # Only the part after ``seq`` (at most AFTER_CHUNK entries; and the oldest entry, to
        # know whether seq+1 is still there). Invalid entries are void seqs: skipped.
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hmget(keys.meta_key(symbol), [keys.META_EPOCH, keys.META_SEQ])
                pipe.xrange(keys.log_key(symbol), min="-", max="+", count=1)
                pipe.xrange(keys.log_key(symbol), min=f"{seq + 1}-0", max="+", count=AFTER_CHUNK)
                (raw_epoch, raw_seq), oldest, tail = await pipe.execute()
        except redis.ResponseError as exc:
            raise BusError(f"cannot read {symbol}'s log from Redis: {exc}") from exc
        current, last = log_reader.meta_of(symbol, raw_epoch, raw_seq)
        entries = log_entries(tail)
        first = log_entries(oldest)[0][0] if oldest else None
        if current != epoch:
            return After(current, last, reset_reason="epoch changed")
        if seq > last:
            return After(current, last, reset_reason="position unknown")
        if seq < last and (first is None or first > seq + 1):
            return After(current, last, reset_reason="position no longer in the log")
        end = last if until_seq is None else min(until_seq, last)
        events: list[tuple[int, str]] = []
        reached = seq
        for s, raw in entries:
            if s > end:
                break
            if s != reached + 1:
                return After(current, last, reset_reason="events missing from the log")
            event = check_event(raw, s, symbol)
            if type(event) is dict and flt.matches(event):
                events.append((s, raw))
            reached = s
        if reached < end and len(entries) < AFTER_CHUNK:
            return After(current, last, reset_reason="events missing from the log")
        return After(current, last, events, reached=reached, complete=reached >= end)

    async def read_log(self, symbol: str, first: int, last: int) -> list[tuple[int, str]]:
        """The valid events the log holds for seqs first..last (at most RECENT_READ of them)."""
        try:
            entries = await self._client.xrange(
                keys.log_key(symbol), min=f"{first}-0", max=f"{last}-0", count=RECENT_READ
            )
        except redis.ResponseError as exc:
            raise BusError(f"cannot read {symbol}'s log from Redis: {exc}") from exc
        return [(s, raw) for s, raw in log_entries(entries) if type(check_event(raw, s, symbol)) is dict]


def log_entries(entries: Any) -> list[tuple[int, str]]:
    """(seq, event json) pairs of an XRANGE reply (entry ids are ``<seq>-0``; a bad entry gives '')."""
    return [(entry.seq, entry.json) for entry in log_reader.entries(entries)]


def seq_of(raw: str) -> int:
    """The seq of a valid event JSON string (server.core.trust.check_event: it starts ``{"seq":N,``)."""
    return int(raw[7 : raw.index(",", 7)])


class StoreHistory(LogHistory):
    """History from SQL plus the log's tail the recorder has not stored yet (server/history/reads.py)."""

    def __init__(self, client: aioredis.Redis, engine: AsyncEngine, settings: HistorySettings) -> None:
        super().__init__(client)
        self._engine = engine
        #: The SQL store itself (the flight recorder reads it: server/history/replay_store.py).
        self.engine = engine
        self._settings = settings

    async def window(self, symbol: str, flt: EventFilter, *, minutes: int, max_points: int) -> Window:
        minutes = min(minutes, self._settings.max_minutes)
        found = await load_window(
            self._engine,
            self._client,
            symbol,
            flt,
            since_ms=now_ms() - minutes * 60_000,
            max_points=max_points,
            max_events=self._settings.max_events,
        )
        return Window(found.epoch, found.to_seq, found.data, found.truncated, found.omitted)

    async def after(
        self, symbol: str, flt: EventFilter, *, epoch: str, seq: int, until_seq: int | None = None
    ) -> After:
        found = await load_after(
            self._engine,
            self._client,
            symbol,
            flt,
            epoch=epoch,
            seq=seq,
            limit=AFTER_CHUNK,
            until_seq=until_seq,
        )
        events = [(seq_of(raw), raw) for raw in found.events]
        return After(found.epoch, found.to_seq, events, found.reset_reason, found.reached, found.complete)
