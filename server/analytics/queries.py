"""The SQL behind analytics: one statement per call, every filter pushed down to the database.

Each builder returns a SQLAlchemy Core statement that works on SQLite and PostgreSQL.
Filters that name bots by id or status (``bot_ids``, ``statuses``, ``active_only``) go
through a subquery on the ``bots`` registry, so they stay inside the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Float,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union,
    union_all,
)

from server.history.models import BotRow, BotStatusRow, CandleRow, SignalRow, TradeRow

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"

#: How far before a window the entries of positions exited inside it are looked for: a
#: position exited in the window but opened longer ago counts with its reported pnl only.
ENTRY_LOOKBACK_MS: Final = 2 * 86_400_000


@dataclass(frozen=True, kw_only=True)
class BotFilter:
    """Which bots (and which of their events) a query covers; None constrains nothing.

    ``bots`` are bot names, ``bot_ids`` the integer ids of the ``bots`` registry.
    ``statuses`` and ``active_only`` use each bot's last reported status. ``symbols``
    limits events to those symbols (and bots to those that published on them).
    ``date_range`` is (start, end) in ms since the epoch, inclusive, intersected with a
    call's own start/end.
    """

    bots: tuple[str, ...] | None = None
    bot_ids: tuple[int, ...] | None = None
    strategies: tuple[str, ...] | None = None
    symbols: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    date_range: tuple[int, int] | None = None
    active_only: bool = False

    def needs_registry(self) -> bool:
        return self.bot_ids is not None or self.statuses is not None or self.active_only


def _registry_names(flt: BotFilter) -> AnySelect:
    """Names of the bots in the registry that pass the id/status parts of ``flt``."""
    query = select(BotRow.name)
    if flt.bot_ids is not None:
        query = query.where(BotRow.id.in_(flt.bot_ids))
    if flt.statuses is not None:
        query = query.where(BotRow.status.in_(flt.statuses))
    if flt.active_only:
        query = query.where(BotRow.status == "active")
    return query


def event_conditions(
    table: type[SignalRow] | type[TradeRow] | type[BotStatusRow],
    flt: BotFilter,
    start_ms: int | None,
    end_ms: int | None,
) -> list[ColumnElement[bool]]:
    """WHERE conditions selecting ``table``'s events of the filtered bots in [start, end]."""
    conditions: list[ColumnElement[bool]] = []
    if flt.bots is not None:
        conditions.append(table.bot.in_(flt.bots))
    if flt.strategies is not None:
        conditions.append(table.strategy.in_(flt.strategies))
    if flt.symbols is not None:
        conditions.append(table.symbol.in_(flt.symbols))
    if flt.needs_registry():
        conditions.append(table.bot.in_(_registry_names(flt)))
    if start_ms is not None:
        conditions.append(table.ts >= start_ms)
    if end_ms is not None:
        conditions.append(table.ts <= end_ms)
    return conditions


def bots_query(flt: BotFilter) -> AnySelect:
    """The registry rows of the filtered bots, by id."""
    query = select(
        BotRow.id,
        BotRow.name,
        BotRow.strategy,
        BotRow.status,
        BotRow.equity,
        BotRow.first_seen,
        BotRow.last_seen,
        BotRow.last_status_ts,
    )
    if flt.bots is not None:
        query = query.where(BotRow.name.in_(flt.bots))
    if flt.bot_ids is not None:
        query = query.where(BotRow.id.in_(flt.bot_ids))
    if flt.strategies is not None:
        query = query.where(BotRow.strategy.in_(flt.strategies))
    if flt.statuses is not None:
        query = query.where(BotRow.status.in_(flt.statuses))
    if flt.active_only:
        query = query.where(BotRow.status == "active")
    if flt.date_range is not None:
        start, end = flt.date_range
        query = query.where(BotRow.last_seen >= start, BotRow.first_seen <= end)
    if flt.symbols is not None:
        on_symbols = [
            exists().where(table.bot == BotRow.name, table.symbol.in_(flt.symbols))
            for table in (BotStatusRow, TradeRow, SignalRow)
        ]
        query = query.where(or_(*on_symbols))
    return query.order_by(BotRow.id)


def bot_symbols_query(since_ms: int | None = None) -> CompoundSelect[Any]:
    """Distinct ``(bot, symbol)`` pairs of status reports, trades and signals (at or after ``since_ms``)."""
    parts = []
    for table in (BotStatusRow, TradeRow, SignalRow):
        part = select(table.bot.label("bot"), table.symbol.label("symbol")).distinct()
        if since_ms is not None:
            part = part.where(table.ts >= since_ms)
        parts.append(part)
    return union(*parts)


def signals_query(
    flt: BotFilter,
    start_ms: int | None,
    end_ms: int | None,
    signal_types: tuple[str, ...] | None = None,
    min_confidence: float | None = None,
) -> AnySelect:
    """Signals of the filtered bots in the window, oldest first, with the bot's registry id."""
    conditions = event_conditions(SignalRow, flt, start_ms, end_ms)
    if signal_types is not None:
        conditions.append(SignalRow.type.in_(signal_types))
    if min_confidence:
        conditions.append(SignalRow.confidence >= min_confidence)
    return (
        select(
            SignalRow.ts,
            SignalRow.symbol,
            SignalRow.bot,
            BotRow.id.label("bot_id"),
            SignalRow.strategy,
            SignalRow.type.label("signal_type"),
            SignalRow.price,
            SignalRow.confidence,
            SignalRow.seq,
        )
        .outerjoin(BotRow, BotRow.name == SignalRow.bot)
        .where(*conditions)
        .order_by(SignalRow.ts, SignalRow.id)
    )


