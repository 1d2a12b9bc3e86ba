"""The work queue's leases, as the work processes take them: the claim (which deletes the rows
finished since the last one), renewing, releasing and finishing. The rules they keep are in
bot/edge/workqueue.py's docstring; the tables' in storage/models.py (`WorkLease`).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, delete, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from storage.db import Database
from storage.dbapi_statements import Fixed
from storage.models import PendingWork, WorkLease, utcnow

PENDING = cast(Table, PendingWork.__table__)
LEASE = cast(Table, WorkLease.__table__)


@dataclass(frozen=True, slots=True)
class Work:
    """A claimed `pending_work` row and its lease (`work_lease`), as the claim returned them: a
    plain value, since nothing changes it through a session (building and tracking an ORM
    object for each was a tenth of the claim)."""

    id: int
    function_name: str
    body: str
    headers: dict[str, Any]
    created_at: datetime
    request_key: str | None
    attempts: int
    claimed_until: datetime
    claimed_by: str


# Work's fields: the request's columns, then its lease's.
_REQUEST_COLUMNS = [PENDING.c[name] for name in list(Work.__dataclass_fields__)[:6]]
_LEASE_COLUMNS = [LEASE.c[name] for name in list(Work.__dataclass_fields__)[6:]]


def _at(name: str) -> Any:
    return bindparam(name, type_=LEASE.c.claimed_until.type)


# The claim's statements, built once: constructing them for every claim cost as much as
# running them. A row is claimable when it has no lease (never claimed) or its lease ran out.
_WITH_LEASE = PENDING.outerjoin(LEASE, LEASE.c.work_id == PENDING.c.id)
_CLAIMABLE = or_(LEASE.c.work_id.is_(None), LEASE.c.claimed_until < _at("now"))
_ANY_CLAIMABLE = select(PENDING.c.id).select_from(_WITH_LEASE).where(_CLAIMABLE).limit(1)
_PICK = (
    select(PENDING.c.id)
    .select_from(_WITH_LEASE)
    .where(_CLAIMABLE)
    .order_by(PENDING.c.id)
    .limit(bindparam("limit"))
)
_PICK_LOCKED = _PICK.with_for_update(skip_locked=True, of=PENDING)


def _owned(ids: Any) -> Any:
    """The finished rows to delete: those among `ids` whose lease is still the owner's. Their
    lease rows go with them (ON DELETE CASCADE), in the same statement."""
    held = select(LEASE.c.work_id).where(ids, LEASE.c.claimed_by == bindparam("owner"))
    return delete(PENDING).where(PENDING.c.id.in_(held))


# One row per statement, run as an executemany: an expanding `IN` list is rendered into the
# statement again at every claim, which cost twice as much as deleting the rows one by one.
_DELETE_DONE = _owned(LEASE.c.work_id == bindparam("done"))


def _lease(make: Any, rows: Any) -> Any:
    """An upsert of the leases of `rows` (each a work row's id, the lease's end, its owner and
    1): a first claim inserts the lease row, a claim again takes it over and counts one more
    attempt. It returns the leases, and writes nothing else: not the work row."""
    statement = make(LEASE).from_select(["work_id", "claimed_until", "claimed_by", "attempts"], rows)
    return statement.on_conflict_do_update(
        index_elements=[LEASE.c.work_id],
        set_={
            "claimed_until": statement.excluded.claimed_until,
            "claimed_by": statement.excluded.claimed_by,
            "attempts": LEASE.c.attempts + 1,
        },
        # Postgres: the pick's snapshot may predate another process's lease of a row it then
        # locked (that process committed and let go of the row between the two; the work row
        # itself is not written, so Postgres has no newer version of it to check again). The
        # upsert looks at the lease as it is now, and leaves one that has not run out alone.
        where=LEASE.c.claimed_until < _at("now"),
    )


# Each picked row's new lease: its id, the lease's end, the owner, a first attempt.
_NEW_LEASE = select(PENDING.c.id, _at("until"), bindparam("owner", type_=String), literal(1))


# SQLite: pick and lease in one statement, returning only the leases; the requests (a click's
# is a 24 KB body) are read by a second one, in the same transaction. Postgres: the rows its own
# SELECT locked, leased, joined to their requests.
_LEASE_PICKED = _lease(
    sqlite_insert,
    _NEW_LEASE.select_from(_WITH_LEASE).where(_CLAIMABLE).order_by(PENDING.c.id).limit(bindparam("limit")),
).returning(LEASE.c.work_id, *_LEASE_COLUMNS)
_LEASED = _lease(postgres_insert, _NEW_LEASE.where(PENDING.c.id.in_(bindparam("ids", expanding=True))))
_LEASED_CTE = _LEASED.returning(LEASE.c.work_id, *_LEASE_COLUMNS).cte("leased")
_LEASE_IDS = select(*_REQUEST_COLUMNS, *(_LEASED_CTE.c[c.name] for c in _LEASE_COLUMNS)).join_from(
    _LEASED_CTE, PENDING, PENDING.c.id == _LEASED_CTE.c.work_id
)

# On SQLite the claim holds the queue's write lock, and the web process's queuing (so every
# ack) waits for it: its two statements run on the DBAPI connection, compiled once (`Fixed`),
# the rows converted (JSON headers, datetimes, `Work`) only after the commit, and the finished
# rows go in one DELETE (their ids a JSON list) instead of an executemany stepping SQLite once
# per row. Lock held, BEGIN IMMEDIATE to COMMIT, 24 KB bodies, 4 rows done, medians of three
# alternated runs: a claim of 1 row 0.36 → 0.30 ms, of 8 rows 1.10 → 0.95 ms; with SQLite's
# secure_delete=FAST (storage/db.py) 0.25 → 0.17 and 0.93 → 0.77 ms. The rest was SQLite
# rewriting each leased row, body and all (an 8-row claim added 52 pages to the WAL): the
# lease is a row of its own now (`work_lease`), and the claim writes only those small rows
# (1 page). bench/claim_lock.py against 21bc062, same method, 300 claims a run, the requests
# read inside the lock: 1 row 0.176 → 0.159 ms, 8 rows 0.727 → 0.219 ms held, and the claim's
# CPU 0.258 / 0.875 → 0.238 / 0.360 ms. Read after COMMIT they held it 0.124 / 0.145 ms, but
# cost 0.06 ms more CPU, and a read that failed there stranded the rows, leased, for a lease.
_DONE_IDS = func.json_each(bindparam("done_ids", type_=String)).table_valued("value")
_DELETE_DONE_LISTED = Fixed(_owned(LEASE.c.work_id.in_(select(_DONE_IDS.c.value))))
_LEASE_FIXED = Fixed(_LEASE_PICKED)
_LEASED_IDS = func.json_each(bindparam("ids", type_=String)).table_valued("value")
_REQUESTS = Fixed(select(*_REQUEST_COLUMNS).where(PENDING.c.id.in_(select(_LEASED_IDS.c.value))))


def claim(db: Database, limit: int, *, lease_s: float, owner: str, done: Collection[int] = ()) -> list[Work]:
    """Leases up to `limit` rows nobody holds: never claimed, or their lease ran out. Rows in
    `done` (work finished since the last claim) are deleted in the same transaction.

    Nothing to claim is found by a read, without the write lock: on SQLite the web process's
    queuing waits for that lock, so an idle work process must not take it to learn nothing.
    The claim writes lease rows only (`work_lease`), never the queued request's row: on SQLite
    one statement (`INSERT … SELECT … ON CONFLICT DO UPDATE … RETURNING`) on a bare
    connection, no ORM session, load or flush. On SQLite it and the `DELETE` run on the DBAPI
    connection, and the rows are converted only after `COMMIT`: the web process's queue writes,
    and so the acks, wait while a claim holds the lock."""
    now = utcnow()
    if not done:
        with db.connected() as conn:
            if conn.scalar(_ANY_CLAIMABLE, {"now": now}) is None:
                return []
    params = {"now": now, "limit": limit, "owner": owner, "until": now + timedelta(seconds=lease_s)}
    if db.dialect == "postgresql":
        return _claim_postgres(db, params, done)
    with db.writing() as conn:
        if done:
            _DELETE_DONE_LISTED.run(conn, {"done_ids": json.dumps(list(done)), "owner": owner})
        fetched, _ = _LEASE_FIXED.fetch(conn, params)
        if not fetched.rows:
            return []
        # In the lease's transaction: a read that failed after the COMMIT would leave the rows
        # leased to nobody running them for a whole lease, an attempt spent.
        requests, _ = _REQUESTS.fetch(conn, {"ids": json.dumps([row[0] for row in fetched.rows])})
    leases = {row[0]: row[1:] for row in fetched.converted()}
    return sorted((Work(*row, *leases[row[0]]) for row in requests.converted()), key=lambda row: row.id)


def _claim_postgres(db: Database, params: dict[str, Any], done: Collection[int]) -> list[Work]:
    with db.writing() as conn:
        if done:
            conn.execute(_DELETE_DONE, [{"done": row_id, "owner": params["owner"]} for row_id in done])
        # The rows are picked (and locked) by a statement of their own: as a subquery of the
        # INSERT, Postgres may run a LIMIT … SKIP LOCKED more than once and lease more rows.
        picked = list(conn.scalars(_PICK_LOCKED, params))
        if not picked:
            return []
        rows = [Work(*row) for row in conn.execute(_LEASE_IDS, {**params, "ids": picked})]
    return sorted(rows, key=lambda row: row.id)


def renew(db: Database, ids: list[int], *, lease_s: float, owner: str) -> None:
    """The leases of `ids` that `owner` still holds now run until `lease_s` seconds from now."""
    if not ids:
        return
    with db.writing() as conn:
        conn.execute(
            update(LEASE)
            .where(LEASE.c.work_id.in_(ids), LEASE.c.claimed_by == owner)
            .values(claimed_until=utcnow() + timedelta(seconds=lease_s))
        )


def finish(db: Database, work: Work) -> bool:
    """Deletes the row, and its lease with it (ON DELETE CASCADE), while the lease is still
    this claim's (True): one that ran out meanwhile may be another process's, running it now."""
    with db.writing() as conn:
        return conn.execute(_DELETE_DONE, {"done": work.id, "owner": work.claimed_by}).rowcount > 0


def release(db: Database, work: Work, after_s: float) -> None:
    """Lets the row be claimed again after `after_s` seconds, if this claim still holds it: a
    lease that ran out meanwhile may be another process's, running it now, and cutting it short
    would let a third claim it as well."""
    renew(db, [work.id], lease_s=after_s, owner=work.claimed_by)


def forget_done(db: Database, done: Collection[int], owner: str) -> None:
    """Deletes the finished rows in `done` still leased to `owner` (a stopping process's)."""
    if done:
        with db.writing() as conn:
            conn.execute(_owned(LEASE.c.work_id.in_(list(done))), {"owner": owner})


# Leases whose work row is gone. None while foreign keys are on (the lease goes with its row),
# as they are on every connection the bot opens; a row deleted by hand with the `sqlite3`
# shell, whose foreign keys are off by default, leaves its lease, and SQLite hands the row's
# id to the next request queued when it was the last: that request would start leased.
ORPHAN_LEASES = delete(LEASE).where(~exists().where(PENDING.c.id == LEASE.c.work_id))
