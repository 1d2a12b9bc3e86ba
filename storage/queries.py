"""Query functions. They take the session as a keyword and never commit: the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, load_only, raiseload, selectinload

from storage.enums import OPEN_STATUSES, EventKind, ItemKind, SnapshotKind
from storage.models import (
    Approver,
    ChecklistItem,
    DueJob,
    Event,
    MetricSnapshot,
    OutboxMessage,
    Phase,
    PlanTemplate,
    Rollout,
    SlackMessage,
    Step,
)

STATUS_PURPOSE = "status"


def _with_plan(stmt: Select[Rollout]) -> Select[Rollout]:
    # selectin, not joined: Postgres refuses FOR UPDATE on the nullable side of an outer join.
    return stmt.options(
        selectinload(Rollout.phases).selectinload(Phase.steps),
        selectinload(Rollout.phases).selectinload(Phase.items),
        selectinload(Rollout.approvers),
    )


def get_rollout(*, session: Session, rollout_id: int) -> Rollout | None:
    return session.scalars(_with_plan(select(Rollout).where(Rollout.id == rollout_id))).first()


def rollout_row(*, session: Session, rollout_id: int) -> Rollout | None:
    """The rollout's own row, without its plan (phases, steps, items, approvers): for work that
    decides from its columns. Its relationships are not loaded; do not read them."""
    return session.scalars(select(Rollout).where(Rollout.id == rollout_id)).first()


def revision_of(*, session: Session, rollout_id: int) -> int | None:
    """Just the revision: enough to tell whether a render is stale, without loading the plan."""
    return session.scalar(select(Rollout.revision).where(Rollout.id == rollout_id))


def lock_rollout(*, session: Session, rollout_id: int) -> Rollout | None:
    """Loads a rollout for change. On Postgres the row lock makes concurrent changes to one
    rollout wait their turn; SQLite write transactions are already serialised (storage.db)."""
    stmt = _with_plan(select(Rollout).where(Rollout.id == rollout_id))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Rollout)
    # populate_existing: a lock is only worth it with the row as it is now, not as cached.
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


def open_by_feature(*, session: Session, team_id: str, feature_key: str) -> Rollout | None:
    stmt = select(Rollout).where(
        Rollout.team_id == team_id,
        Rollout.feature_key == feature_key,
        Rollout.status.in_(OPEN_STATUSES),
    )
    return session.scalars(stmt).first()


class Named(NamedTuple):
    """A rollout as a lookup finds it: enough to name it, without loading its plan."""

    id: int
    feature: str


# Lookups run before every command that names a rollout: plain statements of two columns,
# built once, instead of whole ORM rows with the plan's JSON decoded.
_rollout = cast("Table", Rollout.__table__).c
_OPEN_FIRST = _rollout.status.in_(OPEN_STATUSES).desc()
_LATEST_BY_FEATURE = (
    select(_rollout.id, _rollout.feature)
    .where(_rollout.team_id == bindparam("team_id"), _rollout.feature_key == bindparam("feature_key"))
    .order_by(_OPEN_FIRST, _rollout.created_at.desc())
    .limit(1)
)
_OPEN_IN_CHANNEL = (
    select(_rollout.id, _rollout.feature)
    .where(
        _rollout.team_id == bindparam("team_id"),
        _rollout.channel_id == bindparam("channel_id"),
        _rollout.status.in_(OPEN_STATUSES),
    )
    .order_by(_rollout.created_at)
)


def latest_by_feature(*, session: Session, team_id: str, feature_key: str) -> Named | None:
    """The open rollout of that name, else the most recent finished one."""
    params = {"team_id": team_id, "feature_key": feature_key}
    row = session.connection().execute(_LATEST_BY_FEATURE, params).first()
    return None if row is None else Named(row[0], row[1])


def open_in_channel(*, session: Session, team_id: str, channel_id: str) -> list[Named]:
    """The channel's open rollouts, oldest first."""
    params = {"team_id": team_id, "channel_id": channel_id}
    return [Named(i, f) for i, f in session.connection().execute(_OPEN_IN_CHANNEL, params)]


def open_in_team(*, session: Session, team_id: str) -> Sequence[Rollout]:
    stmt = _with_plan(
        select(Rollout)
        .where(Rollout.team_id == team_id, Rollout.status.in_(OPEN_STATUSES))
        .order_by(Rollout.created_at)
    )
    return session.scalars(stmt).all()


def status_message(*, session: Session, rollout_id: int) -> SlackMessage | None:
    stmt = select(SlackMessage).where(
        SlackMessage.rollout_id == rollout_id, SlackMessage.purpose == STATUS_PURPOSE
    )
    return session.scalars(stmt).first()


def events(*, session: Session, rollout_id: int) -> Sequence[Event]:
    stmt = select(Event).where(Event.rollout_id == rollout_id).order_by(Event.at, Event.id)
    return session.scalars(stmt).all()


