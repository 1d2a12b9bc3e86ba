"""The due-work tick's statements (bot/delivery/jobs.py): targeted reads of a row or two, never
the plan, and the tick's own writes to `due_job`. Built once at import and reused, so their
compiled form is cached; those a tick runs every time run on the DBAPI connection of the
session's transaction (`storage.dbapi_statements`), but the claim's (its index test watches
for it on the engine). Like `storage.queries`, they take the session as a keyword and never
commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Table,
    bindparam,
    case,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from storage.dbapi_statements import Fixed
from storage.enums import EventKind, ItemKind, SnapshotKind
from storage.models import ChecklistItem, DueJob, Event, MetricSnapshot, OutboxMessage, Phase, Rollout, Step
from storage.rows import plain

# --- targeted reads for the due jobs (bot/delivery/jobs.py): a row or two, never the plan ----


# Built once and reused: the statements a due job runs every time (their compiled form is cached).
# The rollout's row with the columns the due jobs decide from, not the plan document and the
# rest, read as Core columns and made into a detached `Rollout` of those columns alone
# (`rows.plain`: no constructor, no attribute events): the ORM's loading (identity map, row
# processors, the unloaded attributes' loaders) cost several times the statement.
_JOB_COLUMNS = """id team_id channel_id feature owner_id stakeholder_channels status phase_index step_index
step_started_at timezone country revision updated_at metrics triggers watch_pauses flag_key service
flag_seen_at flag_pending digest digest_time auto_advance"""
_ROW = select(*(getattr(Rollout, name).label(name) for name in _JOB_COLUMNS.split())).where(
    Rollout.id == bindparam("rollout_id")
)
_ROW_LOCKED_PG = _ROW.with_for_update(of=Rollout)
_STEP = (
    select(Step.position, Step.percent, Step.label, Step.min_business_days, Step.planned_end)
    .join(Phase, Step.phase_id == Phase.id)
    .where(
        Phase.rollout_id == bindparam("rollout_id"),
        Phase.position == bindparam("phase_index"),
        Step.position == bindparam("step_index"),
    )
)
_KEY_QUEUED = select(OutboxMessage.id).where(OutboxMessage.dedupe_key == bindparam("key"))
_DUE_AT = select(DueJob.due_at).where(
    DueJob.rollout_id == bindparam("rollout_id"), DueJob.kind == bindparam("kind")
)


# The overdue reminder's two questions about the ready check, in one statement: is its reminder
# queued (the outbox key), and when is its row due.
_KEY_AND_DUE_AT = select(
    _KEY_QUEUED.exists(),
    _DUE_AT.scalar_subquery(),
)
# The same, and the step at (phase, step), in one round trip: what the overdue reminder reads
# besides the view. No row when there is no such step.
_STEP_KEY_AND_DUE_AT = _STEP.add_columns(_KEY_QUEUED.exists(), _DUE_AT.scalar_subquery())

# The rollout's row with its current step (outer-joined: None when the plan has no such step),
# for a job that needs both: one statement where `job_rollout_row` and `step_at` took two.
_STEP_COLUMNS = ("position", "percent", "label", "min_business_days", "planned_end")
_ROW_AND_STEP = (
    _ROW.add_columns(*(getattr(Step, name).label(f"current_step_{name}") for name in _STEP_COLUMNS))
    .outerjoin(Phase, (Phase.rollout_id == Rollout.id) & (Phase.position == Rollout.phase_index))
    .outerjoin(Step, (Step.phase_id == Phase.id) & (Step.position == Rollout.step_index))
)
_ROW_AND_STEP_LOCKED_PG = _ROW_AND_STEP.with_for_update(of=Rollout)
# ... and the newest verdict taken at that step (`latest_check`), for the digest.
_CHECK = aliased(MetricSnapshot)
_CHECK_COLUMNS = ("taken_at", "passed", "verdict")
_NEWEST_CHECK_ID = (
    select(MetricSnapshot.id)
    .where(
        MetricSnapshot.rollout_id == Rollout.id,
        MetricSnapshot.kind.in_((SnapshotKind.GATE, SnapshotKind.CHECK, SnapshotKind.WATCH)),
        MetricSnapshot.phase_index == Rollout.phase_index,
        MetricSnapshot.step_index == Rollout.step_index,
    )
    .order_by(MetricSnapshot.taken_at.desc(), MetricSnapshot.id.desc())
    .limit(1)
    .correlate(Rollout)
    .scalar_subquery()
)
_DIGEST_ROW = _ROW_AND_STEP.add_columns(
    *(getattr(_CHECK, name).label(f"newest_check_{name}") for name in _CHECK_COLUMNS)
).outerjoin(_CHECK, _CHECK.id == _NEWEST_CHECK_ID)


_GATING_EXITS = (
    select(ChecklistItem.text)
    .join(Phase, ChecklistItem.phase_id == Phase.id)
    .where(
        Phase.rollout_id == bindparam("rollout_id"),
        Phase.position == bindparam("phase_index"),
        ChecklistItem.kind == ItemKind.EXIT,
        ChecklistItem.checked_at.is_(None),
        # Only leaving the phase is gated by them: no later step in it.
        ~select(Step.id).where(Step.phase_id == Phase.id, Step.position > bindparam("step_index")).exists(),
    )
    .order_by(ChecklistItem.position)
)
_BASELINE = (
    select(MetricSnapshot.readings)
    .where(MetricSnapshot.rollout_id == bindparam("rollout_id"), MetricSnapshot.kind == SnapshotKind.BASELINE)
    .order_by(MetricSnapshot.taken_at.desc(), MetricSnapshot.id.desc())
    .limit(1)
)


# What a digest recalls: the events of a span, oldest first, and the step's newest verdict
# (a gate, a check, or a watch that saw a trigger fire), as `queries.events_between` and
# `queries.latest_check` find them, in columns rather than ORM rows.
_EVENTS_UNTIL = (
    select(Event.kind, Event.actor_id, Event.at, Event.data, Event.id)
    .where(Event.rollout_id == bindparam("rollout_id"), Event.at <= bindparam("until"))
    .order_by(Event.at, Event.id)
)
_EVENTS_BETWEEN = _EVENTS_UNTIL.where(Event.at > bindparam("after"))
_LATEST_CHECK = (
    select(MetricSnapshot.taken_at, MetricSnapshot.passed, MetricSnapshot.verdict)
    .where(
        MetricSnapshot.rollout_id == bindparam("rollout_id"),
        MetricSnapshot.kind.in_((SnapshotKind.GATE, SnapshotKind.CHECK, SnapshotKind.WATCH)),
        MetricSnapshot.phase_index == bindparam("phase_index"),
        MetricSnapshot.step_index == bindparam("step_index"),
    )
    .order_by(MetricSnapshot.taken_at.desc(), MetricSnapshot.id.desc())
    .limit(1)
)

# The same statements run on the DBAPI connection (`storage.dbapi_statements`): the tick's jobs
# run them every time, and SQLAlchemy's execution path cost more CPU than the statements.
_F_ROW = Fixed(_ROW)
_F_ROW_LOCKED_PG = Fixed(_ROW_LOCKED_PG)
_F_ROW_AND_STEP = Fixed(_ROW_AND_STEP)
_F_ROW_AND_STEP_LOCKED_PG = Fixed(_ROW_AND_STEP_LOCKED_PG)
_F_DIGEST_ROW = Fixed(_DIGEST_ROW)
_F_STEP_KEY_AND_DUE_AT = Fixed(_STEP_KEY_AND_DUE_AT)
_F_KEY_QUEUED = Fixed(_KEY_QUEUED)
_F_GATING_EXITS = Fixed(_GATING_EXITS)
_F_BASELINE = Fixed(_BASELINE)
_F_EVENTS_UNTIL = Fixed(_EVENTS_UNTIL)
_F_EVENTS_BETWEEN = Fixed(_EVENTS_BETWEEN)


def _core(session: Session) -> Connection:
    """The session's connection, for a Core read without the ORM's execute path (a tenth of a
    millisecond a statement). What the session holds unflushed is flushed first, as its own
    execute would, so the read sees it."""
    if session.autoflush:
        session.flush()
    return session.connection()


class EventRow(NamedTuple):
    """An event as a digest reads it (`events_between`)."""

    kind: EventKind
    actor_id: str
    at: datetime
    data: dict[str, Any]
    id: int


def events_between(
    *, session: Session, rollout_id: int, after: datetime | None, until: datetime
) -> list[EventRow]:
    """A rollout's events in (after, until] (from its start when `after` is None), oldest
    first: kind, actor_id, at, data, id."""
    if after is None:
        rows = _F_EVENTS_UNTIL.all(session, {"rollout_id": rollout_id, "until": until})
    else:
        rows = _F_EVENTS_BETWEEN.all(session, {"rollout_id": rollout_id, "until": until, "after": after})
    return [EventRow(*r) for r in rows]


def latest_check(*, session: Session, rollout_id: int, phase_index: int, step_index: int) -> Row[Any] | None:
    """The newest verdict taken at that step (taken_at, passed, verdict), or None."""
    params = {"rollout_id": rollout_id, "phase_index": phase_index, "step_index": step_index}
    return _core(session).execute(_LATEST_CHECK, params).first()


def gating_exit_criteria(
    *, session: Session, rollout_id: int, phase_index: int, step_index: int
) -> list[str]:
    """The exit criteria nobody ticked that the next advance from (phase, step) needs: those of
    the phase when the step is its last, else none (`rollouts.unchecked_exit_criteria`)."""
    params = {"rollout_id": rollout_id, "phase_index": phase_index, "step_index": step_index}
    return [text for (text,) in _F_GATING_EXITS.all(session, params)]


def baseline_readings(*, session: Session, rollout_id: int) -> dict[str, Any] | None:
    """The readings of the rollout's newest baseline snapshot (as `latest_snapshot` finds it)."""
    found = _F_BASELINE.first(session, {"rollout_id": rollout_id})
    return None if found is None else found[0]


