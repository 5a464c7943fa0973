"""History reads in SQL: time windows, seq ranges and completeness counts, filters pushed down.

Every query is bounded by symbol and by ts or seq (the indexes ``(symbol, ts)`` and
``(symbol, epoch, seq)``); the subscription filter becomes WHERE clauses, so only rows
the client will see leave the database. Works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, Table, and_, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from publishers.events import FILTER_FIELDS, SCHEMA, kinds_with
from server.core.filters import EventFilter
from server.history.models import TABLES, VoidRow

#: The fields of each kind in the order of ``Event.to_dict`` (after "seq" and "kind").
EVENT_FIELDS: Final[dict[str, tuple[str, ...]]] = {kind: spec.names for kind, spec in SCHEMA.items()}

#: The columns of each kind in a history window (``data`` of the history frame, plus epoch).
WINDOW_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    kind: spec.history_columns for kind, spec in SCHEMA.items()
}

#: Filter key -> (the column it looks at, the kinds that have it).
_FILTERED: Final = {key: (name, frozenset(kinds_with(name))) for key, name in FILTER_FIELDS.items()}


def table_of(kind: str) -> Table:
    return TABLES[kind]


def filter_conditions(kind: str, table: Table, flt: EventFilter) -> list[ColumnElement[bool]]:
    """The filter as WHERE clauses for one kind's table (same semantics as ``EventFilter.matches``)."""
    conditions: list[ColumnElement[bool]] = []
    for key, (name, kinds) in _FILTERED.items():
        wanted = getattr(flt, key)
        if wanted is None or kind not in kinds:
            continue
        column = table.c[name]
        conditions.append(column >= wanted if key == "min_confidence" else column.in_(wanted))
    return conditions


def _recorded_part(table: Table, epoch: str | None, below_seq: int) -> list[ColumnElement[bool]]:
    """Rows of older epochs, and of ``epoch`` only below ``below_seq`` (the rest comes from the log)."""
    if epoch is None:
        return []
    return [or_(table.c.epoch != epoch, table.c.seq < below_seq)]


def _window_where(
    kind: str, table: Table, symbol: str, flt: EventFilter, since_ms: int, epoch: str | None, below_seq: int
) -> list[ColumnElement[bool]]:
    return [
        table.c.symbol == symbol,
        table.c.ts >= since_ms,
        *_recorded_part(table, epoch, below_seq),
        *filter_conditions(kind, table, flt),
    ]


def last_candles(table: Table, where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """The last update of each candle among the rows ``where`` picks (highest seq per epoch and ts).

    Rows: epoch, seq, ts, open, high, low, close, volume (unordered).
    """
    last = (
        select(table.c.epoch, table.c.ts, func.max(table.c.seq).label("seq"))
        .where(*where)
        .group_by(table.c.epoch, table.c.ts)
        .subquery()
    )
    return (
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
        .where(*where)  # repeated so that both sides scan only the window
    )


async def window_candles(
    connection: AsyncConnection, symbol: str, *, since_ms: int, epoch: str | None, below_seq: int
) -> Sequence[Any]:
    """The last update of each candle (highest seq per epoch and ts) in the window, by ts.

    Rows: epoch, seq, ts, open, high, low, close, volume.
    """
    table = table_of("candle")
    where = _window_where("candle", table, symbol, EventFilter(), since_ms, epoch, below_seq)
    statement = last_candles(table, where).order_by(table.c.ts, table.c.seq)
    rows: Sequence[Any] = (await connection.execute(statement)).all()
    return rows


def _window_select(
    kind: str, symbol: str, flt: EventFilter, since_ms: int, epoch: str | None, below_seq: int
) -> Select[Any]:
    table = table_of(kind)
    columns = [table.c.epoch, *(table.c[name] for name in WINDOW_FIELDS[kind])]
    return select(*columns).where(*_window_where(kind, table, symbol, flt, since_ms, epoch, below_seq))


async def window_events(
    connection: AsyncConnection,
    kind: str,
    symbol: str,
    flt: EventFilter,
    *,
    since_ms: int,
    epoch: str | None,
    below_seq: int,
    limit: int,
) -> tuple[Sequence[Any], int]:
    """The latest ``limit`` signals/trades/statuses of the window (newest first) and how many match in all.

    Rows: epoch, then ``WINDOW_FIELDS[kind]``.
    """
    table = table_of(kind)
    statement = _window_select(kind, symbol, flt, since_ms, epoch, below_seq)
    rows = (
        await connection.execute(statement.order_by(table.c.ts.desc(), table.c.seq.desc()).limit(limit))
    ).all()
    total = len(rows)
    if total >= limit:
        counted = select(func.count()).select_from(statement.subquery())
        total = int((await connection.execute(counted)).scalar_one())
    return rows, total


async def events_after(
    connection: AsyncConnection,
    symbol: str,
    flt: EventFilter,
    *,
    epoch: str,
    after_seq: int,
    through_seq: int,
    limit: int,
) -> list[tuple[int, str]]:
    """The first ``limit`` events (seq, JSON) of ``epoch`` in (after_seq, through_seq] passing ``flt``."""
    found: list[tuple[int, str]] = []
    for kind in TABLES:
        if not flt.wants_kind(kind):
            continue
        table = table_of(kind)
        columns = [table.c.seq, *(table.c[name] for name in EVENT_FIELDS[kind])]
        statement = (
            select(*columns)
            .where(
                table.c.symbol == symbol,
                table.c.epoch == epoch,
                table.c.seq > after_seq,
                table.c.seq <= through_seq,
                *filter_conditions(kind, table, flt),
            )
            .order_by(table.c.seq)
            .limit(limit)
        )
        for row in (await connection.execute(statement)).all():
            found.append((row.seq, event_json(kind, row._mapping)))
    # Each table gave its first `limit`; the first `limit` of their union are the overall first.
    found.sort(key=lambda item: item[0])
    return found[:limit]


async def count_recorded(
    connection: AsyncConnection, symbol: str, epoch: str, first_seq: int, last_seq: int
) -> int:
    """How many seqs of ``epoch`` with first_seq <= seq <= last_seq SQL holds (all kinds, and void seqs)."""
    tables: list[Table] = [table_of(kind) for kind in TABLES]
    tables.append(VoidRow.__table__)  # type: ignore[arg-type]
    parts = [
        select(table.c.seq).where(
            table.c.symbol == symbol,
            table.c.epoch == epoch,
            table.c.seq >= first_seq,
            table.c.seq <= last_seq,
        )
        for table in tables
    ]
    statement = select(func.count()).select_from(union_all(*parts).subquery())
    return int((await connection.execute(statement)).scalar_one())


def plain_window(symbol: str, kind: str, since_ms: int) -> Select[Any]:
    """Every row of a kind in the window, all columns (the bench's baseline)."""
    table = table_of(kind)
    return select(table).where(table.c.symbol == symbol, table.c.ts >= since_ms)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def event_json(kind: str, row: Any) -> str:
    """A stored row as the event JSON the publisher wrote to the log (same keys, same order)."""
    event: dict[str, Any] = {"seq": row["seq"], "kind": kind}
    for name in EVENT_FIELDS[kind]:
        event[name] = _finite(row[name])
    if "meta" in event and event["meta"] is None:
        event["meta"] = {}
    return json.dumps(event, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
