"""Auto-advance, allowed hours and freeze windows: the settings people change, the question
"may this advance happen now" asked of `bot.domain.windows.decide` for every advance, and the
due-work tick's automatic advance.

- `/rollout auto on|off [feature]` (owner, approvers, admins) switches a rollout's
  auto-advance; every rollout starts with it off.
- `/rollout hours [feature] mon-fri 09:00-17:00 | any` sets a rollout's allowed hours;
  `/rollout hours team …` the workspace's (workspace admins). With hours, public holidays of
  the rollout's country are closed too.
- `/rollout freeze add <first> <last> "name" [--for feature]`, `list`, `remove <id>`:
  workspace freezes (admins), for every rollout of the workspace, or one rollout's (its
  owner, approvers and admins).
- `/rollout checkpoints team phases|steps`: whether every phase boundary waits for a person.

The automatic advance is the person's advance (`bot.usecases.advance.advance_auto`): the same
snapshot, gate, flag write, event and announcement, bound to the step the tick read, so a
person's advance at the same moment and the tick's move the rollout once.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, object_session

from bot.domain import flagging as flag_rules
from bot.domain import rollouts, windows
from bot.domain.calendar import earliest_time
from bot.domain.schedule import Kind
from bot.errors import InvalidTransition, NotAllowed, RolloutNotFound, UsageError
from bot.services import Actor, Services
from bot.slackweb.client import is_workspace_admin
from bot.usecases import access, lookup, schedule
from messages.text import escape, slack_time
from storage import queries
from storage.enums import EventKind, RolloutStatus
from storage.models import DueJob, FreezeWindow, Rollout, TeamRules

MAX_FREEZES = 50  # per workspace: enough for a year of holidays, few enough to list
LEASE = timedelta(minutes=5)  # bot.delivery.jobs.LEASE: a row due further out than this waits


# --- reading the rules -------------------------------------------------------------------


def team_rules(session: Session, team_id: str) -> TeamRules | None:
    return session.get(TeamRules, team_id)


def calendar_for(session: Session, rollout: Rollout, now: datetime) -> windows.Calendar:
    """The rollout's hours (its own, else its team's) and the freezes not yet over."""
    rules = team_rules(session, rollout.team_id)
    raw = rollout.advance_hours if rollout.advance_hours is not None else (rules and rules.advance_hours)
    hours = windows.Hours.from_dict(raw) if raw else None
    since = (now - timedelta(days=2)).date().isoformat()  # a day's margin for any time zone
    stmt = select(FreezeWindow).where(
        FreezeWindow.team_id == rollout.team_id,
        FreezeWindow.last_day >= since,
        (FreezeWindow.rollout_id.is_(None)) | (FreezeWindow.rollout_id == rollout.id),
    )
    freezes = tuple(
        windows.Freeze(f.name, date.fromisoformat(f.first_day), date.fromisoformat(f.last_day))
        for f in session.scalars(stmt.order_by(FreezeWindow.first_day, FreezeWindow.id))
    )
    return windows.Calendar(rollout.timezone, rollout.country, hours, freezes)


def ask(session: Session, rollout: Rollout, who: windows.Who, now: datetime) -> windows.Ask:
    """Everything `windows.decide` needs about this rollout, but the gate."""
    nxt = rollouts.next_position(rollout)
    checkpoint = ""
    if who is windows.Who.AUTO:
        rules = team_rules(session, rollout.team_id)
        target = (
            rollouts.display_title(rollout.phases[nxt.phase_index].steps[nxt.step_index]) if nxt else "done"
        )
        mode = (
            windows.advance_mode(rollout.plan_doc or {}, nxt.phase_index, nxt.step_index)
            if nxt
            else windows.MANUAL
        )
        checkpoint = windows.checkpoint(
            target=target,
            mode=mode,
            completes=nxt is None,
            leaves_phase=rollouts.leaves_phase(rollout),
            phase_stops=bool(rules and rules.phase_checkpoints),
        )
    step = rollout.current_step
    soak_until = earliest_time(
        rollout.step_started_at, step.min_business_days, tz=rollout.timezone, country=rollout.country
    )
    return windows.Ask(
        who=who,
        now=now,
        calendar=calendar_for(session, rollout, now),
        active=rollout.status is RolloutStatus.ACTIVE,
        auto_on=rollout.auto_advance,
        checkpoint=checkpoint,
        drift=flag_rules.drift(rollout) is not None,
        soak_until=soak_until,
    )


def decide(session: Session, rollout: Rollout, who: windows.Who, now: datetime) -> windows.Decision:
    return windows.decide(ask(session, rollout, who, now))


def describe(session: Session, rollout: Rollout, now: datetime) -> str:
    """Where auto-advance stands, as mrkdwn for the answer to `/rollout auto on`: "auto: next
    check at <each reader's own time>", "waiting: freeze “x” until …"; "" when it is off.
    People's words (a freeze's name) are escaped here."""
    if not rollout.auto_advance or rollout.status is not RolloutStatus.ACTIVE:
        return ""
    decision = decide(session, rollout, windows.Who.AUTO, now)
    why = escape(decision.why)
    if decision.answer is windows.Answer.STOP:
        return f"auto: stopped — {why}"
    if decision.answer is windows.Answer.WAIT and decision.until is not None:
        if decision.freeze is not None or "allowed" in decision.why or "holiday" in decision.why:
            return f"waiting: {why}"
        return f"auto: next check at {slack_time(decision.until, rollout.timezone)} ({why})"
    return "auto: next check now"


# --- changing the rules ------------------------------------------------------------------


def _locked(session: Session, rollout_id: int) -> Rollout:
    rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
    if rollout is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    return rollout


def set_auto(svc: Services, actor: Actor, rollout_id: int, on: bool) -> Rollout:
    """`/rollout auto on|off`: the owner, approvers and admins."""
    access.check_allowed(svc, actor, lookup.load_for(svc, actor, rollout_id), "change auto-advance of")
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = _locked(session, rollout_id)
        if not rollout.status.is_open:
            raise InvalidTransition(
                "{feature} is finished; it does not advance any more", feature=rollout.feature
            )
        if rollout.auto_advance != on:
            rollout.auto_advance = on
            rollout.touch(now)
            session.add(rollouts.event(rollout, EventKind.AUTO_CHANGED, actor.user_id, now, auto=on))
            schedule.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
    return rollout


def set_rollout_hours(svc: Services, actor: Actor, rollout_id: int, hours: windows.Hours | None) -> Rollout:
    """A rollout's own allowed hours; None: its team's again."""
    access.check_allowed(svc, actor, lookup.load_for(svc, actor, rollout_id), "change the hours of")
    now = svc.clock()
    with svc.db.transaction() as session:
        rollout = _locked(session, rollout_id)
        value = hours.to_dict() if hours is not None else None
        if rollout.advance_hours != value:
            rollout.advance_hours = value
            rollout.touch(now)
            session.add(rollouts.event(rollout, EventKind.AUTO_CHANGED, actor.user_id, now, hours=value))
            schedule.reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
            _wake(session, rollout.team_id, now, rollout.id)
    return rollout


def _wake(session: Session, team_id: str, now: datetime, rollout_id: int | None = None) -> None:
    """New hours or freezes: the waiting auto rows look again now, not at the time the old
    rules gave them (a row in a claim keeps its lease: its run finishes first)."""
    ids = select(Rollout.id).where(Rollout.team_id == team_id)
    if rollout_id is not None:
        ids = ids.where(Rollout.id == rollout_id)
    session.execute(
        update(DueJob)
        .where(DueJob.kind == Kind.AUTO, DueJob.rollout_id.in_(ids), DueJob.due_at > now + LEASE)
        .values(due_at=now)
    )


def _check_admin(svc: Services, actor: Actor, what: str) -> None:
    if not is_workspace_admin(svc.client, actor.user_id):
        raise NotAllowed("Only workspace admins can {what}.", what=what)


def _team_rules_for_change(session: Session, actor: Actor, now: datetime) -> TeamRules:
    rules = team_rules(session, actor.team_id)
    if rules is None:
        rules = TeamRules(team_id=actor.team_id, phase_checkpoints=False)
        session.add(rules)
    rules.updated_by, rules.updated_at = actor.user_id, now
    return rules


def set_team_hours(svc: Services, actor: Actor, hours: windows.Hours | None) -> None:
    _check_admin(svc, actor, "change the workspace's allowed hours")
    now = svc.clock()
    with svc.db.transaction() as session:
        rules = _team_rules_for_change(session, actor, now)
        rules.advance_hours = hours.to_dict() if hours is not None else None
        _wake(session, actor.team_id, now)


def set_phase_checkpoints(svc: Services, actor: Actor, on: bool) -> None:
    _check_admin(svc, actor, "change the workspace's checkpoints")
    now = svc.clock()
    with svc.db.transaction() as session:
        _team_rules_for_change(session, actor, now).phase_checkpoints = on
        _wake(session, actor.team_id, now)


def add_freeze(svc: Services, actor: Actor, freeze: windows.Freeze, rollout_id: int | None = None) -> int:
    """No advance, by hand or automatic, from its first to its last day: in the whole
    workspace (admins), or of one rollout (`rollout_id`: its owner, approvers and admins)."""
    if rollout_id is None:
        _check_admin(svc, actor, "add a freeze")
    else:
        access.check_allowed(svc, actor, lookup.load_for(svc, actor, rollout_id), "add a freeze to")
    with svc.db.transaction() as session:
        count = len(
            session.scalars(select(FreezeWindow.id).where(FreezeWindow.team_id == actor.team_id)).all()
        )
        if count >= MAX_FREEZES:
            raise UsageError(f"the workspace has {count} freezes; remove old ones first", "freeze")
        row = FreezeWindow(
            team_id=actor.team_id,
            rollout_id=rollout_id,
            name=freeze.name,
            first_day=freeze.first.isoformat(),
            last_day=freeze.last.isoformat(),
            created_by=actor.user_id,
            created_at=svc.clock(),
        )
        session.add(row)
        session.flush()
        return row.id


def list_freezes(svc: Services, actor: Actor) -> list[tuple[int, windows.Freeze, str]]:
    """The workspace's freezes: (id, freeze, the feature it holds; "" for the whole workspace)."""
    with svc.db.reading() as session:
        rows = session.execute(
            select(FreezeWindow, Rollout.feature)
            .outerjoin(Rollout, Rollout.id == FreezeWindow.rollout_id)
            .where(FreezeWindow.team_id == actor.team_id)
            .order_by(FreezeWindow.first_day, FreezeWindow.id)
        ).all()
        return [
            (
                r.id,
                windows.Freeze(r.name, date.fromisoformat(r.first_day), date.fromisoformat(r.last_day)),
                feature or "",
            )
            for r, feature in rows
        ]