def events_page(*, session: Session, rollout_id: int, before_id: int | None, limit: int) -> Sequence[Event]:
    """A rollout's events newest first (by time, then id); with `before_id`, only those older
    than that event, so a page starts where the previous one stopped."""
    stmt = select(Event).where(Event.rollout_id == rollout_id)
    if before_id is not None:
        anchor = (
            select(Event.at).where(Event.id == before_id, Event.rollout_id == rollout_id).scalar_subquery()
        )
        stmt = stmt.where(or_(Event.at < anchor, and_(Event.at == anchor, Event.id < before_id)))
    return session.scalars(stmt.order_by(Event.at.desc(), Event.id.desc()).limit(limit)).all()


def last_refusal(*, session: Session, rollout_id: int, user_id: str) -> Event | None:
    """The newest refusal of this person on this rollout: what they were trying to do."""
    stmt = select(Event).where(
        Event.rollout_id == rollout_id, Event.kind == EventKind.REFUSED, Event.actor_id == user_id
    )
    return session.scalars(stmt.order_by(Event.id.desc()).limit(1)).first()


def count_events(*, session: Session, rollout_id: int) -> int:
    return session.scalar(select(func.count(Event.id)).where(Event.rollout_id == rollout_id)) or 0


def snapshots(*, session: Session, rollout_id: int) -> Sequence[MetricSnapshot]:
    stmt = (
        select(MetricSnapshot)
        .where(MetricSnapshot.rollout_id == rollout_id)
        .order_by(MetricSnapshot.taken_at, MetricSnapshot.id)
    )
    return session.scalars(stmt).all()


def latest_snapshot(*, session: Session, rollout_id: int, kind: SnapshotKind) -> MetricSnapshot | None:
    stmt = (
        select(MetricSnapshot)
        .where(MetricSnapshot.rollout_id == rollout_id, MetricSnapshot.kind == kind)
        .order_by(MetricSnapshot.taken_at.desc(), MetricSnapshot.id.desc())
    )
    return session.scalars(stmt).first()


def open_for_user(*, session: Session, team_id: str, user_id: str) -> Sequence[Rollout]:
    """Open rollouts a person owns, approves or started: their App Home."""
    approves = select(Approver.rollout_id).where(Approver.user_id == user_id)
    stmt = _with_plan(
        select(Rollout)
        .where(
            Rollout.team_id == team_id,
            Rollout.status.in_(OPEN_STATUSES),
            or_(Rollout.owner_id == user_id, Rollout.created_by == user_id, Rollout.id.in_(approves)),
        )
        .order_by(Rollout.created_at)
    )
    return session.scalars(stmt).all()


def plan_templates(*, session: Session, team_id: str) -> Sequence[PlanTemplate]:
    """Imported templates a workspace can use: its own and those for every workspace."""
    stmt = (
        select(PlanTemplate)
        .where(PlanTemplate.team_id.in_(("", team_id)))
        .order_by(PlanTemplate.team_id.desc(), PlanTemplate.name)
    )
    return session.scalars(stmt).all()


# --- due work (bot/jobs.py) ---------------------------------------------------------------


def due_jobs_of(*, session: Session, rollout_id: int) -> Sequence[DueJob]:
    """A rollout's scheduled work, at most one row per kind."""
    return session.scalars(select(DueJob).where(DueJob.rollout_id == rollout_id)).all()


def due_jobs(
    *, session: Session, now: datetime, limit: int, kinds: Collection[str] | None = None
) -> Sequence[DueJob]:
    """Rows due at `now` (of `kinds`, when given), soonest first, through ix_due_job_due_at:
    the cost is the number of due rows, not of rollouts. On Postgres the rows are locked and
    rows another replica holds are skipped (FOR UPDATE SKIP LOCKED), so two ticks never claim
    one row."""
    stmt = select(DueJob).where(DueJob.due_at <= now)
    if kinds is not None:
        stmt = stmt.where(DueJob.kind.in_(sorted(kinds)))
    stmt = stmt.order_by(DueJob.due_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).all()


def events_between(
    *, session: Session, rollout_id: int, after: datetime | None, until: datetime
) -> Sequence[Event]:
    """A rollout's events in (after, until] (from its start when `after` is None), oldest first."""
    stmt = select(Event).where(Event.rollout_id == rollout_id, Event.at <= until)
    if after is not None:
        stmt = stmt.where(Event.at > after)
    return session.scalars(stmt.order_by(Event.at, Event.id)).all()


def outbox_key_exists(*, session: Session, dedupe_key: str) -> bool:
    """Was this announcement already queued (whatever became of it)?"""
    return session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)) is not None


