"""History for subscriptions: a time-window backfill and an exact replay after a seq.

The consistency rule: the symbol's meta (epoch E, last seq S) and the head of its log are
read in one MULTI/EXEC (all keys share the symbol's hash slot). The log holds seqs F..S;
the recorder trims only behind what it has committed, so SQL holds every seq < F of E,
and SQL is read after Redis. So the events of E are SQL rows with seq < F plus log
entries with seq >= F, with nothing missing or twice. A long log is read in chunks, each
in a MULTI/EXEC with the epoch: if the recorder trimmed entries meanwhile, the first seq
of the next chunk rises, and everything below it is committed too (F moves up); if the
epoch changed, the read starts again (window) or the caller gets a reset (replay).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from publishers.events import SCHEMA, now_ms
from server.core.filters import EventFilter
from server.core.trust import check_event
from server.errors import BusError, StoreError
from server.history import log_reader, queries
from server.history.columns import (
    CandleItem,
    EventItem,
    candle_columns,
    event_columns,
    keep_latest,
    latest_candles,
)
from server.history.models import TABLES

#: Log entries per MULTI/EXEC read.
LOG_CHUNK: Final = 5000
#: Log entries one load_after call examines at most (the caller loops).
MAX_SCAN: Final = 50_000
_WINDOW_ATTEMPTS: Final = 5
_NON_CANDLE: Final = tuple(kind for kind in SCHEMA if kind != "candle")


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """A time-window backfill: the ``data`` of a history frame, up to ``to_seq`` of ``epoch``."""

    epoch: str | None
    to_seq: int
    data: dict[str, dict[str, list[Any]]]
    truncated: bool = False
    #: Signals, trades and statuses left out past max_events (the latest were kept).
    omitted: int = 0


@dataclass(frozen=True, slots=True)
class AfterResult:
    """Events after a seq, as their JSON strings, in seq order.

    Every seq in (from_seq - 1, reached] that passes the filter is in ``events``;
    ``complete`` means reached is the symbol's last seq (or ``until_seq``). When
    ``reset_reason`` is set the position cannot be recovered: send a reset and a fresh window.
    """

    epoch: str | None
    from_seq: int
    reached: int
    to_seq: int
    events: list[str] = field(default_factory=list)
    complete: bool = True
    reset_reason: str | None = None

    @property
    def reset(self) -> bool:
        return self.reset_reason is not None


@contextlib.asynccontextmanager
async def _database(engine: AsyncEngine, symbol: str) -> AsyncIterator[AsyncConnection]:
    """A connection whose failures surface as StoreError."""
    try:
        async with engine.connect() as connection:
            yield connection
    except (SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot read {symbol}'s history from the database: {exc}") from exc


# -- the time window ---------------------------------------------------------------------


@dataclass(slots=True)
class _LogPart:
    epoch: str | None
    seq: int
    first_in_log: int  # F: every seq below it is in SQL
    events: list[dict[str, Any]]


async def _read_log_part(client: aioredis.Redis, symbol: str, flt: EventFilter, since_ms: int) -> _LogPart:
    snapshot = await log_reader.snapshot(client, symbol, 0, LOG_CHUNK)
    if snapshot.epoch is None:  # never published, or its meta is gone: only older epochs in SQL
        return _LogPart(None, 0, 1, [])
    first = snapshot.entries[0].seq if snapshot.entries else snapshot.seq + 1
    part = _LogPart(snapshot.epoch, snapshot.seq, first, [])
    chunk = snapshot.entries
    while True:
        for entry in chunk:
            event = check_event(entry.json, entry.seq, symbol)
            # An invalid entry is a void seq: skipped, as the recorder and the live path skip it.
            if type(event) is dict and event["ts"] >= since_ms and flt.matches(event):
                part.events.append(event)
        if len(chunk) < LOG_CHUNK or chunk[-1].seq >= snapshot.seq:
            return part
        position = chunk[-1].seq + 1
        chunk = await log_reader.chunk(client, symbol, snapshot.epoch, position, snapshot.seq, LOG_CHUNK)
        head = chunk[0].seq if chunk else snapshot.seq + 1
        if head > position:
            # The recorder trimmed what we had not read yet: all of it (and below) is committed.
            part.first_in_log = head
            part.events = []


async def _read_sql_part(
    engine: AsyncEngine, symbol: str, flt: EventFilter, since_ms: int, log_part: _LogPart, max_events: int
) -> tuple[list[CandleItem], list[EventItem], int]:
    candles: list[CandleItem] = []
    events: list[EventItem] = []
    total = 0
    epoch, below = log_part.epoch, log_part.first_in_log
    async with _database(engine, symbol) as connection:
        if flt.wants_kind("candle"):
            rows = await queries.window_candles(
                connection, symbol, since_ms=since_ms, epoch=epoch, below_seq=below
            )
            # row: epoch, seq, ts, open, high, low, close, volume
            candles = [(ts, e == epoch, seq, o, h, lo, c, v) for e, seq, ts, o, h, lo, c, v in rows]
        for kind in _NON_CANDLE:
            if not flt.wants_kind(kind):
                continue
            rows, count = await queries.window_events(
                connection,
                kind,
                symbol,
                flt,
                since_ms=since_ms,
                epoch=epoch,
                below_seq=below,
                limit=max_events,
            )
            total += count
            # row: epoch, then WINDOW_FIELDS[kind], which start with seq, ts. A row of an older
            # epoch has no seq in the frame (null): seqs restarted at the reset, and the frame's
            # seqs are the current epoch's (docs/protocol.md, "history").
            events.extend(
                (r[2], r[0] == epoch, r[1], kind, tuple(r[1:]) if r[0] == epoch else (None, *r[2:]))
                for r in rows
            )
    return candles, events, total


async def load_window(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    symbol: str,
    flt: EventFilter,
    *,
    since_ms: int,
    max_points: int,
    max_events: int,
) -> HistoryWindow:
    """The filtered events of ``symbol`` with ts >= since_ms up to the symbol's current seq.

    Includes rows of older epochs (the chart stays continuous across a Redis reset).
    Raises BusError / StoreError when Redis / the database fails.
    """
    for _ in range(_WINDOW_ATTEMPTS):
        try:
            log_part = await _read_log_part(redis_client, symbol, flt, since_ms)
            break
        except log_reader.EpochMoved:
            continue  # a new epoch began while reading: read the new one
    else:
        raise BusError(f"{symbol}'s epoch kept changing while its history was read")
    candles, events, total = await _read_sql_part(engine, symbol, flt, since_ms, log_part, max_events)
    return assemble_window(
        flt,
        log_part.epoch,
        log_part.seq,
        (candles, events, total),
        log_part.events,
        max_points=max_points,
        max_events=max_events,
    )


def assemble_window(
    flt: EventFilter,
    epoch: str | None,
    to_seq: int,
    sql_part: tuple[list[CandleItem], list[EventItem], int],
    log_events: Iterable[dict[str, Any]],
    *,
    max_points: int,
    max_events: int,
) -> HistoryWindow:
    """The history frame of a window: SQL's part (candles, events and how many events match in
    all) plus the log's events of the current epoch, the latest ``max_events`` events kept."""
    candles, events, total = sql_part
    for event in log_events:
        kind = event["kind"]
        if kind == "candle":
            candles.append(
                (
                    event["ts"],
                    True,
                    event["seq"],
                    event["open"],
                    event["high"],
                    event["low"],
                    event["close"],
                    event["volume"],
                )
            )
        else:
            values = tuple(event.get(name) for name in queries.WINDOW_FIELDS[kind])
            events.append((event["ts"], True, event["seq"], kind, values))
            total += 1
    kept, omitted = keep_latest(events, max_events, total)
    data: dict[str, dict[str, list[Any]]] = {}
    for kind in TABLES:
        if not flt.wants_kind(kind):
            continue
        if kind == "candle":
            data["candle"] = candle_columns(latest_candles(candles), max_points)
        else:
            data[kind] = event_columns([e for e in kept if e[3] == kind], queries.WINDOW_FIELDS[kind])
    return HistoryWindow(epoch, to_seq, data, truncated=omitted > 0, omitted=omitted)


