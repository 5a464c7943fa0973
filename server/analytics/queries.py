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
    Table,
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

from server.analytics.columns import (
    BOOK_COLUMNS,
    ENCODED,
    FIELD_OF,
    SIGNAL_COLUMNS,
    TRADE_COLUMNS,
)
from server.history.models import BOT_STATUS, CANDLES, SIGNALS, TRADES, BotRow

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"

#: How far before a window the entries of positions exited inside it are looked for: a
#: position exited in the window but opened longer ago counts with its reported pnl only.
ENTRY_LOOKBACK_MS: Final = 2 * 86_400_000


@dataclass(frozen=True, kw_only=True)
class BotFilter:
    """Which bots (and which of their events) a query covers; None constrains nothing.

    ``bots`` are bot names, ``bot_ids`` the integer ids of the ``bots`` registry.
    ``statuses`` and ``active_only`` use each bot's last reported status (``active_only``
    also keeps bots that never reported one). ``symbols``
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


#: ``active_only``: the bot's last status is ``active``, or it never published one (a bot that
#: only signals or trades is running; hiding it would hide most simple bots).
_ACTIVE: Final = or_(BotRow.status == "active", BotRow.status.is_(None))


def _registry_names(flt: BotFilter) -> AnySelect:
    """Names of the bots in the registry that pass the id/status parts of ``flt``."""
    query = select(BotRow.name)
    if flt.bot_ids is not None:
        query = query.where(BotRow.id.in_(flt.bot_ids))
    if flt.statuses is not None:
        query = query.where(BotRow.status.in_(flt.statuses))
    if flt.active_only:
        query = query.where(_ACTIVE)
    return query


def event_conditions(
    table: Table, flt: BotFilter, start_ms: int | None, end_ms: int | None
) -> list[ColumnElement[bool]]:
    """WHERE conditions selecting ``table``'s events (a bot kind's) of the filtered bots in [start, end]."""
    c = table.c
    conditions: list[ColumnElement[bool]] = []
    if flt.bots is not None:
        conditions.append(c.bot.in_(flt.bots))
    if flt.strategies is not None:
        conditions.append(c.strategy.in_(flt.strategies))
    if flt.symbols is not None:
        conditions.append(c.symbol.in_(flt.symbols))
    if flt.needs_registry():
        conditions.append(c.bot.in_(_registry_names(flt)))
    if start_ms is not None:
        conditions.append(c.ts >= start_ms)
    if end_ms is not None:
        conditions.append(c.ts <= end_ms)
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
        query = query.where(_ACTIVE)
    if flt.date_range is not None:
        start, end = flt.date_range
        query = query.where(BotRow.last_seen >= start, BotRow.first_seen <= end)
    if flt.symbols is not None:
        on_symbols = [
            exists().where(table.c.bot == BotRow.name, table.c.symbol.in_(flt.symbols))
            for table in (BOT_STATUS, TRADES, SIGNALS)
        ]
        query = query.where(or_(*on_symbols))
    return query.order_by(BotRow.id)


def bot_symbols_query(since_ms: int | None = None) -> CompoundSelect[Any]:
    """Distinct ``(bot, symbol)`` pairs of status reports, trades and signals (at or after ``since_ms``)."""
    parts = []
    for table in (BOT_STATUS, TRADES, SIGNALS):
        part = select(table.c.bot.label("bot"), table.c.symbol.label("symbol")).distinct()
        if since_ms is not None:
            part = part.where(table.c.ts >= since_ms)
        parts.append(part)
    return union(*parts)


def _events_select(
    table: Table, columns: tuple[str, ...], conditions: list[ColumnElement[bool]]
) -> AnySelect:
    """``columns`` (analytics names, but ``timestamp``) of the rows passing ``conditions``, oldest first."""
    selected = [
        BotRow.id.label("bot_id") if name == "bot_id" else table.c[FIELD_OF.get(name, name)].label(name)
        for name in columns
        if name != "timestamp"
    ]
    return (
        select(*selected)
        .outerjoin(BotRow, BotRow.name == table.c.bot)
        .where(*conditions)
        .order_by(table.c.ts, table.c.id)
    )


def signals_query(
    flt: BotFilter,
    start_ms: int | None,
    end_ms: int | None,
    signal_types: tuple[str, ...] | None = None,
    min_confidence: float | None = None,
) -> AnySelect:
    """Signals of the filtered bots in the window, oldest first, with the bot's registry id."""
    conditions = event_conditions(SIGNALS, flt, start_ms, end_ms)
    if signal_types is not None:
        conditions.append(SIGNALS.c.type.in_(signal_types))
    if min_confidence:
        conditions.append(SIGNALS.c.confidence >= min_confidence)
    return _events_select(SIGNALS, SIGNAL_COLUMNS, conditions)