def latest_check(
    *, session: Session, rollout_id: int, phase_index: int, step_index: int
) -> MetricSnapshot | None:
    """The newest verdict taken at that step: a gate, a check, or a watch that saw a trigger fire."""
    stmt = (
        select(MetricSnapshot)
        .where(
            MetricSnapshot.rollout_id == rollout_id,
            MetricSnapshot.kind.in_((SnapshotKind.GATE, SnapshotKind.CHECK, SnapshotKind.WATCH)),
            MetricSnapshot.phase_index == phase_index,
            MetricSnapshot.step_index == step_index,
        )
        .order_by(MetricSnapshot.taken_at.desc(), MetricSnapshot.id.desc())
    )
    return session.scalars(stmt).first()


# --- targeted reads for the due jobs (bot/delivery/jobs.py): a row or two, never the plan ----


# Built once and reused: the statements a due job runs every time (their compiled form is cached).
# The rollout's row with the columns the due jobs decide from, not the plan document and the
# rest: reading another raises instead of loading.
_JOB_COLUMNS = """id team_id channel_id feature owner_id stakeholder_channels status phase_index step_index
step_started_at timezone country revision updated_at metrics triggers watch_pauses flag_key service
flag_seen_at flag_pending digest digest_time auto_advance"""
_JOB_ONLY = load_only(*(getattr(Rollout, name) for name in _JOB_COLUMNS.split()), raiseload=True)
_ROW = select(Rollout).where(Rollout.id == bindparam("rollout_id")).options(_JOB_ONLY, raiseload("*"))
_ROW_LOCKED = _ROW.execution_options(populate_existing=True)
_ROW_LOCKED_PG = _ROW.with_for_update(of=Rollout).execution_options(populate_existing=True)
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


def gating_exit_criteria(
    *, session: Session, rollout_id: int, phase_index: int, step_index: int
) -> list[str]:
    """The exit criteria nobody ticked that the next advance from (phase, step) needs: those of
    the phase when the step is its last, else none (`rollouts.unchecked_exit_criteria`)."""
    params = {"rollout_id": rollout_id, "phase_index": phase_index, "step_index": step_index}
    return list(session.scalars(_GATING_EXITS, params))


def baseline_readings(*, session: Session, rollout_id: int) -> dict[str, Any] | None:
    """The readings of the rollout's newest baseline snapshot (as `latest_snapshot` finds it)."""
    return session.execute(_BASELINE, {"rollout_id": rollout_id}).scalar()


def job_rollout_row(*, session: Session, rollout_id: int) -> Rollout | None:
    """The rollout's own row for a due job to decide from: its relationships (the plan) and
    the columns no job reads (the plan document...) raise instead of loading."""
    return session.scalars(_ROW, {"rollout_id": rollout_id}).first()


def lock_rollout_row(*, session: Session, rollout_id: int) -> Rollout | None:
    """`job_rollout_row`, fresh, for a change that decides from the rollout's columns: on
    Postgres `SELECT ... FOR UPDATE` of that one row (changes to the rollout wait their turn,
    as with `lock_rollout`), without loading its plan."""
    locked = _ROW_LOCKED_PG if session.get_bind().dialect.name == "postgresql" else _ROW_LOCKED
    return session.scalars(locked, {"rollout_id": rollout_id}).first()


def step_at(*, session: Session, rollout_id: int, phase_index: int, step_index: int) -> Step | None:
    """One step of a rollout's plan by its place (positions are the indices), without the rest:
    what a due job needs of the current step (soak, planned end, title), as a detached `Step`
    built from those columns alone."""
    params = {"rollout_id": rollout_id, "phase_index": phase_index, "step_index": step_index}
    found = session.execute(_STEP, params).first()
    if found is None:
        return None
    return Step(**found._mapping)


def key_queued(*, session: Session, dedupe_key: str) -> bool:
    """`outbox_key_exists`, as a prepared statement."""
    return session.execute(_KEY_QUEUED, {"key": dedupe_key}).first() is not None


def due_at_of(*, session: Session, rollout_id: int, kind: str) -> datetime | None:
    """When a rollout's row of `kind` is due (its lease, while a run holds it); None: no row."""
    return session.execute(_DUE_AT, {"rollout_id": rollout_id, "kind": kind}).scalar()


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
    return session.execute(stmt, {"now": now, "kinds": sorted(kinds), "limit": limit}).all()


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
    conn = session.connection()
    if next_at is not None:
        conn.execute(_MOVE, {**mine, "next_at": next_at, "next_data": next_data})
    elif not cast("CursorResult[Any]", conn.execute(_DROP, mine)).rowcount:
        conn.execute(_STAMP, mine)  # re-planned meanwhile: the row stays, stamped


def put_due_row(
    *, session: Session, rollout_id: int, kind: str, due_at: datetime, data: dict[str, Any]
) -> None:
    """Sets a rollout's row of `kind` (one per rollout and kind) to `due_at` and `data`, making
    it if there is none: one INSERT ... ON CONFLICT DO UPDATE."""
    build = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = build(_JOBS).values(rollout_id=rollout_id, kind=kind, due_at=due_at, data=data)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["rollout_id", "kind"], set_={"due_at": due_at, "data": data}
        )
    )
