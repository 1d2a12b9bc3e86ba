"""work leases: queued work is leased, not deleted, when claimed; requests are remembered by
their own id (seen_request in the queue database, handled_request beside the changes)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:00:00

Runs on both databases of a SQLite install (the main file and its `-queue` file): each gets
every table, and uses the ones that are its own.
"""

from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pending_work") as batch:
        batch.add_column(sa.Column("request_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("claimed_until", storage.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch.create_index(batch.f("ix_pending_work_claimed_until"), ["claimed_until"], unique=False)
    op.create_table(
        "seen_request",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_seen_request")),
    )
    with op.batch_alter_table("seen_request") as batch:
        batch.create_index(batch.f("ix_seen_request_fingerprint"), ["fingerprint"], unique=False)
        batch.create_index(batch.f("ix_seen_request_created_at"), ["created_at"], unique=False)
    op.create_table(
        "handled_request",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_handled_request")),
    )
    with op.batch_alter_table("handled_request") as batch:
        batch.create_index(batch.f("ix_handled_request_at"), ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("handled_request")
    op.drop_table("seen_request")
    with op.batch_alter_table("pending_work") as batch:
        batch.drop_index(batch.f("ix_pending_work_claimed_until"))
        batch.drop_column("claimed_by")
        batch.drop_column("claimed_until")
        batch.drop_column("attempts")
        batch.drop_column("request_key")
