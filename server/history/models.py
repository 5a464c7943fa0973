"""Typed tables for the four event kinds plus the bot registry.

Every event table is unique on (symbol, epoch, seq), so a replayed insert is a no-op,
and indexed on (symbol, ts) for chart windows; bot tables also on (bot, ts).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class _EventColumns:
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger, doc="event time, ms since the Unix epoch (UTC)")


class CandleRow(_EventColumns, Base):
    __tablename__ = "candles"
    tf: Mapped[str] = mapped_column(String(8))
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    __table_args__ = (
        UniqueConstraint("symbol", "epoch", "seq", name="uq_candles_symbol_epoch_seq"),
        Index("ix_candles_symbol_ts", "symbol", "ts"),
    )


class SignalRow(_EventColumns, Base):
    __tablename__ = "signals"
    bot: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(8))
    price: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        UniqueConstraint("symbol", "epoch", "seq", name="uq_signals_symbol_epoch_seq"),
        Index("ix_signals_symbol_ts", "symbol", "ts"),
        Index("ix_signals_bot_ts", "bot", "ts"),
    )


class TradeRow(_EventColumns, Base):
    __tablename__ = "trades"
    bot: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(8))
    price: Mapped[float] = mapped_column(Float)
    qty: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float, default=0.0)
    pnl: Mapped[float | None] = mapped_column(Float, nullable=True)
    position: Mapped[str] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        UniqueConstraint("symbol", "epoch", "seq", name="uq_trades_symbol_epoch_seq"),
        Index("ix_trades_symbol_ts", "symbol", "ts"),
        Index("ix_trades_bot_ts", "bot", "ts"),
    )


class BotStatusRow(_EventColumns, Base):
    __tablename__ = "bot_status"
    bot: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    equity: Mapped[float | None] = mapped_column(Float, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        UniqueConstraint("symbol", "epoch", "seq", name="uq_bot_status_symbol_epoch_seq"),
        Index("ix_bot_status_symbol_ts", "symbol", "ts"),
        Index("ix_bot_status_bot_ts", "bot", "ts"),
    )


class BotRow(Base):
    """One row per bot name: its integer id (the seed API's ``bot_ids``) and last known state."""

    __tablename__ = "bots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    strategy: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    equity: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_seen: Mapped[int] = mapped_column(BigInteger)
    last_seen: Mapped[int] = mapped_column(BigInteger)
    last_status_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class VoidRow(Base):
    """A seq whose log entry was invalid (server/core/trust.py): recorded so the epoch's seqs stay
    complete in SQL (a replay over it is not a reset), never sent as an event."""

    __tablename__ = "void_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(16))
    __table_args__ = (UniqueConstraint("symbol", "epoch", "seq", name="uq_void_events_symbol_epoch_seq"),)


#: Event kind -> its table.
TABLES: dict[str, type[CandleRow] | type[SignalRow] | type[TradeRow] | type[BotStatusRow]] = {
    "candle": CandleRow,
    "signal": SignalRow,
    "trade": TradeRow,
    "bot": BotStatusRow,
}
