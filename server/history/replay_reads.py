"""SQL reads of the flight recorder (docs/history.md, "Replay of a past window").

Every read here is an index seek, never a scan of the history: positions in time come
from the ``(symbol, ts)`` index (``max(ts)`` below a time, then the rows at that ts), the
events in seq order from the unique ``(symbol, epoch, seq)`` index in keyset pages.
Works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.filters import EventFilter
from server.history import queries
from server.history.columns import CandleItem, EventItem
from server.history.models import TABLES

#: A replayed event: (seq, ts, its JSON text as the publisher wrote it).
Item = tuple[int, int, str]


@dataclass(frozen=True, slots=True, order=True)
class Mark:
    """A recorded event's place: ordered by (ts, seq), then epoch (for ties across epochs)."""

    ts: int
    seq: int
    epoch: str


async def mark_before(
    connection: AsyncConnection, symbol: str, at_ms: int, *, inclusive: bool
) -> Mark | None:
    """The last recorded event (any kind, no filter) with ts < at_ms (<= with ``inclusive``)."""
    best: Mark | None = None
    for table in TABLES.values():
        bound = table.c.ts <= at_ms if inclusive else table.c.ts < at_ms
        top = (
            await connection.execute(select(func.max(table.c.ts)).where(table.c.symbol == symbol, bound))
        ).scalar()
        if top is None:
            continue
        row = (
            await connection.execute(
                select(table.c.epoch, table.c.seq)
                .where(table.c.symbol == symbol, table.c.ts == top)
                .order_by(table.c.seq.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            mark = Mark(int(top), int(row.seq), str(row.epoch))
            best = mark if best is None or mark > best else best
    return best


async def mark_from(
    connection: AsyncConnection, symbol: str, at_ms: int, *, not_epoch: str | None = None
) -> Mark | None:
    """The first recorded event with ts >= at_ms (of another epoch than ``not_epoch`` if given)."""
    best: Mark | None = None
    for table in TABLES.values():
        where: list[ColumnElement[bool]] = [table.c.symbol == symbol, table.c.ts >= at_ms]
        if not_epoch is not None:
            where.append(table.c.epoch != not_epoch)
        row = (
            await connection.execute(
                select(table.c.ts, table.c.seq, table.c.epoch).where(*where).order_by(table.c.ts).limit(1)
            )
        ).first()
        if row is not None:
            mark = Mark(int(row.ts), int(row.seq), str(row.epoch))
            best = mark if best is None or mark < best else best
    return best


async def last_of_epoch(connection: AsyncConnection, symbol: str, epoch: str) -> Mark | None:
    """The epoch's recorded event with the highest seq (from the unique index)."""
    best: Mark | None = None
    for table in TABLES.values():
        row = (
            await connection.execute(
                select(table.c.ts, table.c.seq)
                .where(table.c.symbol == symbol, table.c.epoch == epoch)
                .order_by(table.c.seq.desc())
                .limit(1)
            )
        ).first()
        if row is not None and (best is None or row.seq > best.seq):
            best = Mark(int(row.ts), int(row.seq), epoch)
    return best


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _encoder(kind: str) -> Callable[[Sequence[Any]], str]:
    """A row (seq, ts, then the kind's fields) as the JSON the publisher wrote (queries.event_json)."""
    names = queries.EVENT_FIELDS[kind]
    encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
    has_meta = "meta" in names

    def as_json(row: Sequence[Any]) -> str:
        event: dict[str, Any] = {"seq": row[0], "kind": kind}
        for name, value in zip(names, row[2:], strict=True):
            event[name] = None if value.__class__ is float and not math.isfinite(value) else value
        if has_meta and event["meta"] is None:
            event["meta"] = {}
        return encode(event)

    return as_json


_ENCODERS: Final = {kind: _encoder(kind) for kind in TABLES}


async def page(
    connection: AsyncConnection,
    kind: str,
    symbol: str,
    flt: EventFilter,
    *,
    epoch: str,
    after_seq: int,
    through_seq: int,
    limit: int,
) -> list[Item]:
    """The first ``limit`` events of one kind of ``epoch`` in (after_seq, through_seq] passing ``flt``."""
    table = TABLES[kind]
    columns = [table.c.seq, table.c.ts, *(table.c[name] for name in queries.EVENT_FIELDS[kind])]
    statement = (
        select(*columns)
        .where(
            table.c.symbol == symbol,
            table.c.epoch == epoch,
            table.c.seq > after_seq,
            table.c.seq <= through_seq,
            *queries.filter_conditions(kind, table, flt),
        )
        .order_by(table.c.seq)
        .limit(limit)
    )
    encode = _ENCODERS[kind]
    rows = (await connection.execute(statement)).all()
    return [(row[0], row[1], encode(row)) for row in rows]


# -- the history as it stood at a time ----------------------------------------------------


def _as_of(table: Any, epoch: str, seq: int, at_ms: int, below_seq: int | None) -> ColumnElement[bool]:
    """Rows the wall had at (epoch, seq) / at_ms: the epoch's up to seq, older epochs' before at_ms."""
    own = and_(table.c.epoch == epoch, table.c.seq <= seq)
    if below_seq is not None:  # the rest of the epoch comes from the log
        own = and_(own, table.c.seq < below_seq)
    return or_(own, and_(table.c.epoch != epoch, table.c.ts < at_ms))


async def window_candles_as_of(
    connection: AsyncConnection,
    symbol: str,
    *,
    since_ms: int,
    at_ms: int,
    epoch: str,
    seq: int,
    below_seq: int | None,
) -> list[CandleItem]:
    """The last update of each candle ts in the window as it stood, as CandleItems."""
    table = TABLES["candle"]
    where = [table.c.symbol == symbol, table.c.ts >= since_ms, _as_of(table, epoch, seq, at_ms, below_seq)]
    last = (
        select(table.c.epoch, table.c.ts, func.max(table.c.seq).label("seq"))
        .where(*where)
        .group_by(table.c.epoch, table.c.ts)
        .subquery()
    )
    statement = (
        select(
            table.c.epoch,
            table.c.seq,
            table.c.ts,
            table.c.open,
            table.c.high,
            table.c.low,
            table.c.close,
            table.c.volume,
        )
        .join(last, and_(table.c.ts == last.c.ts, table.c.epoch == last.c.epoch, table.c.seq == last.c.seq))
        .where(*where)
    )
    rows = (await connection.execute(statement)).all()
    return [(ts, e == epoch, s, o, h, lo, c, v) for e, s, ts, o, h, lo, c, v in rows]


async def window_events_as_of(
    connection: AsyncConnection,
    kind: str,
    symbol: str,
    flt: EventFilter,
    *,
    since_ms: int,
    at_ms: int,
    epoch: str,
    seq: int,
    below_seq: int | None,
    limit: int,
) -> tuple[list[EventItem], int]:
    """The latest ``limit`` signals/trades/statuses of the window as it stood, and how many in all."""
    table = TABLES[kind]
    fields = queries.WINDOW_FIELDS[kind]
    statement = select(table.c.epoch, *(table.c[name] for name in fields)).where(
        table.c.symbol == symbol,
        table.c.ts >= since_ms,
        _as_of(table, epoch, seq, at_ms, below_seq),
        *queries.filter_conditions(kind, table, flt),
    )
    rows = (
        await connection.execute(statement.order_by(table.c.ts.desc(), table.c.seq.desc()).limit(limit))
    ).all()
    total = len(rows)
    if total >= limit:
        counted = select(func.count()).select_from(statement.subquery())
        total = int((await connection.execute(counted)).scalar_one())
    # row: epoch, then fields (seq, ts, ...); an older epoch's seq is null in the frame.
    items: list[EventItem] = [
        (r[2], r[0] == epoch, r[1], kind, tuple(r[1:]) if r[0] == epoch else (None, *r[2:])) for r in rows
    ]
    return items, total
