"""The view of one rollout read in a fixed number of plain Core statements, however many
phases and items it has: the rollout with its auto-advance row (and, for `load_with_message`, its
status message's row), then its phases with their steps, their checklist items and its approvers
(one UNION ALL). What comes back is exactly what `views.rollout_view` makes of the ORM rows
(tests/usecases/test_core_views.py compares the two), but for the items `load_rollout(items=False)`
and `load_with_message` leave out. They run on the DBAPI connection of the caller's transaction
(`storage.dbapi_statements`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    and_,
    bindparam,
    literal_column,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from bot.domain import flagging, rollouts
from bot.domain.schedule import Kind
from bot.errors import RolloutNotFound
from bot.services import Services
from bot.usecases import autopilot
from messages.views import ItemView, PhaseView, RolloutView, StepView
from storage import queries
from storage.dbapi_statements import Fixed
from storage.models import Approver, ChecklistItem, DueJob, Phase, Rollout, SlackMessage, Step

# Plain Core statements of columns, built once here so SQLAlchemy's compiled cache finds them
# every time: building ORM instances (identity map, loader strategies, cache keys of the
# eager-load options) cost most of a status message when the loader was an ORM query. What
# comes back is exactly what `rollout_view` makes of the ORM rows (tests/usecases/
# test_core_views.py compares the two). Two statements whatever the size of the plan: the
# rollout with its `auto` row (at most one: uq_due_job_kind) and, for `load_with_message`, its
# status message's row (at most one: uq_slack_message_purpose); its phases with their steps,
# their items and its approvers (`_PLAN`).
_rollout = Rollout.__table__.c
_phase = Phase.__table__.c
_step = Step.__table__.c
_item = ChecklistItem.__table__.c
_approver = Approver.__table__.c
_due = DueJob.__table__.c
_message = SlackMessage.__table__.c
_ID: BindParameter[int] = bindparam("rollout_id")
_TEAM: BindParameter[str] = bindparam("team_id")

_WITH_AUTO = Rollout.__table__.outerjoin(
    DueJob.__table__, and_(_due.rollout_id == _rollout.id, _due.kind == Kind.AUTO.value)
)
_ROLLOUT = (
    select(
        _rollout.id,
        _rollout.feature,
        _rollout.template,
        _rollout.plan_title,
        _rollout.owner_id,
        _rollout.channel_id,
        _rollout.status,
        _rollout.revision,
        _rollout.timezone,
        _rollout.country,
        _rollout.flag_key,
        _rollout.service,
        _rollout.stakeholder_channels,
        _rollout.phase_index,
        _rollout.step_index,
        _rollout.step_started_at,
        _rollout.updated_at,
        _rollout.digest,
        _rollout.digest_time,
        _rollout.flag_percent,
        _rollout.flag_seen_at,
        _rollout.flag_adopted_percent,
        _rollout.flag_problem,
        _rollout.flag_pending,
        _rollout.stopped_by,
        _rollout.stopped_at,
        _rollout.stop_reason,
        _rollout.auto_advance,
        _due.due_at,
        _due.data,
    )
    .select_from(_WITH_AUTO)
    .where(_rollout.id == _ID)
)
_ROLLOUT_OF_TEAM = _ROLLOUT.where(_rollout.team_id == _TEAM)
# The same row with the status message's (None when it is not posted yet): a status and an edit
# need both, and one statement costs less than two.
_WITH_MESSAGE = _ROLLOUT.add_columns(
    _message.id, _message.channel_id, _message.ts, _message.permalink
).select_from(
    _WITH_AUTO.outerjoin(
        SlackMessage.__table__,
        and_(_message.rollout_id == _rollout.id, _message.purpose == queries.STATUS_PURPOSE),
    )
)
_WITH_MESSAGE_OF_TEAM = _WITH_MESSAGE.where(_rollout.team_id == _TEAM)
# The rest of the plan in one statement (UNION ALL), each part in columns of its own and NULL
# in the others', with a part number first: 0, a row per step of each phase (outer: a phase
# without steps still shows, as the ORM's joined load had it); 1, its phases' items (through the
# phase, as the relationship reaches them, not by the item's own rollout_id); 2, its approvers,
# whose user id is in the item's text column, in the order they were added (as
# `Rollout.approvers` has them). The first part's NULLs are typed (`type_coerce`, no SQL cast):
# a compound's result processing is its first SELECT's.
_PLAN_PART, _ITEM_PART, _APPROVER_PART = 0, 1, 2
_STEP_COLUMNS = (_step.position, _step.label, _step.percent, _step.desired_users, _step.completed_at)
_ITEM_COLUMNS = (
    _item.id,
    _item.text,
    _item.kind,
    _item.checked_by,
    _item.checked_at,
    _item.unchecked_by,
    _item.unchecked_at,
)
_PHASE_COLUMNS = (_phase.name, _phase.completed_at, _phase.left_by_override)


def _nulls(columns: Iterable[Any]) -> list[Any]:
    return [type_coerce(null(), c.type) for c in columns]


_PHASE_ROWS = (
    select(
        literal_column(str(_PLAN_PART), Integer),
        _phase.id,
        _phase.position,
        *_STEP_COLUMNS,
        _step.left_by_override,
        *_PHASE_COLUMNS,
        *_nulls(_ITEM_COLUMNS),
    )
    .select_from(Phase.__table__.outerjoin(Step.__table__, _step.phase_id == _phase.id))
    .where(_phase.rollout_id == _ID)
)
_ITEM_ROWS = (
    select(
        literal_column(str(_ITEM_PART), Integer),
        _item.phase_id,
        _item.position,
        *[null()] * (len(_STEP_COLUMNS) + 1 + len(_PHASE_COLUMNS)),
        *_ITEM_COLUMNS,
    )
    .select_from(ChecklistItem.__table__.join(Phase.__table__, _phase.id == _item.phase_id))
    .where(_phase.rollout_id == _ID)
)
_APPROVER_ROWS = select(
    literal_column(str(_APPROVER_PART), Integer),
    null(),
    _approver.id,
    *[null()] * (len(_STEP_COLUMNS) + 1 + len(_PHASE_COLUMNS) + 1),
    _approver.user_id,
    *[null()] * (len(_ITEM_COLUMNS) - 2),
).where(_approver.rollout_id == _ID)
_PLAN_ORDER: tuple[Any, ...] = (literal_column("1"), literal_column("3"), literal_column("4"))
_PLAN = union_all(_PHASE_ROWS, _ITEM_ROWS, _APPROVER_ROWS).order_by(*_PLAN_ORDER)
# Without the items (most of a plan's rows), for a view whose reader never shows a checklist.
_PLAN_NO_ITEMS = union_all(_PHASE_ROWS, _APPROVER_ROWS).order_by(*_PLAN_ORDER)
# Only the current phase's items, all of the checklist a status message shows: the other phases'
# items were most of the rows of a status or an edit (a phase's position is its index).
_PLAN_CURRENT_ITEMS = union_all(
    _PHASE_ROWS, _ITEM_ROWS.where(_phase.position == bindparam("phase_index")), _APPROVER_ROWS
).order_by(*_PLAN_ORDER)
# Run on the DBAPI connection (`storage.dbapi_statements`): SQLAlchemy's execution path cost
# more CPU than these statements (the due-work tick reads a view per reminder).
_F_ROLLOUT, _F_ROLLOUT_OF_TEAM = Fixed(_ROLLOUT), Fixed(_ROLLOUT_OF_TEAM)
_F_WITH_MESSAGE, _F_WITH_MESSAGE_OF_TEAM = Fixed(_WITH_MESSAGE), Fixed(_WITH_MESSAGE_OF_TEAM)
_F_PLAN, _F_PLAN_NO_ITEMS = Fixed(_PLAN), Fixed(_PLAN_NO_ITEMS)
_F_PLAN_CURRENT_ITEMS = Fixed(_PLAN_CURRENT_ITEMS)
# Where the rollout's row has its phase index (the current phase's items are read by it).
_PHASE_INDEX = list(_ROLLOUT.selected_columns.keys()).index("phase_index")


class MessageRef(NamedTuple):
    """The status message's row: enough to edit it and to link to it."""

    id: int
    channel_id: str
    ts: str
    permalink: str | None


