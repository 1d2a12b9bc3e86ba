"""auto-advance, allowed hours and freeze windows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 11:00:00

Existing rollouts get auto-advance off and no hours of their own; no workspace has hours or
freezes until someone sets them, so every advance behaves as before.
"""

from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("auto_advance", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
        batch_op.add_column(sa.Column("advance_hours", sa.JSON(), nullable=True))
    op.create_table(
        "team_rules",
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("advance_hours", sa.JSON(), nullable=True),
        sa.Column("phase_checkpoints", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=True),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_rules")),
    )
    op.create_table(
        "freeze_window",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("first_day", sa.String(length=10), nullable=False),
        sa.Column("last_day", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollout.id"],
            name=op.f("fk_freeze_window_rollout_id_rollout"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freeze_window")),
    )
    with op.batch_alter_table("freeze_window") as batch:
        batch.create_index("ix_freeze_window_team", ["team_id", "last_day"], unique=False)


def downgrade() -> None:
    op.drop_table("freeze_window")
    op.drop_table("team_rules")
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.drop_column("advance_hours")
        batch_op.drop_column("auto_advance")
