"""Tables. Rules that belong to one row live here as small methods; everything else is in bot/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The column types, named here too: the migrations spell them `storage.models.UTCDateTime`.
from storage.column_types import UTCDateTime as UTCDateTime
from storage.column_types import str_enum
from storage.enums import OPEN_WHERE, EventKind, ItemKind, OutboxState, RolloutStatus, SnapshotKind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        str: String(255),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        RolloutStatus: str_enum(RolloutStatus),
        ItemKind: str_enum(ItemKind),
        EventKind: str_enum(EventKind),
        OutboxState: str_enum(OutboxState),
        SnapshotKind: str_enum(SnapshotKind),
    }


def utcnow() -> datetime:
    return datetime.now(UTC)


class Rollout(Base):
    """One feature going from 0 to 100 %.

    Rules:
    - a feature name is unique among a workspace's open (active or paused) rollouts;
    - the plan is copied into phases, steps and items when the rollout starts, so editing a
      template never changes a running rollout;
    - `revision` goes up with every change, so a re-rendered status message can tell it is stale.
    """

    __tablename__ = "rollout"
    __table_args__ = (
        Index(
            "uq_rollout_open_feature",
            "team_id",
            "feature_key",
            unique=True,
            sqlite_where=text(OPEN_WHERE),
            postgresql_where=text(OPEN_WHERE),
        ),
        Index("ix_rollout_channel", "team_id", "channel_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    feature: Mapped[str] = mapped_column(String(80))
    feature_key: Mapped[str] = mapped_column(String(320))  # casefolding can lengthen a name ("ß" -> "ss")
    template: Mapped[str] = mapped_column(String(64))
    plan_title: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(32))
    flag_key: Mapped[str | None] = mapped_column(String(120))
    service: Mapped[str | None] = mapped_column(String(120))
    stakeholder_channels: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[RolloutStatus] = mapped_column(default=RolloutStatus.ACTIVE)
    phase_index: Mapped[int] = mapped_column(default=0)
    step_index: Mapped[int] = mapped_column(default=0)
    step_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(8))
    plan_doc: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the plan as copied at start
    metrics: Mapped[list[Any]] = mapped_column(default=list)
    triggers: Mapped[list[Any]] = mapped_column(default=list)
    manual_triggers: Mapped[list[Any]] = mapped_column(default=list)
    watch_pauses: Mapped[bool] = mapped_column(default=True)
    # Who may tick exit criteria and send stakeholder updates: "steerers" or "anyone"
    # (bot/domain/rights.py).
    exit_ticks_by: Mapped[str] = mapped_column(String(16), default="anyone", server_default="anyone")
    updates_by: Mapped[str] = mapped_column(String(16), default="anyone", server_default="anyone")
    digest: Mapped[str] = mapped_column(String(16), default="daily")
    digest_time: Mapped[str] = mapped_column(String(5), default="09:00")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    stopped_by: Mapped[str | None] = mapped_column(String(32))  # last pause/rollback; None: the bot
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(Text)
    # The feature flag as the bot last saw it (written by every flag write and the watch), so
    # the status message shows it without calling the flag service while rendering.
    # `flag_seen_at` None: no flag service manages this rollout's flag.
    flag_strategy_id: Mapped[str | None] = mapped_column(String(120))  # the bot's own strategy
    flag_percent: Mapped[float | None]  # what the flag exposes: 0 when it is off
    flag_enabled: Mapped[bool | None]
    flag_seen_at: Mapped[datetime | None]
    flag_problem: Mapped[str | None] = mapped_column(Text)  # why the last read or write failed
    flag_adopted_percent: Mapped[float | None]  # a drift people accepted: not warned again
    flag_pending: Mapped[float | None]  # a write still owed to the flag (retried by flag_sync)
    # Auto-advance (bot/domain/windows.py): off for every rollout until someone turns it on;
    # `advance_hours` the rollout's own allowed hours (None: its team's, if any).
    auto_advance: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    advance_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    phases: Mapped[list[Phase]] = relationship(
        back_populates="rollout", order_by="Phase.position", cascade="all, delete-orphan"
    )
    # In the order they were added: without an order, SQLite read them in its unique index's
    # order (by user id) and Postgres in the table's, so one rollout's mentions differed by backend.
    approvers: Mapped[list[Approver]] = relationship(
        back_populates="rollout", order_by="Approver.id", cascade="all, delete-orphan"
    )

    @property
    def current_phase(self) -> Phase:
        return self.phases[self.phase_index]

    @property
    def current_step(self) -> Step:
        return self.current_phase.steps[self.step_index]

    def touch(self, now: datetime) -> None:
        """Marks a change: a new revision, so stale renders of the status message are redone."""
        self.revision += 1
        self.updated_at = now


class Phase(Base):
    __tablename__ = "phase"
    __table_args__ = (UniqueConstraint("rollout_id", "position", name="uq_phase_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    duration: Mapped[str] = mapped_column(String(120), default="")
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    left_by_override: Mapped[bool] = mapped_column(default=False, server_default=text("false"))

    rollout: Mapped[Rollout] = relationship(back_populates="phases")
    steps: Mapped[list[Step]] = relationship(
        back_populates="phase", order_by="Step.position", cascade="all, delete-orphan"
    )
    items: Mapped[list[ChecklistItem]] = relationship(
        back_populates="phase", order_by="ChecklistItem.position", cascade="all, delete-orphan"
    )


class Step(Base):
    __tablename__ = "step"
    __table_args__ = (UniqueConstraint("phase_id", "position", name="uq_step_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    position: Mapped[int]
    percent: Mapped[float]
    desired_users: Mapped[int | None]
    min_business_days: Mapped[float] = mapped_column(default=0)
    label: Mapped[str] = mapped_column(String(32), default="")
    planned_end: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    left_by_override: Mapped[bool] = mapped_column(default=False, server_default=text("false"))

    phase: Mapped[Phase] = relationship(back_populates="steps")


class ChecklistItem(Base):
    __tablename__ = "checklist_item"
    __table_args__ = (UniqueConstraint("phase_id", "position", name="uq_item_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phase_id: Mapped[int] = mapped_column(ForeignKey("phase.id", ondelete="CASCADE"))
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    position: Mapped[int]
    kind: Mapped[ItemKind]
    text: Mapped[str] = mapped_column(Text)
    checked_by: Mapped[str | None] = mapped_column(String(32))
    checked_at: Mapped[datetime | None]
    unchecked_by: Mapped[str | None] = mapped_column(String(32))
    unchecked_at: Mapped[datetime | None]

    phase: Mapped[Phase] = relationship(back_populates="items")
    rollout: Mapped[Rollout] = relationship()

    @property
    def checked(self) -> bool:
        return self.checked_at is not None


class Approver(Base):
    __tablename__ = "approver"
    __table_args__ = (UniqueConstraint("rollout_id", "user_id", name="uq_approver_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(32))

    rollout: Mapped[Rollout] = relationship(back_populates="approvers")


class Event(Base):
    """The audit timeline: every state change, who, when, what and why."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_rollout_at", "rollout_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[EventKind]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SlackMessage(Base):
    """Where a rollout's own messages live in Slack (the status message), to edit them in place."""

    __tablename__ = "slack_message"
    __table_args__ = (UniqueConstraint("rollout_id", "purpose", name="uq_slack_message_purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    rendered_revision: Mapped[int] = mapped_column(default=0)
    # Slack's link to the message, which never changes: kept the first time it is asked for.
    permalink: Mapped[str | None] = mapped_column(Text)


class MetricSnapshot(Base):
    __tablename__ = "metric_snapshot"
    __table_args__ = (Index("ix_snapshot_rollout_at", "rollout_id", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    kind: Mapped[SnapshotKind]
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    phase_index: Mapped[int]
    step_index: Mapped[int]
    readings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verdict: Mapped[dict[str, Any]] = mapped_column(default=dict)
    passed: Mapped[bool | None]


class OutboxMessage(Base):
    """A Slack message to deliver, written in the transaction of the change it announces.

    `dedupe_key` is unique: (rollout, milestone, channel) is announced once, however often the
    change is retried or replayed.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_queue", "rollout_id", "channel_id", "state", "id"),  # see migration 0009
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    channel_id: Mapped[str] = mapped_column(String(32))
    in_status_thread: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[OutboxState] = mapped_column(default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class DueJob(Base):
    """Work due at a time (digest, reminders, watch), kept in the database so restarts lose
    nothing and replicas never both run it: a job is claimed by moving `due_at` under a lock."""

    __tablename__ = "due_job"
    __table_args__ = (
        UniqueConstraint("rollout_id", "kind", name="uq_due_job_kind"),
        Index("ix_due_job_due_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TeamRules(Base):
    """A workspace's advance rules: its allowed hours (None: any time) and whether every phase
    boundary waits for a person."""

    __tablename__ = "team_rules"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    advance_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    phase_checkpoints: Mapped[bool] = mapped_column(default=False)
    updated_by: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FreezeWindow(Base):
    """No advance from `first_day` to `last_day` (ISO dates, inclusive, in each rollout's zone):
    for the whole workspace, or for one rollout when `rollout_id` is set."""

    __tablename__ = "freeze_window"
    __table_args__ = (Index("ix_freeze_window_team", "team_id", "last_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32))
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    first_day: Mapped[str] = mapped_column(String(10))
    last_day: Mapped[str] = mapped_column(String(10))
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlanTemplate(Base):
    """A plan imported from a Markdown document. `team_id` "" is for every workspace (imported
    from the command line); otherwise the workspace that imported it in Slack."""

    __tablename__ = "plan_template"
    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_plan_template_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    name: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingWork(Base):
    """The work behind an ack, queued by the web process for the work process (bot/workqueue.py):
    the Slack request as it arrived and the name of the listener function to run for it.

    Written once, by the web process's queue write (one INSERT, the only statement an ack
    waits for), and deleted when the work is done; never updated. Whether a work process
    holds it is its `WorkLease` row, a row of its own: on SQLite an UPDATE rewrites the whole
    record, and a click's is a 24 KB body in overflow pages, rewritten by every claim with the
    queue's write lock held.

    Ids are never handed out twice (AUTOINCREMENT on SQLite, a sequence on Postgres): a row
    deleted without its lease (by hand, with foreign keys off) must not pass that lease, or
    another process's memory of the id, to a new request."""

    __tablename__ = "pending_work"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    function_name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The interaction's own id and the listener (see SeenRequest), None when Slack gave none.
    request_key: Mapped[str | None] = mapped_column(String(255))
    # The lease's columns before `work_lease` (migration 0010): read and written by no code of
    # this release, kept so that a replica still running the release before (a rolling deploy on
    # Postgres) can queue and claim until it stops (the two releases' claims do not see each
    # other's leases: a row may run twice meanwhile, and `handled_request` keeps its change
    # once). A later migration drops them.
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    claimed_until: Mapped[datetime | None] = mapped_column(index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class WorkLease(Base):
    """A `pending_work` row's lease: which work process holds it (`claimed_by`) until when
    (`claimed_until`), and how often it was claimed (`attempts`).

    The rules: no lease row means never claimed; a lease whose `claimed_until` has passed may
    be claimed by any work process (its holder died, or released it to be tried later), which
    sets all three. Written only by the work processes (claim, renew, release), keyed by the
    work row's id, and deleted with it (ON DELETE CASCADE, in the statement that deletes the
    work row): SQLite hands a deleted row's id out again, and a lease left behind would be a
    new request's. A migration that rebuilds `pending_work` on SQLite (batch mode: copy, drop,
    rename) deletes every lease with the dropped table: it saves them first, or makes this table
    after (as 0010 does)."""

    __tablename__ = "work_lease"

    work_id: Mapped[int] = mapped_column(
        ForeignKey("pending_work.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    claimed_until: Mapped[datetime]
    claimed_by: Mapped[str] = mapped_column(String(100))
    attempts: Mapped[int]


class SeenRequest(Base):
    """Each Slack interaction whose work was queued, by its own id (event_id, trigger_id, a
    click's action_ts and user), kept a day after it arrived: a retry or a second delivery of
    the same body finds its key here and is acked without queuing the work again."""

    __tablename__ = "seen_request"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # For a slash command: who typed what where; matches a retry whose ids were minted again.
    fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class HandledRequest(Base):
    """The queued work whose change is committed: written in the same transaction as the
    change's Event (storage.db), so running the same work again commits nothing twice."""

    __tablename__ = "handled_request"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WorkerHeartbeat(Base):
    """Each running work process, and when its loop last went round (every few seconds while it
    runs, removed when it stops): readiness (`/readyz`) asks whether any beat lately."""

    __tablename__ = "worker_heartbeat"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