def load_rollout(
    *, session: Session | Connection, rollout_id: int, team_id: str | None = None, items: bool = True
) -> RolloutView | None:
    """The view of one rollout (of that workspace, if `team_id` is given), or None; with
    `items=False` its phases have no checklist items (a reminder shows none)."""
    params = {"rollout_id": rollout_id} if team_id is None else {"rollout_id": rollout_id, "team_id": team_id}
    row = (_F_ROLLOUT if team_id is None else _F_ROLLOUT_OF_TEAM).first(session, params)
    return None if row is None else _view(session, rollout_id, row, _F_PLAN if items else _F_PLAN_NO_ITEMS)


def load_with_message(
    *, session: Session | Connection, rollout_id: int, team_id: str | None = None
) -> tuple[RolloutView, MessageRef | None] | None:
    """What the status message shows: `load_rollout`, but only the current phase has its
    checklist items (the message shows no other phase's), and the row of the rollout's status
    message (None: not posted yet), the two in the statements of one."""
    params = {"rollout_id": rollout_id} if team_id is None else {"rollout_id": rollout_id, "team_id": team_id}
    row = (_F_WITH_MESSAGE if team_id is None else _F_WITH_MESSAGE_OF_TEAM).first(session, params)
    if row is None:
        return None
    *head, message_id, channel_id, ts, link = row
    ref = None if message_id is None else MessageRef(message_id, channel_id, ts, link)
    return _view(session, rollout_id, head, _F_PLAN_CURRENT_ITEMS, phase_index=row[_PHASE_INDEX]), ref


