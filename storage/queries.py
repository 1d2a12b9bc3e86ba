"""Query functions. They take the session as a keyword and never commit: the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import (
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, selectinload

from storage.dbapi_statements import Fixed
from storage.enums import OPEN_STATUSES, OPEN_WHERE, EventKind, SnapshotKind
from storage.models import (
    Approver,
    DueJob,
    Event,
    MetricSnapshot,
    OutboxMessage,
    Phase,
    PlanTemplate,
    Rollout,
    SlackMessage,
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


def lock_rollout(*, session: Session, rollout_id: int) -> Rollout | None:
    """Loads a rollout for change. On Postgres the row lock makes concurrent changes to one
    rollout wait their turn; SQLite write transactions are already serialised (storage.db)."""
    stmt = _with_plan(select(Rollout).where(Rollout.id == rollout_id))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Rollout)
    # populate_existing: a lock is only worth it with the row as it is now, not as cached.
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


class OpenRollout(NamedTuple):
    """The open rollout of a name, as a start that would take the name needs it."""

    id: int
    feature: str
    channel_id: str


def open_by_feature(*, session: Session, team_id: str, feature_key: str) -> OpenRollout | None:
    """The team's open rollout of that name (there is at most one): three columns, with a
    statement built once, as every start asks before it takes a name."""
    params = {"team_id": team_id, "feature_key": feature_key}
    row = _OPEN_BY_FEATURE_RUN.first(session.connection(), params)
    return None if row is None else OpenRollout(row[0], row[1], row[2])


_open = cast("Table", Rollout.__table__).c
# The open statuses in the very words of the unique index on open names (`OPEN_WHERE`,
# `uq_rollout_open_feature`): with a bound `status IN (?, ?)` the database could not see that
# the index applies, and read every rollout of the team, one start after another.
_OPEN_BY_FEATURE = (
    select(_open.id, _open.feature, _open.channel_id)
    .where(
        _open.team_id == bindparam("team_id"),
        _open.feature_key == bindparam("feature_key"),
        text(OPEN_WHERE),
    )
    .limit(1)
)
# Run on the DBAPI connection of the transaction (`storage.dbapi_statements`): SQLAlchemy's
# execution path cost more CPU than SQLite took to answer.
_OPEN_BY_FEATURE_RUN = Fixed(_OPEN_BY_FEATURE)


class Named(NamedTuple):
    """A rollout as a lookup finds it: enough to name it, without loading its plan."""

    id: int
    feature: str


# Lookups run before every command that names a rollout: plain statements of two columns,
# built once, instead of whole ORM rows with the plan's JSON decoded. The open statuses are
# SQL text (`OPEN_WHERE`), not a bound `IN`: an expanding parameter is rendered into the
# statement again at every run, about half of the lookup's own CPU time.
_rollout = cast("Table", Rollout.__table__).c
_IS_OPEN = text(OPEN_WHERE)
_OPEN_FIRST = text(f"({OPEN_WHERE}) DESC")
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
        _IS_OPEN,
    )
    .order_by(_rollout.created_at)
)


def latest_by_feature(*, session: Session | Connection, team_id: str, feature_key: str) -> Named | None:
    """The open rollout of that name, else the most recent finished one."""
    params = {"team_id": team_id, "feature_key": feature_key}
    row = _connection(session).execute(_LATEST_BY_FEATURE, params).first()
    return None if row is None else Named(row[0], row[1])


def open_in_channel(*, session: Session | Connection, team_id: str, channel_id: str) -> list[Named]:
    """The channel's open rollouts, oldest first."""
    params = {"team_id": team_id, "channel_id": channel_id}
    return [Named(i, f) for i, f in _connection(session).execute(_OPEN_IN_CHANNEL, params)]


def _connection(session: Session | Connection) -> Connection:
    # A lookup on a bare connection too: a status reads on one (a Session costs more than it).
    return session if isinstance(session, Connection) else session.connection()


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
