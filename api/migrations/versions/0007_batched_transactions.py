"""batched transactions

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 16:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The submitter coalesces actions into one transaction (batchActions / relayBatch): the rows of
    # one transaction share its nonce and hash, and each knows its place in the batch, by which the
    # receipt's ActionRefused events name it.
    with op.batch_alter_table("api_operation_txs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_operation_txs", schema=None) as batch_op:
        batch_op.drop_column("batch_index")
