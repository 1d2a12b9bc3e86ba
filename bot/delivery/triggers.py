"""The rollback-trigger watch: reads an active rollout's triggers against the baseline the gate
uses, and when one fires records it, pauses or rolls back (as the rollout says) and alerts.

One alert per check, whatever number of triggers fired: posted in the status thread with
`reply_broadcast` (so the channel sees it too, as one message), the owner and approvers
mentioned, with Resume / Roll back / "Open in Datadog" buttons. The stakeholders hear of the
pause or rollback with its cause; the thread does not get a second message for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.domain import flagging as flag_rules
from bot.domain import rollouts
from bot.domain.gates import MetricVerdict, Observation, fired_triggers, incomputable_triggers
from bot.domain.plans.model import Metric
from bot.domain.wording import describe_trigger
from bot.metrics.links import explorer_url
from bot.observe import telemetry
from bot.services import Services
from bot.usecases import announcing, controls, measure, view_reads, views
from bot.usecases.announcing import announce
from bot.usecases.schedule import reschedule
from messages import digest as texts
from storage import job_queries, queries
from storage.enums import EventKind, OutboxState, RolloutStatus, SnapshotKind
from storage.models import OutboxMessage, Rollout


def _queued(session: Session, rollout: Rollout, milestone: str) -> bool:
    key = announcing.dedupe_key(rollout.id, milestone, rollout.channel_id)
    return queries.outbox_key_exists(session=session, dedupe_key=key)


def watch_triggers(svc: Services, rollout: Rollout, stored: dict[str, Observation] | None = None) -> bool:
    """`stored`: the rollout's stored baseline (`measure.stored_baselines`), when the caller
    read it with the rollout's row; else it is read here."""
    now = svc.clock()
    metrics, triggers = measure.metrics_of(rollout)
    plan = measure.trigger_plan(
        metrics, triggers, feature=rollout.feature, flag=rollout.flag_key, service=rollout.service
    )
    readings = measure.take(svc.metrics, plan, now)
    keyed = {t.key: t for t in triggers}
    current = measure.by_metric(plan, readings, keyed)
    if stored is None:
        with svc.db.reading() as session:
            stored = measure.stored_baselines(session, rollout.id)
    baselines = {**stored, **measure.controls(plan, readings, keyed)}
    fired = fired_triggers(triggers, current, baselines)
    where = (rollout.phase_index, rollout.step_index)
    by_key = {t.key: t for t in triggers}
    # Incomputable is not fired: a change that cannot be computed (a relative trigger over a
    # baseline of 0) says nothing about harm, so it never pauses or rolls back; the owner is
    # told once per step, and the gate keeps refusing to advance on it.
    undecided = incomputable_triggers(triggers, current, baselines)
    if undecided:
        _warn_undecided(svc, rollout.id, where, by_key, undecided, now)
    return bool(fired) and _on_fired(svc, rollout.id, where, by_key, fired, current, now)


def _warn_undecided(
    svc: Services,
    rollout_id: int,
    where: tuple[int, int],
    triggers: dict[str, Metric],
    undecided: tuple[MetricVerdict, ...],
    now: datetime,
) -> None:
    """Tells the owner, in the status thread, which triggers cannot be judged; the dedupe key
    (trigger and step) makes it once, however often the watch runs."""
    with svc.db.transaction() as session:
        rollout = job_queries.lock_rollout_row(session=session, rollout_id=rollout_id)
        if rollout is None or rollout.status is not RolloutStatus.ACTIVE or where != _where(rollout):
            return
        view = view_reads.load_rollout(session=session, rollout_id=rollout_id)
        if view is None:
            return
        for v in undecided:
            rule = describe_trigger(triggers[v.key])
            message = texts.trigger_undecided(view, trigger=v.name, reason=v.reason, rule=rule)
            announcing.queue(
                session,
                rollout,
                announcing.Announcement(f"undecided:{v.key}:{where[0]}:{where[1]}", message),
                now,
            )


def _where(rollout: Rollout) -> tuple[int, int]:
    return (rollout.phase_index, rollout.step_index)