async def history_payload(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    symbol: str,
    flt: EventFilter,
    minutes: int,
    max_points: int,
    max_events: int,
) -> dict[str, Any]:
    """The body of ``GET /api/history``: the window's columnar data with epoch, to_seq and truncation."""
    since = now_ms() - minutes * 60_000
    window = await load_window(
        engine, redis_client, symbol, flt, since_ms=since, max_points=max_points, max_events=max_events
    )
    return {
        "symbol": symbol,
        "epoch": window.epoch,
        "to_seq": window.to_seq,
        "since": since,
        "filter": flt.to_json(),
        "truncated": window.truncated,
        "omitted": window.omitted,
        "data": window.data,
    }


# -- the replay after a seq --------------------------------------------------------------


def _reset(epoch: str | None, seq: int, last: int, reason: str) -> AfterResult:
    return AfterResult(epoch, seq + 1, seq, last, [], complete=False, reset_reason=reason)


async def load_after(
    engine: AsyncEngine,
    redis_client: aioredis.Redis,
    symbol: str,
    flt: EventFilter,
    *,
    epoch: str | None,
    seq: int,
    limit: int,
    until_seq: int | None = None,
) -> AfterResult:
    """The events of ``symbol`` after ``seq`` of ``epoch`` that pass ``flt``, in seq order, exactly once.

    At most ``limit`` events per call: call again from ``reached`` until ``complete``.
    ``until_seq`` stops early (filling a known hole). ``epoch=None, seq=0`` means the
    caller has nothing yet: the current epoch is replayed from its start. Returns a
    reset when the epoch changed, ``seq`` is ahead of the symbol, or the events are
    in neither the log nor SQL. Raises BusError / StoreError when Redis / the database fails.
    """
    if seq < 0:
        raise ValueError(f"seq: must be at least 0, got {seq}")
    return await _load_after(engine, redis_client, symbol, flt, epoch, seq, max(1, limit), until_seq)