def job_rollout_row(*, session: Session, rollout_id: int) -> Rollout | None:
    """The rollout's own row for a due job to decide from, as a detached `Rollout` of the
    columns jobs read (`_JOB_COLUMNS`): not in the session, so nothing set on it is written;
    its plan and the columns no job reads are not there."""
    found = _F_ROW.first_named(session, {"rollout_id": rollout_id})
    return None if found is None else plain(Rollout, found)


def lock_rollout_row(*, session: Session, rollout_id: int) -> Rollout | None:
    """`job_rollout_row`, for a change that decides from the rollout's columns: on Postgres
    `SELECT ... FOR UPDATE` of that one row (changes to the rollout wait their turn, as with
    `lock_rollout`), without loading its plan."""
    locked = _F_ROW_LOCKED_PG if session.get_bind().dialect.name == "postgresql" else _F_ROW
    found = locked.first_named(session, {"rollout_id": rollout_id})
    return None if found is None else plain(Rollout, found)


class Check(NamedTuple):
    """A step's newest verdict, as `latest_check` reads it."""

    taken_at: datetime
    passed: bool | None
    verdict: dict[str, Any] | None


def _split(found: Sequence[Any], keys: Sequence[str]) -> tuple[Rollout, Step | None, dict[str, Any]]:
    """A `_ROW_AND_STEP` row: the detached rollout, its step (None: no such step), and what
    else the statement read, by its label."""
    columns = dict(zip(keys, found, strict=True))
    rest = {
        name: columns.pop(name)
        for name in list(columns)
        if name.startswith(("current_step_", "newest_check_"))
    }
    step = None
    if rest["current_step_position"] is not None:
        step = plain(Step, {name: rest[f"current_step_{name}"] for name in _STEP_COLUMNS})
    return plain(Rollout, columns), step, rest