def trades_query(
    flt: BotFilter, start_ms: int | None, end_ms: int | None, sides: tuple[str, ...] | None = None
) -> AnySelect:
    """Trades of the filtered bots in the window, oldest first, with the bot's registry id."""
    conditions = event_conditions(TradeRow, flt, start_ms, end_ms)
    if sides is not None:
        conditions.append(TradeRow.side.in_(sides))
    return (
        select(
            TradeRow.ts,
            TradeRow.symbol,
            TradeRow.bot,
            BotRow.id.label("bot_id"),
            TradeRow.strategy,
            TradeRow.side,
            TradeRow.action,
            TradeRow.price,
            TradeRow.qty,
            TradeRow.fee,
            TradeRow.pnl,
            TradeRow.position,
            TradeRow.seq,
        )
        .outerjoin(BotRow, BotRow.name == TradeRow.bot)
        .where(*conditions)
        .order_by(TradeRow.ts, TradeRow.id)
    )


PERFORMANCE_COLUMNS: Final = (
    "part",
    "ts",
    "bot",
    "strategy",
    "symbol",
    "sell",
    "exit",
    "price",
    "qty",
    "fee",
    "pnl",
    "position",
)


#: ``part`` values of :func:`performance_query` rows.
PART_TRADE: Final = 0
PART_PRICE: Final = 1
PART_CAPITAL: Final = 2


def performance_query(flt: BotFilter, start_ms: int, end_ms: int) -> CompoundSelect[Any]:
    """Everything performance needs, as one UNION ALL statement; ``part`` tells the rows apart.

    Columns :data:`PERFORMANCE_COLUMNS`; ``sell`` and ``exit`` are 1 for a sell side / an exit.

    * ``trade``: the window's trades, plus the entries of the :data:`ENTRY_LOOKBACK_MS`
      before it (the caller keeps those of positions exited inside the window);
    * ``price``: each traded symbol's last price at ``end_ms``: the last candle's close,
      else the last trade's price, else the last signal's;
    * ``capital``: each traded bot's first reported equity in the window (``price``).
    """
    in_window = and_(*event_conditions(TradeRow, flt, start_ms, end_ms))
    trade_columns = (
        TradeRow.ts,
        TradeRow.bot,
        TradeRow.strategy,
        TradeRow.symbol,
        # Side and action as 0/1: strings cost the driver far more than small ints per row.
        case((TradeRow.side == "sell", 1), else_=0),
        case((TradeRow.action == "exit", 1), else_=0),
        TradeRow.price,
        TradeRow.qty,
        TradeRow.fee,
        TradeRow.pnl,
        TradeRow.position,
    )
    window = select(literal(PART_TRADE, Integer).label("part"), *trade_columns).where(in_window)
    earlier = and_(
        *event_conditions(TradeRow, flt, start_ms - ENTRY_LOOKBACK_MS, start_ms - 1),
        TradeRow.action == "entry",
    )
    earlier_entries = select(literal(PART_TRADE, Integer), *trade_columns).where(earlier)
    traded_symbols = select(TradeRow.symbol).where(in_window).distinct().subquery("traded_symbols")
    sym = traded_symbols.c.symbol
    candle_close = (
        select(CandleRow.close)
        .where(CandleRow.symbol == sym, CandleRow.ts <= end_ms)
        .order_by(CandleRow.ts.desc(), CandleRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    trade_price = (
        select(TradeRow.price)
        .where(TradeRow.symbol == sym, TradeRow.ts <= end_ms)
        .order_by(TradeRow.ts.desc(), TradeRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    signal_price = (
        select(SignalRow.price)
        .where(SignalRow.symbol == sym, SignalRow.ts <= end_ms)
        .order_by(SignalRow.ts.desc(), SignalRow.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    prices = select(
        literal(PART_PRICE, Integer),
        cast(null(), TradeRow.ts.type),
        cast(null(), String),
        cast(null(), String),
        sym,
        cast(null(), Integer),
        cast(null(), Integer),
        cast(func.coalesce(candle_close, trade_price, signal_price), Float),
        *(cast(null(), Float) for _ in range(3)),
        cast(null(), String),
    )
    traded_bots = select(TradeRow.bot).where(in_window).distinct().subquery("traded_bots")
    first_equity = (
        select(BotStatusRow.equity)
        .where(
            BotStatusRow.bot == traded_bots.c.bot,
            BotStatusRow.ts >= start_ms,
            BotStatusRow.ts <= end_ms,
            BotStatusRow.equity.is_not(None),
        )
        .order_by(BotStatusRow.ts, BotStatusRow.id)
        .limit(1)
        .scalar_subquery()
    )
    capital = select(
        literal(PART_CAPITAL, Integer),
        cast(null(), TradeRow.ts.type),
        traded_bots.c.bot,
        *(cast(null(), String) for _ in range(2)),
        *(cast(null(), Integer) for _ in range(2)),
        cast(first_equity, Float),
        *(cast(null(), Float) for _ in range(3)),
        cast(null(), String),
    )
    return union_all(window, earlier_entries, prices, capital)