def _on_fired(
    svc: Services,
    rollout_id: int,
    where: tuple[int, int],
    triggers: dict[str, Metric],
    fired: tuple[MetricVerdict, ...],
    current: dict[str, Observation],
    now: datetime,
) -> bool:
    """Records, pauses or rolls back (as the rollout says) and alerts, in one transaction. A
    trigger alerts once per step: after a person resumes, the same trigger at the same step
    does not pause it again. A plan with `on_trigger = "rollback"` rolls the rollout back, the
    flag first. Returns whether it paused or rolled back."""
    with svc.db.transaction() as session:
        rollout = queries.lock_rollout(session=session, rollout_id=rollout_id)
        if (
            rollout is None
            or rollout.status is not RolloutStatus.ACTIVE
            or where != (rollout.phase_index, rollout.step_index)
        ):
            return False
        suffix = f"{rollout.phase_index}:{rollout.step_index}"
        new = [v for v in fired if not _queued(session, rollout, f"trigger:{v.key}:{suffix}")]
        if not new:
            return False
        snap = measure.store_snapshot(session, rollout, SnapshotKind.WATCH, current, None, now)
        snap.passed = False  # what the digest shows as the last verdict at this step
        snap.verdict = {
            "passed": False,
            "blockers": [f"Rollback trigger {v.name} fired: {v.reason}." for v in new],
        }
        step = rollouts.display_title(rollout.current_step)
        rolls_back = flag_rules.on_trigger(rollout) == flag_rules.ROLLBACK
        action = "rollback" if rolls_back else ("pause" if rollout.watch_pauses else "alert")
        telemetry.TRIGGERS_FIRED.labels("watch", action).inc(len(new))
        for v in new:
            rule = describe_trigger(triggers[v.key])
            data = {"trigger": v.key, "name": v.name, "value": v.value, "baseline": v.baseline, "rule": rule}
            data |= {"reason": v.reason, "step": step, "snapshot_id": snap.id}
            session.add(rollouts.event(rollout, EventKind.TRIGGER_FIRED, None, now, **data))
        reason = "rollback trigger fired: " + "; ".join(f"{v.name} ({v.reason})" for v in new)
        # The state changes first, so the alert shows the rollout as it now is.
        if rolls_back:
            controls.roll_back_locked(svc, session, rollout, None, reason, now, in_thread=False)
        elif rollout.watch_pauses:
            rollouts.pause(rollout, now, reason=reason)
            event = rollouts.event(rollout, EventKind.PAUSED, None, now, step=step, reason=reason)
            session.add(event)
            session.flush()
            # The alert tells the thread and the channel; the stakeholders get the pause, with its cause.
            announce(
                session,
                rollout,
                "paused",
                f"paused:{event.id}",
                now,
                actor=None,
                reason=reason,
                in_thread=False,
            )
        alert = texts.trigger_alert(
            views.rollout_view(rollout),
            [{"trigger": v.name, "reason": v.reason, "rule": describe_trigger(triggers[v.key])} for v in new],
            paused=rollout.watch_pauses and not rolls_back,
            rolled_back=rolls_back,
            links=_datadog_links(svc, rollout, [triggers[v.key] for v in new]),
        )
        # One alert per check, keyed by its first trigger; the others' keys are marked queued
        # too, so a trigger at a step alerts once whatever it fired with.
        first, *others = new
        announcing.queue(
            session,
            rollout,
            announcing.Announcement(f"trigger:{first.key}:{suffix}", alert, broadcast=True),
            now,
        )
        for v in others:
            _mark_alerted(session, rollout, f"trigger:{v.key}:{suffix}", now)
        if rolls_back:
            return True
        reschedule(session, rollout, now, watch_minutes=svc.settings.watch_minutes)
        return rollout.watch_pauses


def _datadog_links(svc: Services, rollout: Rollout, fired: list[Metric]) -> list[tuple[str, str]]:
    """(name, explorer URL) of each fired trigger's query, as the watch read it."""
    out = []
    for metric in fired:
        # A formula metric has no one query: its first named query (the numerator) is where to look.
        raw = metric.query or (metric.queries[0][1] if metric.queries else "")
        query = measure.fill(raw, feature=rollout.feature, flag=rollout.flag_key, service=rollout.service)
        url = explorer_url(svc.settings.dd_site, query)
        if url:
            out.append((metric.name, url))
    return out


def _mark_alerted(session: Session, rollout: Rollout, milestone: str, now: datetime) -> None:
    """Records that a trigger's alert went out inside another trigger's message: an outbox row
    that is already sent, so its key answers "queued" and nothing is posted for it."""
    key = announcing.dedupe_key(rollout.id, milestone, rollout.channel_id)
    if queries.outbox_key_exists(session=session, dedupe_key=key):
        return
    session.add(
        OutboxMessage(
            rollout_id=rollout.id,
            dedupe_key=key,
            channel_id=rollout.channel_id,
            in_status_thread=True,
            payload={"text": "", "blocks": []},
            state=OutboxState.SENT,
            next_attempt_at=now,
            created_at=now,
            sent_at=now,
        )
    )