def trades_query(
    flt: BotFilter, start_ms: int | None, end_ms: int | None, sides: tuple[str, ...] | None = None
) -> AnySelect:
    """Trades of the filtered bots in the window, oldest first, with the bot's registry id."""
    conditions = event_conditions(TRADES, flt, start_ms, end_ms)
    if sides is not None:
        conditions.append(TRADES.c.side.in_(sides))
    return _events_select(TRADES, TRADE_COLUMNS, conditions)


#: ``part`` values of :func:`performance_query` rows.
PART_TRADE: Final = 0
PART_PRICE: Final = 1
PART_CAPITAL: Final = 2


def _row(part: int, given: dict[str, Any]) -> list[Any]:
    """A row of ``part`` in the performance columns: the ``given`` values, typed NULLs elsewhere."""
    out: list[Any] = [literal(part, Integer)]
    for name in BOOK_COLUMNS:
        if name in given:
            out.append(given[name])
        else:
            out.append(cast(null(), Integer if name in ENCODED else TRADES.c[name].type))
    return out


def performance_query(flt: BotFilter, start_ms: int, end_ms: int) -> CompoundSelect[Any]:
    """Everything performance needs, as one UNION ALL statement; ``part`` tells the rows apart.

    Columns :data:`server.analytics.columns.PERFORMANCE_COLUMNS`; ``sell`` and ``exit`` are 1
    for a sell side / an exit.

    * ``trade``: the window's trades, plus the entries of the :data:`ENTRY_LOOKBACK_MS`
      before it (the caller keeps those of positions exited inside the window);
    * ``price``: each traded symbol's last price at ``end_ms``: the last candle's close,
      else the last trade's price, else the last signal's;
    * ``capital``: each traded bot's first reported equity in the window (``price``).
    """
    trade = TRADES.c
    in_window = and_(*event_conditions(TRADES, flt, start_ms, end_ms))
    trade_columns = [
        # Side and action as 0/1: strings cost the driver far more than small ints per row.
        case((trade[name] == ENCODED[name][1], 1), else_=0) if name in ENCODED else trade[name]
        for name in BOOK_COLUMNS
    ]
    window = select(literal(PART_TRADE, Integer).label("part"), *trade_columns).where(in_window)
    earlier = and_(
        *event_conditions(TRADES, flt, start_ms - ENTRY_LOOKBACK_MS, start_ms - 1),
        trade.action == "entry",
    )
    earlier_entries = select(literal(PART_TRADE, Integer), *trade_columns).where(earlier)
    traded_symbols = select(trade.symbol).where(in_window).distinct().subquery("traded_symbols")
    sym = traded_symbols.c.symbol

    def last_price(table: Table, column: str) -> Any:
        return (
            select(table.c[column])
            .where(table.c.symbol == sym, table.c.ts <= end_ms)
            .order_by(table.c.ts.desc(), table.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )

    price = func.coalesce(
        last_price(CANDLES, "close"), last_price(TRADES, "price"), last_price(SIGNALS, "price")
    )
    prices = select(*_row(PART_PRICE, {"symbol": sym, "price": cast(price, Float)}))
    traded_bots = select(trade.bot).where(in_window).distinct().subquery("traded_bots")
    status = BOT_STATUS.c
    first_equity = (
        select(status.equity)
        .where(
            status.bot == traded_bots.c.bot,
            status.ts >= start_ms,
            status.ts <= end_ms,
            status.equity.is_not(None),
        )
        .order_by(status.ts, status.id)
        .limit(1)
        .scalar_subquery()
    )
    capital = select(*_row(PART_CAPITAL, {"bot": traded_bots.c.bot, "price": cast(first_equity, Float)}))
    return union_all(window, earlier_entries, prices, capital)
