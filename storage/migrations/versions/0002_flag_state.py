"""the feature flag as the bot last saw it, and the flag events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:00:00

Event kinds are stored as VARCHAR(32) on both databases (`native_enum=False`, no CHECK
constraint), so the new kinds (flag_set, flag_write_failed, flag_drift, flag_adopted) need no
change to the column. A Postgres database whose `event.kind` was made a native enum type by
hand (`eventkind`) gets the new values added to that type.
"""

from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NEW_KINDS = ("flag_set", "flag_write_failed", "flag_drift", "flag_adopted")


def upgrade() -> None:
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flag_strategy_id", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("flag_percent", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("flag_enabled", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column("flag_seen_at", storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("flag_problem", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("flag_adopted_percent", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("flag_pending", sa.Double(), nullable=True))

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        native = bind.execute(sa.text("SELECT 1 FROM pg_type WHERE typname = 'eventkind'")).scalar()
        if native:
            for kind in NEW_KINDS:
                op.execute(f"ALTER TYPE eventkind ADD VALUE IF NOT EXISTS '{kind}'")


def downgrade() -> None:
    # Events of the new kinds would no longer be readable: they go with the columns.
    op.execute(
        sa.text("DELETE FROM event WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", NEW_KINDS, expanding=True)
        )
    )
    with op.batch_alter_table("rollout", schema=None) as batch_op:
        batch_op.drop_column("flag_pending")
        batch_op.drop_column("flag_adopted_percent")
        batch_op.drop_column("flag_problem")
        batch_op.drop_column("flag_seen_at")
        batch_op.drop_column("flag_enabled")
        batch_op.drop_column("flag_percent")
        batch_op.drop_column("flag_strategy_id")
