"""The history tables: one per event kind (made from the event schema), void seqs, the bot registry.

Every event table holds ``id``, ``symbol``, ``epoch`` and ``seq``, then its kind's fields
as :data:`publishers.events.SCHEMA` declares them (types, lengths, nullability); it is
unique on (symbol, epoch, seq), so a replayed insert is a no-op, and indexed on
(symbol, ts) for chart windows; bot kinds also on (bot, ts). The Alembic migrations
build the same schema (tests/server/history/test_migrate.py compares them).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from publishers.events import SCHEMA, FieldSpec, KindSpec

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: An epoch token (the publish script's guard: at most 32 characters).
EPOCH_LENGTH: Final = 32


class Base(DeclarativeBase):
    pass


def _sql_type(spec: FieldSpec) -> TypeEngine[Any]:
    if spec.type == "text":
        assert spec.max_length is not None, spec.name
        return String(spec.max_length)
    types: dict[str, TypeEngine[Any]] = {"number": Float(), "integer": BigInteger(), "object": JSON()}
    return types[spec.type]


def _length(kind: str, name: str) -> int:
    length = SCHEMA[kind].field(name).max_length
    assert length is not None
    return length


def _python_default(spec: FieldSpec) -> Any:
    if spec.required:
        return None
    return dict if spec.type == "object" else spec.default


def _event_table(spec: KindSpec) -> Table:
    symbol, *others = spec.fields
    assert symbol.name == "symbol", spec.kind
    columns = [
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("symbol", _sql_type(symbol), nullable=False),
        Column("epoch", String(EPOCH_LENGTH), nullable=False),
        Column("seq", BigInteger(), nullable=False),
        *(Column(f.name, _sql_type(f), nullable=f.nullable, default=_python_default(f)) for f in others),
    ]
    name = spec.table
    indexes = [Index(f"ix_{name}_symbol_ts", "symbol", "ts")]
    if "bot" in spec.names:
        indexes.append(Index(f"ix_{name}_bot_ts", "bot", "ts"))
    if "alert_id" in spec.names:
        indexes.append(Index(f"ix_{name}_alert_id", "alert_id"))
    unique = UniqueConstraint("symbol", "epoch", "seq", name=f"uq_{name}_symbol_epoch_seq")
    return Table(name, Base.metadata, *columns, unique, *indexes)


#: Event kind -> its table.
TABLES: Final[dict[str, Table]] = {kind: _event_table(spec) for kind, spec in SCHEMA.items()}
CANDLES: Final = TABLES["candle"]
SIGNALS: Final = TABLES["signal"]
TRADES: Final = TABLES["trade"]
BOT_STATUS: Final = TABLES["bot"]
ALERTS: Final = TABLES["alert"]


# ORM classes over the same tables, for scripts that like them (examples/dash_app.py); the
# columns are attributes at run time (``CandleRow.close``), not to a type checker.
class CandleRow(Base):
    __table__ = CANDLES


class SignalRow(Base):
    __table__ = SIGNALS


class TradeRow(Base):
    __table__ = TRADES


class BotStatusRow(Base):
    __table__ = BOT_STATUS


class BotRow(Base):
    """One row per bot name: its integer id (the seed API's ``bot_ids``) and last known state."""

    __tablename__ = "bots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(_length("bot", "bot")), unique=True)
    strategy: Mapped[str] = mapped_column(String(_length("bot", "strategy")))
    status: Mapped[str | None] = mapped_column(String(_length("bot", "status")), nullable=True)
    equity: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_seen: Mapped[int] = mapped_column(BigInteger)
    last_seen: Mapped[int] = mapped_column(BigInteger)
    last_status_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class VoidRow(Base):
    """A seq whose log entry was invalid (server/core/trust.py): recorded so the epoch's seqs stay
    complete in SQL (a replay over it is not a reset), never sent as an event."""

    __tablename__ = "void_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(String(_length("candle", "symbol")))
    epoch: Mapped[str] = mapped_column(String(EPOCH_LENGTH))
    seq: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(16))
    __table_args__ = (UniqueConstraint("symbol", "epoch", "seq", name="uq_void_events_symbol_epoch_seq"),)
