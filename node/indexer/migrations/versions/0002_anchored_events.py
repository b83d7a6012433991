"""anchored events (EPCIS events that change no custody)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anchored_events",
        sa.Column("block_number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("log_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tx_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("signer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("block_number", "log_index", "position"),
    )
    with op.batch_alter_table("anchored_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_anchored_events_event_hash"), ["event_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_anchored_events_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("anchored_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_anchored_events_org_id"))
        batch_op.drop_index(batch_op.f("ix_anchored_events_event_hash"))
    op.drop_table("anchored_events")
