"""per-lab nested ZStack admin password and iSCSI CHAP secret

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nested_password_enc", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("chap_secret_enc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.drop_column("chap_secret_enc")
        batch_op.drop_column("nested_password_enc")