def rollout_and_step(
    *, session: Session, rollout_id: int, lock: bool = False
) -> tuple[Rollout, Step | None] | None:
    """`job_rollout_row` (`lock_rollout_row` with `lock`) and the step it is at (`step_at`;
    None when the plan has no such step), in one statement."""
    locked = lock and session.get_bind().dialect.name == "postgresql"
    statement = _F_ROW_AND_STEP_LOCKED_PG if locked else _F_ROW_AND_STEP
    found = statement.first(session, {"rollout_id": rollout_id})
    if found is None:
        return None
    rollout, step, _ = _split(found, statement.keys(session))
    return rollout, step


def digest_row(*, session: Session, rollout_id: int) -> tuple[Rollout, Step | None, Check | None] | None:
    """`rollout_and_step`, and the newest verdict taken at that step (`latest_check`), in one
    statement: what the digest reads besides the events and the view."""
    found = _F_DIGEST_ROW.first(session, {"rollout_id": rollout_id})
    if found is None:
        return None
    rollout, step, rest = _split(found, _F_DIGEST_ROW.keys(session))
    check = None
    if rest["newest_check_taken_at"] is not None:
        check = Check(*(rest[f"newest_check_{name}"] for name in _CHECK_COLUMNS))
    return rollout, step, check


def step_key_queued_and_due_at(
    *, session: Session, rollout_id: int, phase_index: int, step_index: int, dedupe_key: str, kind: str
) -> tuple[Step, bool, datetime | None] | None:
    """`step_at` and `key_queued_and_due_at`, in one round trip; None when there is no such step."""
    params = {
        "rollout_id": rollout_id,
        "phase_index": phase_index,
        "step_index": step_index,
        "key": dedupe_key,
        "kind": kind,
    }
    found = _F_STEP_KEY_AND_DUE_AT.first(session, params)
    if found is None:
        return None
    *step, queued, due_at = found
    return plain(Step, dict(zip(_STEP_COLUMNS, step, strict=True))), bool(queued), due_at