async def _load_after(
    engine: AsyncEngine,
    client: aioredis.Redis,
    symbol: str,
    flt: EventFilter,
    epoch: str | None,
    seq: int,
    limit: int,
    until_seq: int | None,
) -> AfterResult:
    snapshot = await log_reader.snapshot(client, symbol, seq + 1, min(max(limit, 500), LOG_CHUNK))
    current, last = snapshot.epoch, snapshot.seq
    if current is None:
        if epoch is None and seq == 0:
            return AfterResult(None, 1, 0, 0)
        return _reset(current, seq, last, "the symbol's state is gone from Redis; a new epoch will start")
    if epoch is None and seq == 0:
        epoch = current  # the caller has nothing: everything of the current epoch
    if epoch != current:
        return _reset(current, seq, last, "epoch changed")
    if seq > last:
        return _reset(current, seq, last, f"seq {seq} is ahead of the symbol's last seq {last}")
    target = last if until_seq is None else max(seq, min(last, until_seq))
    result = AfterResult(current, seq + 1, seq, last, [], complete=seq >= target)
    if result.complete:
        return result
    first_in_log = snapshot.entries[0].seq if snapshot.entries else last + 1
    reached = seq
    if first_in_log > seq + 1:
        # The start has left the log: SQL holds every seq below first_in_log.
        through = min(first_in_log - 1, target)
        async with _database(engine, symbol) as connection:
            found = await queries.events_after(
                connection, symbol, flt, epoch=current, after_seq=seq, through_seq=through, limit=limit
            )
            if len(found) >= limit:
                through = found[limit - 1][0]
            recorded = await queries.count_recorded(connection, symbol, current, seq + 1, through)
        if recorded != through - seq:
            missing = through - seq - recorded
            reason = (
                f"{missing} events in {seq + 1}..{through} were dropped from the log before being recorded"
            )
            return _reset(current, seq, last, reason)
        result.events.extend(json_text for _, json_text in found)
        reached = through
        if len(result.events) >= limit or reached >= target:
            return _done(result, reached, target)
    return await _after_from_log(client, symbol, flt, result, snapshot.entries, reached, target, limit)


async def _after_from_log(
    client: aioredis.Redis,
    symbol: str,
    flt: EventFilter,
    result: AfterResult,
    chunk: list[log_reader.LogEntry],
    reached: int,
    target: int,
    limit: int,
) -> AfterResult:
    assert result.epoch is not None
    scanned = 0
    while True:
        for entry in chunk:
            if entry.seq <= reached:
                continue
            if entry.seq != reached + 1 or entry.seq > target:
                # Trimmed behind a commit since the last read (the next call takes it from SQL), or done.
                return _done(result, reached, target)
            # An invalid entry is a void seq: skipped, as the recorder skips it (server/core/trust.py).
            event = check_event(entry.json, entry.seq, symbol)
            if type(event) is dict and flt.matches(event):
                result.events.append(entry.json)
            reached = entry.seq
            scanned += 1
            if len(result.events) >= limit or reached >= target or scanned >= MAX_SCAN:
                return _done(result, reached, target)
        try:
            chunk = await log_reader.chunk(client, symbol, result.epoch, reached + 1, target, LOG_CHUNK)
        except log_reader.EpochMoved:
            return _reset(None, result.from_seq - 1, result.to_seq, "epoch changed")
        if not chunk:
            return _done(result, reached, target)


def _done(result: AfterResult, reached: int, target: int) -> AfterResult:
    return AfterResult(
        result.epoch, result.from_seq, reached, result.to_seq, result.events, complete=reached >= target
    )