def _view(
    session: Session | Connection, rollout_id: int, row: Sequence[Any], parts: Fixed = _F_PLAN, **params: Any
) -> RolloutView:
    items: dict[int, list[ItemView]] = {}
    approvers: list[str] = []
    plan: dict[int, tuple[Any, list[StepView]]] = {}
    for r in parts.all(session, {"rollout_id": rollout_id, **params}):
        if r[0] == _PLAN_PART:  # phase id, position; step position … left by override; phase
            steps = plan.setdefault(r[1], ((r[2], r[9], r[10], r[11]), []))[1]
            if r[3] is not None:
                steps.append(StepView(r[3], rollouts.title_of(r[4], r[5]), r[5], r[6], r[7], r[8]))
        elif r[0] == _ITEM_PART:  # phase id, position; item id, text, kind, who and when
            items.setdefault(r[1], []).append(ItemView(r[12], r[13], r[14].value, *r[15:19]))
        else:
            approvers.append(r[13])
    phases = tuple(
        PhaseView(
            rollout_id, position, name, completed_at, tuple(steps), tuple(items.get(phase_id, ())), skipped
        )
        for phase_id, ((position, name, completed_at, skipped), steps) in plan.items()
    )
    (
        id_, feature, template, plan_title, owner_id, channel_id, status, revision, timezone,
        country, flag_key, service, stakeholders, phase_index, step_index, step_started_at,
        updated_at, digest, digest_time, flag_percent, flag_seen_at, flag_adopted_percent,
        flag_problem, flag_pending, stopped_by, stopped_at, stop_reason, auto_advance, auto_due,
        auto_data,
    ) = row  # fmt: skip
    current_step = phases[phase_index].steps[step_index]
    return RolloutView(
        id=id_,
        feature=feature,
        template=template,
        plan_title=plan_title,
        owner_id=owner_id,
        approvers=tuple(approvers),
        channel_id=channel_id,
        status=status.value,
        is_open=status.is_open,
        revision=revision,
        timezone=timezone,
        country=country,
        flag_key=flag_key,
        service=service,
        stakeholder_channels=tuple(stakeholders),
        phase_index=phase_index,
        step_index=step_index,
        step_started_at=step_started_at,
        updated_at=updated_at,
        digest=digest,
        digest_time=digest_time,
        phases=phases,
        flag_percent=flag_percent if flagging.is_managed(flag_key, flag_seen_at) else None,
        flag_plan_percent=flagging.percent_at(status, current_step.percent),
        flag_adopted_percent=flag_adopted_percent,
        flag_problem=flag_problem,
        flag_pending=flag_pending,
        stopped_by=stopped_by,
        stopped_at=stopped_at,
        stop_reason=stop_reason,
        **_auto(auto_advance, auto_due, auto_data),
    )


def _auto(on: bool, due_at: datetime | None, data: dict[str, Any] | None) -> dict[str, Any]:
    if not on:
        return {}
    return autopilot.auto_fields(None if due_at is None else (due_at, data))


def read_rollout(svc: Services, team_id: str, rollout_id: int) -> RolloutView:
    """The view of a workspace's rollout, in a session of its own; refused if there is none."""
    with svc.db.reading() as session:
        view = load_rollout(session=session, rollout_id=rollout_id, team_id=team_id)
    if view is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    return view