def remove_freeze(svc: Services, actor: Actor, freeze_id: int) -> None:
    """A workspace freeze goes by an admin; a rollout's by its owner, approvers or an admin."""
    with svc.db.reading() as session:
        found = session.execute(
            select(FreezeWindow.rollout_id).where(
                FreezeWindow.id == freeze_id, FreezeWindow.team_id == actor.team_id
            )
        ).first()
    if found is None:
        raise UsageError(f"there is no freeze {freeze_id}; `/rollout freeze list` shows them", "freeze")
    if found.rollout_id is None:
        _check_admin(svc, actor, "remove a freeze")
    else:
        access.check_allowed(svc, actor, lookup.load_for(svc, actor, found.rollout_id), "remove a freeze of")
    with svc.db.transaction() as session:
        session.execute(
            delete(FreezeWindow).where(FreezeWindow.id == freeze_id, FreezeWindow.team_id == actor.team_id)
        )
        _wake(session, actor.team_id, svc.clock())


def view_fields(rollout: Rollout) -> dict[str, Any]:
    """What the read model shows of auto-advance: on, and the tick's next look and why it
    waits (its `auto` row), or that a look is running. Read in the session the rollout was
    loaded in, if it is open."""
    if not rollout.auto_advance:
        return {}
    session = object_session(rollout)
    found = (
        session.execute(
            select(DueJob.due_at, DueJob.data).where(
                DueJob.rollout_id == rollout.id, DueJob.kind == Kind.AUTO
            )
        ).first()
        if session is not None
        else None
    )
    return auto_fields(None if found is None else (found.due_at, found.data))


def auto_fields(found: tuple[datetime, dict[str, Any] | None] | None) -> dict[str, Any]:
    """The read model's auto-advance fields of a rollout whose auto-advance is on, from its
    `auto` row's (due_at, data), None when it has none."""
    if found is None:
        return {"auto_on": True}
    due_at, data = found[0], found[1] or {}
    planned = data.get("next") or data.get("at")
    # A claim moves due_at a lease past the planned look (bot.delivery.autopilot): a check is
    # running (or owed, after a crash), and the lease is no time anyone should read.
    checking = isinstance(planned, str) and due_at > datetime.fromisoformat(planned)
    return {
        "auto_on": True,
        "auto_due": due_at,
        "auto_why": str(data.get("why", "")),
        "auto_checking": checking,
    }


def reload(session: Session, rollout_id: int) -> Rollout:
    rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
    if rollout is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    return rollout
