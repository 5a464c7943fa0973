"""The history tables: candles, signals, trades, bot_status and the bots registry.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _event_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
    ]


def _event_table(name: str, *columns: sa.Column[object], bot_index: bool) -> None:
    op.create_table(
        name,
        *_event_columns(),
        *columns,
        sa.UniqueConstraint("symbol", "epoch", "seq", name=f"uq_{name}_symbol_epoch_seq"),
    )
    op.create_index(f"ix_{name}_symbol_ts", name, ["symbol", "ts"])
    if bot_index:
        op.create_index(f"ix_{name}_bot_ts", name, ["bot", "ts"])


def upgrade() -> None:
    _event_table(
        "candles",
        sa.Column("tf", sa.String(8), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        bot_index=False,
    )
    _event_table(
        "signals",
        sa.Column("bot", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        bot_index=True,
    )
    _event_table(
        "trades",
        sa.Column("bot", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("qty", sa.Float(), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("position", sa.String(64), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        bot_index=True,
    )
    _event_table(
        "bot_status",
        sa.Column("bot", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("equity", sa.Float(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        bot_index=True,
    )
    op.create_table(
        "bots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("equity", sa.Float(), nullable=True),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_status_ts", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    for name in ("bots", "bot_status", "trades", "signals", "candles"):
        op.drop_table(name)
