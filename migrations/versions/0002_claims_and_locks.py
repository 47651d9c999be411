"""claims (replay memory, delivery de-duplication, rate limits) and locks (atomic quota checks)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("expires_at", services.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_claims")),
    )
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.create_index("ix_claims_expires_at", ["expires_at"], unique=False)
    locks = op.create_table(
        "locks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("taken_at", services.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_locks")),
    )
    # The row creates lock on (services.claims.serialize_lab_creates); it must exist for the UPDATE to lock.
    op.bulk_insert(locks, [{"name": "lab_create", "taken_at": None}])


def downgrade() -> None:
    op.drop_table("locks")
    with op.batch_alter_table("claims", schema=None) as batch_op:
        batch_op.drop_index("ix_claims_expires_at")
    op.drop_table("claims")
