"""Void seqs: log entries that were not valid events (recorded so replays over them stay complete).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if "void_events" in sa.inspect(op.get_bind()).get_table_names():
        return  # made by create_all with this version's models, then stamped at 0001
    op.create_table(
        "void_events",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.UniqueConstraint("symbol", "epoch", "seq", name="uq_void_events_symbol_epoch_seq"),
    )


def downgrade() -> None:
    op.drop_table("void_events")