def step_at(*, session: Session, rollout_id: int, phase_index: int, step_index: int) -> Step | None:
    """One step of a rollout's plan by its place (positions are the indices), without the rest:
    what a due job needs of the current step (soak, planned end, title), as a detached `Step`
    built from those columns alone."""
    params = {"rollout_id": rollout_id, "phase_index": phase_index, "step_index": step_index}
    found = _core(session).execute(_STEP, params).first()
    if found is None:
        return None
    return Step(**found._mapping)


def key_queued(*, session: Session, dedupe_key: str) -> bool:
    """`outbox_key_exists`, as a prepared statement."""
    return _F_KEY_QUEUED.first(session, {"key": dedupe_key}) is not None


def key_queued_and_due_at(
    *, session: Session, dedupe_key: str, rollout_id: int, kind: str
) -> tuple[bool, datetime | None]:
    """`key_queued`, and when a rollout's row of `kind` is due (its lease, while a run holds
    it; None: no row), in one round trip."""
    params = {"key": dedupe_key, "rollout_id": rollout_id, "kind": kind}
    queued, due_at = _core(session).execute(_KEY_AND_DUE_AT, params).one()
    return bool(queued), due_at


_DUE_ROWS: dict[str, Select[Any]] = {}


def due_rows(*, session: Session, now: datetime, limit: int, kinds: Collection[str]) -> Sequence[Row[Any]]:
    """`due_jobs` as plain rows, for a claim that only moves them on: the same statement
    (through ix_due_job_due_at), built once per dialect."""
    dialect = session.get_bind().dialect.name
    stmt = _DUE_ROWS.get(dialect)
    if stmt is None:
        table = DueJob.__table__
        stmt = (
            select(*table.c)
            .where(table.c.due_at <= bindparam("now"), table.c.kind.in_(bindparam("kinds", expanding=True)))
            .order_by(table.c.due_at)
            .limit(bindparam("limit"))
        )
        if dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        _DUE_ROWS[dialect] = stmt
    # On the session's connection (Core), not through the ORM's execute path.
    return session.connection().execute(stmt, {"now": now, "kinds": sorted(kinds), "limit": limit}).all()


