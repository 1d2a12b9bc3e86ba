"""`/rollout timeline`: a page of a rollout's events, newest first. Anyone in the workspace
who may see the rollout may read its timeline; nothing is written."""

from __future__ import annotations

from bot.services import Actor, Services
from bot.usecases.lookup import load_for
from bot.usecases.views import event_views
from messages.views import TimelineView
from storage import queries

PAGE = 50  # events read for one page; Slack's limits may show fewer (messages/timeline.py)


def page(
    svc: Services, actor: Actor, rollout_id: int, *, before: int | None = None, number: int = 1
) -> TimelineView:
    rollout = load_for(svc, actor, rollout_id)
    with svc.db.reading() as session:
        total = queries.count_events(session=session, rollout_id=rollout_id)
        events = queries.events_page(session=session, rollout_id=rollout_id, before_id=before, limit=PAGE + 1)
    return TimelineView(
        rollout_id=rollout.id,
        feature=rollout.feature,
        tz=rollout.timezone,
        events=event_views(events[:PAGE]),
        older=len(events) > PAGE,
        total=total,
        page=number,
    )
