"""who may tick exit criteria and send stakeholder updates, per rollout

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:30:00

Existing rollouts get "anyone" for both, as before: a team restricts a rollout with `/rollout access`.
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("exit_ticks_by", sa.String(length=16), server_default="anyone", nullable=False)
        )
        batch_op.add_column(
            sa.Column("updates_by", sa.String(length=16), server_default="anyone", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.drop_column("updates_by")
        batch_op.drop_column("exit_ticks_by")
