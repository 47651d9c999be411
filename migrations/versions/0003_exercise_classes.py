"""exercise labs and classes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import services.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lab_classes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=28), nullable=False),
        sa.Column("trainer", sa.String(length=64), nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("exercise_start", sa.String(length=48), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", services.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", services.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status_ref", sa.String(length=128), nullable=True),
        sa.Column("warned_offsets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_classes")),
    )
    with op.batch_alter_table("lab_classes", schema=None) as batch_op:
        batch_op.create_index("uq_lab_classes_live_name", ["name"], unique=True,
                              sqlite_where=sa.text("destroyed_at IS NULL"),
                              postgresql_where=sa.text("destroyed_at IS NULL"))
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exercise_start", sa.String(length=48), nullable=True))
        batch_op.add_column(sa.Column("exercise", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
        batch_op.add_column(sa.Column("class_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("claimable", sa.Boolean(), server_default=sa.text("false"), nullable=False))
        batch_op.create_index(batch_op.f("ix_labs_class_id"), ["class_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_labs_class_id_lab_classes"), "lab_classes", ["class_id"], ["id"],
                                    ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_labs_class_id_lab_classes"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_labs_class_id"))
        batch_op.drop_column("claimable")
        batch_op.drop_column("class_id")
        batch_op.drop_column("exercise")
        batch_op.drop_column("exercise_start")
    with op.batch_alter_table("lab_classes", schema=None) as batch_op:
        batch_op.drop_index("uq_lab_classes_live_name")
    op.drop_table("lab_classes")
