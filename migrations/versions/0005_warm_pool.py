"""warm pool

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool", sa.Boolean(), server_default=sa.text("false"), nullable=False))
        batch_op.add_column(sa.Column("profile_digest", sa.String(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_labs_pool"), ["pool"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labs_pool"))
        batch_op.drop_column("profile_digest")
        batch_op.drop_column("pool")
