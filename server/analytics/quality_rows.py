"""The SQL behind signal quality, and its rows as events to fold (no pandas: the live feed uses it).

Two statements: :func:`quality_query` (a window: the batch and the live feed's start) and
:func:`range_query` (seq ranges of some symbols: what the live feed reads as the recorder
commits). Rows read from SQL are untrusted like any input: :func:`fold_events` turns them
into ``(kind, symbol, seq, fields)`` tuples in fold order, a ``meta`` that is not a small
JSON object naming a signal becomes None, and the folds reject numbers that are not ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql import ColumnElement, CompoundSelect
from sqlalchemy.sql.selectable import Select

from server.analytics.quality import EVENT_COLUMNS, signal_seq_of
from server.analytics.queries import BotFilter, event_conditions
from server.history.models import CANDLES, SIGNALS, TRADES

#: ``meta`` texts longer than this are not parsed (a link is a few bytes).
MAX_META_CHARS: Final = 4096
#: Query columns: the event columns (``meta`` as text instead of ``signal_seq``), a kind rank
#: (the fold order of events with one timestamp) and the epoch (where the live feed resumes).
QUERY_COLUMNS: Final = (*EVENT_COLUMNS[:-1], "meta", "rank", "epoch")
_KIND_RANK: Final = {"candle": 0, "signal": 1, "trade": 2}
_NUMBERS: Final = ("confidence", "price", "qty", "fee", "pnl", "close")
_SIGNAL_FIELDS: Final = ("symbol", "epoch", "seq", "ts", "bot", "strategy", "type", "confidence", "price")
_TRADE_FIELDS: Final = (
    *("symbol", "epoch", "seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "fee", "pnl"),
)
#: One event to fold: (kind, symbol, seq, fields).
FoldEvent = tuple[str, str, int, dict[str, Any]]
#: A seq range of one symbol's epoch: (symbol, epoch, after seq, through seq).
SeqSpan = tuple[str, str, int, int]


def _columns(kind: str, given: dict[str, Any]) -> list[Any]:
    out: list[Any] = [literal(kind, String).label("kind")]
    for name in QUERY_COLUMNS[1:]:
        if name == "rank":
            out.append(literal(_KIND_RANK[kind], Integer).label("rank"))
        elif name in given:
            out.append(given[name].label(name))
        elif name in _NUMBERS:
            out.append(cast(null(), Float).label(name))
        elif name in ("seq", "ts"):
            out.append(cast(null(), Integer).label(name))
        else:
            out.append(cast(null(), String).label(name))
    return out


def _signals(where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    s = SIGNALS.c
    return select(*_columns("signal", {n: s[n] for n in _SIGNAL_FIELDS})).where(*where)


def _trades(where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    t = TRADES.c
    fields = {**{n: t[n] for n in _TRADE_FIELDS}, "position": t.position, "meta": cast(t.meta, String)}
    return select(*_columns("trade", fields)).where(*where)


def _candles(where: Sequence[ColumnElement[bool]]) -> Select[Any]:
    c = CANDLES.c
    fields = {"symbol": c.symbol, "epoch": c.epoch, "seq": c.seq, "ts": c.ts, "close": c.close}
    return select(*_columns("candle", fields)).where(*where)


def _last_candle_ts(flt: BotFilter, start_ms: int, end_ms: int) -> Any:
    """Each traded symbol's last candle time in [start, end] (the mark of open positions).

    One index seek per traded symbol (a correlated max on the (symbol, ts) index): grouping the
    window's candles by symbol read every candle of the window (11 ms of SQLite on the bench,
    against 2 ms).
    """
    t, c = TRADES.c, CANDLES.alias("window_candles").c
    traded = (
        select(t.symbol.label("symbol"))
        .where(and_(*event_conditions(TRADES, flt, start_ms, end_ms)))
        .distinct()
        .subquery("traded")
    )
    last_ts = (
        select(func.max(c.ts))
        .where(c.symbol == traded.c.symbol, c.ts <= end_ms, c.ts >= start_ms)
        .scalar_subquery()
    )
    return select(traded.c.symbol.label("symbol"), last_ts.label("ts")).subquery("last_candle")


def quality_query(flt: BotFilter, start_ms: int, end_ms: int) -> CompoundSelect[Any]:
    """Signals and trades of the filtered bots in [start, end], and each traded symbol's last
    candle at ``end`` (the mark of open positions), as one UNION ALL (:func:`fold_events` sorts)."""
    c = CANDLES.c
    last_ts = _last_candle_ts(flt, start_ms, end_ms)
    return union_all(
        _signals(event_conditions(SIGNALS, flt, start_ms, end_ms)),
        _trades(event_conditions(TRADES, flt, start_ms, end_ms)),
        _candles([]).join(last_ts, and_(c.symbol == last_ts.c.symbol, c.ts == last_ts.c.ts)),
    )


#: The batch's statements read only what each kind has (no NULL columns, no epoch): the text
#: SQLite hands to Python is most of a query's cost, so a third fewer cells is a third off.
BATCH_COLUMNS: Final = {
    "signal": ("symbol", "seq", "ts", "bot", "strategy", "type", "confidence", "price"),
    "trade": (
        *("symbol", "seq", "ts", "bot", "strategy", "side", "action", "price", "qty", "fee", "pnl"),
        *("position", "meta"),
    ),
    "candle": ("symbol", "seq", "ts", "close"),
}


#: Few-valued text columns the batch can read as codes (the name's position here): on SQLite,
#: where a value cannot be an integer otherwise (TEXT affinity), so a code is unambiguous; any
#: other value comes as itself. Small integers are shared objects: no string made per cell.
CODED: Final = {"type": ("buy", "sell", "hold"), "side": ("buy", "sell"), "action": ("entry", "exit")}


def batch_queries(
    flt: BotFilter, start_ms: int, end_ms: int, *, coded: bool = False
) -> dict[str, Select[Any]]:
    """What :func:`quality_query` reads, one statement per kind with :data:`BATCH_COLUMNS`
    (the batch sorts them into fold order itself: server/analytics/quality_queries.py); with
    ``coded`` the :data:`CODED` columns hold codes for their usual names (SQLite only)."""
    t, c = TRADES.c, CANDLES.c
    last_ts = _last_candle_ts(flt, start_ms, end_ms)
    meta = cast(t.meta, String)
    # Most trades name no signal: their "{}" comes as NULL (no string to make per row).
    no_link = case((meta == "{}", null()), else_=meta).label("meta")

    def column(table: Any, name: str) -> Any:
        if name == "meta":
            return no_link
        if coded and name in CODED:
            codes: dict[str, Any] = {text: literal_column(str(i)) for i, text in enumerate(CODED[name])}
            return case(codes, value=table.c[name], else_=table.c[name]).label(name)
        return table.c[name]

    return {
        "signal": select(*(column(SIGNALS, n) for n in BATCH_COLUMNS["signal"])).where(
            *event_conditions(SIGNALS, flt, start_ms, end_ms)
        ),
        "trade": select(*(column(TRADES, n) for n in BATCH_COLUMNS["trade"])).where(
            *event_conditions(TRADES, flt, start_ms, end_ms)
        ),
        "candle": select(*(c[n] for n in BATCH_COLUMNS["candle"])).join(
            last_ts, and_(c.symbol == last_ts.c.symbol, c.ts == last_ts.c.ts)
        ),
    }


def range_query(spans: Sequence[SeqSpan]) -> CompoundSelect[Any]:
    """Every signal, trade and candle with seq in (after, through] of each span's symbol and epoch
    (the unique (symbol, epoch, seq) indexes make each span a range scan)."""

    def within(table: Any) -> list[ColumnElement[bool]]:
        c = table.c
        return [
            or_(
                *(
                    and_(c.symbol == symbol, c.epoch == epoch, c.seq > after, c.seq <= through)
                    for symbol, epoch, after, through in spans
                )
            )
        ]

    return union_all(_signals(within(SIGNALS)), _trades(within(TRADES)), _candles(within(CANDLES)))


def fold_events(rows: Sequence[Sequence[Any]]) -> list[FoldEvent]:
    """Rows of :func:`quality_query` or :func:`range_query` as events in fold order
    (ts, kind rank, symbol, seq); ``fields`` keeps ``epoch`` and a parsed ``meta``."""
    records = []
    for raw in rows:
        record = dict(zip(QUERY_COLUMNS, raw, strict=True))
        record["meta"] = parse_meta(record["meta"])
        records.append(record)
    records.sort(key=_fold_key)
    return [
        (
            str(r["kind"]),
            str(r["symbol"]),
            _int(r["seq"]),
            {k: v for k, v in r.items() if k not in ("kind", "rank")},
        )
        for r in records
    ]


def fold_key(kind: str, symbol: str, seq: int, ts: int) -> tuple[int, int, str, int]:
    """Where an event sorts in the fold: by time, then candle < signal < trade, symbol, seq."""
    return (ts, _KIND_RANK.get(kind, 3), symbol, seq)


def _fold_key(record: dict[str, Any]) -> tuple[int, int, str, int]:
    return (_int(record["ts"]), int(record["rank"] or 0), str(record["symbol"]), _int(record["seq"]))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def parse_meta(text: Any) -> dict[str, Any] | None:
    """A trade's ``meta`` as read from SQL: the object when it is one naming a signal, else None."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or len(text) > MAX_META_CHARS:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and signal_seq_of(value) is not None else None
