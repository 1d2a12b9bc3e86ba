"""an index for the outbox's queues: (rollout, channel), pending, in id order

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 18:45:00

The outbox posts each rollout's announcements to a channel in id order: a row may go only when
no earlier pending row of its rollout and channel is waiting. That question was answered by
reading every pending row (the only index was by state and due time), once per candidate row
of every claim: with 1,500 rows pending after a burst of starts, a claim took about 300 ms,
and every status message's commit wakes one. With this index it is a seek.
"""

from alembic import op


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_queue", "outbox_message", ["rollout_id", "channel_id", "state", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_queue", table_name="outbox_message")
