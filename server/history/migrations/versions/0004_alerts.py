"""Alerts: the ``alerts`` table (one row per fire, resolution and acknowledgement; docs/alerts.md).

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if "alerts" in sa.inspect(op.get_bind()).get_table_names():
        return  # made by create_all with this version's models, then stamped at an older revision
    op.create_table(
        "alerts",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(48), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("message", sa.String(256), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.UniqueConstraint("symbol", "epoch", "seq", name="uq_alerts_symbol_epoch_seq"),
    )
    op.create_index("ix_alerts_symbol_ts", "alerts", ["symbol", "ts"])
    op.create_index("ix_alerts_alert_id", "alerts", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_alert_id", table_name="alerts")
    op.drop_index("ix_alerts_symbol_ts", table_name="alerts")
    op.drop_table("alerts")
