"""signature lockout

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 21 CFR 11.300(d): consecutive refused e-signature attempts, and when they locked the signature
    with op.batch_alter_table("api_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature_failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("signature_locked_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_users", schema=None) as batch_op:
        batch_op.drop_column("signature_locked_at")
        batch_op.drop_column("signature_failures")
