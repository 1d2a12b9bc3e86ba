"""worker heartbeat: each work process says it is alive, for the readiness check

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 09:00:00

Runs on both databases of a SQLite install; the queue database's table is the one used.
"""

from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeat",
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("beat_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_worker_heartbeat")),
    )
    with op.batch_alter_table("worker_heartbeat") as batch:
        batch.create_index(batch.f("ix_worker_heartbeat_beat_at"), ["beat_at"], unique=False)


def downgrade() -> None:
    op.drop_table("worker_heartbeat")
