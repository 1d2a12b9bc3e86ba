"""work leases in a table of their own: a claim writes a small row, not the queued request's

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:30:00

The lease (`claimed_until`, `claimed_by`, `attempts`) moves from `pending_work`'s columns to
`work_lease`, a row per claimed work row, deleted with it (ON DELETE CASCADE). Why: SQLite
rewrites the whole record for any UPDATE, and the claim's `UPDATE … RETURNING` rewrote each
leased row's 24 KB body (a click's payload) with the queue's write lock held, which every ack's
queue write waits for (bench/claim_lock.py; the figures are in bot/edge/leases.py).

Expand only: `pending_work` keeps the old columns, which this release neither reads nor writes,
so that a replica of the release before, still running during a rolling deploy, can queue
(its INSERT names them) and claim until it stops. A later migration drops them.

Rows already queued stay, and so do their leases: a row ever claimed (a lease, a release, an
attempt counted) gets a lease row with its values; one never claimed gets none, as a new row.
On SQLite `pending_work` is rebuilt (batch mode: copy, drop, rename) with AUTOINCREMENT, so a
deleted row's id is never handed out again (a lease left by a row deleted with foreign keys off
would otherwise be a new request's); `work_lease` is made after the rebuild, since dropping the
old table with foreign keys on would delete every lease pointing at it. The downgrade writes the
leases back into the columns, then drops the table and rebuilds without AUTOINCREMENT. Runs on
both databases of a SQLite install; the queue database's tables are the ones used.
"""

from typing import Any

from alembic import op
import sqlalchemy as sa
import storage.models


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _work() -> sa.TableClause:
    return sa.table(
        "pending_work",
        sa.column("id", sa.Integer()),
        sa.column("created_at", storage.models.UTCDateTime(timezone=True)),
        *_lease_columns(),
    )


def _lease_columns() -> list[sa.ColumnClause[Any]]:
    return [
        sa.column("claimed_until", storage.models.UTCDateTime(timezone=True)),
        sa.column("claimed_by", sa.String(length=100)),
        sa.column("attempts", sa.Integer()),
    ]


def _rebuild_on_sqlite(autoincrement: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "pending_work", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild_on_sqlite(autoincrement=True)
    lease = op.create_table(
        "work_lease",
        sa.Column("work_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("claimed_until", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_id"],
            ["pending_work.id"],
            name=op.f("fk_work_lease_work_id_pending_work"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("work_id", name=op.f("pk_work_lease")),
    )
    work = _work()
    claimed = sa.or_(work.c.claimed_until.is_not(None), work.c.claimed_by.is_not(None), work.c.attempts > 0)
    leases = [
        {
            "work_id": row.id,
            # Never NULL in a lease row: a row counted as claimed without a lease time was
            # claimable, as one whose lease ran out long ago is.
            "claimed_until": row.claimed_until or row.created_at,
            "claimed_by": row.claimed_by or "",
            "attempts": row.attempts,
        }
        for row in op.get_bind().execute(sa.select(work).where(claimed))
    ]
    if leases:
        op.bulk_insert(lease, leases)


def downgrade() -> None:
    lease = sa.table("work_lease", sa.column("work_id", sa.Integer()), *_lease_columns())
    leases = [
        {
            "b_id": row.work_id,
            "b_until": row.claimed_until,
            "b_by": row.claimed_by,
            "b_attempts": row.attempts,
        }
        for row in op.get_bind().execute(sa.select(lease))
    ]
    if leases:
        work = _work()
        op.get_bind().execute(
            sa.update(work)
            .where(work.c.id == sa.bindparam("b_id"))
            .values(
                claimed_until=sa.bindparam("b_until", type_=work.c.claimed_until.type),
                claimed_by=sa.bindparam("b_by", type_=work.c.claimed_by.type),
                attempts=sa.bindparam("b_attempts", type_=work.c.attempts.type),
            ),
            leases,
        )
    op.drop_table("work_lease")  # first: rebuilding pending_work would delete its rows anyway
    _rebuild_on_sqlite(autoincrement=False)
