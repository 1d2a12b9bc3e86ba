"""what a phase and a step were left by, who paused or rolled back and why, who last unticked an item

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:45:00

`left_by_override` marks a phase or step the rollout moved past a closed gate, so the status
message, Home and the export say "skipped by override" rather than "done". `stopped_by`,
`stopped_at` and `stop_reason` let the status message say who paused or rolled back, when and
why, in one line. `unchecked_by` and
`unchecked_at` keep who unticked an item last, so the checklist can show it. Existing rows get
false and nothing: nothing before this migration recorded them.
"""

from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stopped_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("stopped_at", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
    for table in ("phase", "step"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("left_by_override", sa.Boolean(), server_default=sa.false(), nullable=False)
            )
    with op.batch_alter_table("checklist_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unchecked_by", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("unchecked_at", storage.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("checklist_item", schema=None) as batch_op:
        batch_op.drop_column("unchecked_at")
        batch_op.drop_column("unchecked_by")
    for table in ("step", "phase"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("left_by_override")
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.drop_column("stop_reason")
        batch_op.drop_column("stopped_at")
        batch_op.drop_column("stopped_by")
