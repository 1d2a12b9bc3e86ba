"""the status message's permalink, kept once Slack has said it

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:30:00

A message's permalink never changes, so `/rollout status` asks Slack for it once
(`chat.getPermalink`) and keeps it on the message's row; every later status links from the
row without a Slack call. Existing rows start without one and get it the first time it is asked
for.
"""

from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slack_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("permalink", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slack_message", schema=None) as batch_op:
        batch_op.drop_column("permalink")