# The tick's own writes to `due_job`, built once and reused (their compiled form is cached), run
# as Core statements on the session's connection: no ORM objects for rows only moved on.
_JOBS = cast("Table", DueJob.__table__)
_LEASE = (
    update(_JOBS).where(_JOBS.c.id.in_(bindparam("ids", expanding=True))).values(due_at=bindparam("lease"))
)
# One statement per settled row: the run is stamped whatever happens; its next time (and data)
# only while the claim's token still holds (the right-hand sides read the row as it was).
_HELD = _JOBS.c.due_at == bindparam("token")
_MOVE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"))
    .values(
        last_run_at=bindparam("ran_at"),
        due_at=case((_HELD, bindparam("next_at", type_=_JOBS.c.due_at.type)), else_=_JOBS.c.due_at),
        data=case((_HELD, bindparam("next_data", type_=_JOBS.c.data.type)), else_=_JOBS.c.data),
    )
)
_STAMP = update(_JOBS).where(_JOBS.c.id == bindparam("job_id")).values(last_run_at=bindparam("ran_at"))
_DROP = delete(_JOBS).where(_JOBS.c.id == bindparam("job_id"), _HELD)
_F_MOVE, _F_STAMP, _F_DROP = Fixed(_MOVE), Fixed(_STAMP), Fixed(_DROP)  # on the DBAPI connection


def lease_due_rows(*, session: Session, ids: Sequence[int], lease: datetime) -> None:
    """Claims rows (read with `due_rows` in this transaction) by moving their `due_at` to `lease`."""
    session.connection().execute(_LEASE, {"ids": list(ids), "lease": lease})


def settle_due_row(
    *,
    session: Session,
    job_id: int,
    token: datetime,
    ran_at: datetime,
    next_at: datetime | None,
    next_data: dict[str, Any] | None,
) -> None:
    """Records a claimed row's run at `ran_at`, and, only while its `due_at` is still `token`
    (the claim's lease: a change meanwhile re-planned it otherwise), moves it to `next_at` with
    `next_data`, or deletes it when `next_at` is None."""
    mine = {"job_id": job_id, "token": token, "ran_at": ran_at}
    if next_at is not None:
        _F_MOVE.run(session, {**mine, "next_at": next_at, "next_data": next_data})
    elif not _F_DROP.rowcount(session, mine):
        _F_STAMP.run(session, mine)  # re-planned meanwhile: the row stays, stamped


def put_due_row(
    *, session: Session, rollout_id: int, kind: str, due_at: datetime, data: dict[str, Any]
) -> None:
    """Sets a rollout's row of `kind` (one per rollout and kind) to `due_at` and `data`, making
    it if there is none: one INSERT ... ON CONFLICT DO UPDATE."""
    dialect = session.get_bind().dialect.name
    put = _PUTS.get(dialect)
    if put is None:
        build = postgres_insert if dialect == "postgresql" else sqlite_insert
        made = build(_JOBS).values(
            rollout_id=bindparam("rollout_id"),
            kind=bindparam("kind"),
            due_at=bindparam("due_at"),
            data=bindparam("data"),
        )
        # `excluded`: the values this INSERT proposed, so each is bound once.
        upsert = made.on_conflict_do_update(
            index_elements=["rollout_id", "kind"],
            set_={"due_at": made.excluded.due_at, "data": made.excluded.data},
        )
        _PUTS[dialect] = put = Fixed(upsert)
    put.run(session, {"rollout_id": rollout_id, "kind": kind, "due_at": due_at, "data": data})


_PUTS: dict[str, Fixed] = {}  # put_due_row's statement, built once per dialect
