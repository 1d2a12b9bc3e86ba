"""Charts into a rollout's status thread (`files_upload_v2`), and what the person who asked
is told about them. Runs in the work process only: drawing imports matplotlib and takes a
tenth of a second or more, neither of which an ack may wait for.

A chart is decoration on a decision already taken: when drawing or uploading a gate check's
chart fails, the answer still goes out and says the chart is missing and why.

A digest's progress chart is its own piece of work (`run_due`), never part of the due-work
tick: the digest commits its text and a `chart` row (`bot.delivery.jobs`), and this draws and
uploads it afterwards, claimed like every due row (so one replica does it), once its digest's
text is out (or after CHART_TEXT_WAIT). Exactly once, at the cost of at most once:

- the row is marked `uploading` under the claim before the upload, and goes when it is done;
- an upload Slack refused is retried with backoff (`chart_retry`), up to CHART_ATTEMPTS tries
  (a permanent error: at once), then the owner is told in the status thread;
- a row found still marked `uploading` (the process died mid-upload, or the connection broke
  with the answer unknown) may already be in Slack, which keeps no key for a file to look it
  up by: it is not posted a second time, and the owner is told in the status thread that the
  chart may be missing and where to find it (`/rollout export` draws it again);
- a chart that cannot be drawn is retried like a refused upload; the digest, already out, never
  promised it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.delivery import jobs, status_board
from bot.domain.schedule import (
    CHART_ATTEMPTS,
    CHART_TEXT_RECHECK,
    CHART_TEXT_WAIT,
    Due,
    Kind,
    chart_retry,
)
from bot.services import Services
from bot.slackweb.client import PERMANENT_ERRORS, error_code
from bot.usecases import announcing, charting
from messages.blocks import Message
from messages.text import escape
from messages.views import Chart
from storage import queries
from storage.enums import OutboxState
from storage.models import OutboxMessage, Rollout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Posted:
    """Where a chart went (`problem` None) or why it did not."""

    problem: str | None = None
    channel: str = ""
    thread_ts: str | None = None
    code: str = ""  # Slack's error code, when Slack refused the upload
    known: bool = True  # False: the upload broke off and Slack may have it all the same


def post(svc: Services, rollout_id: int, chart: Chart, comment: str) -> Posted:
    """Uploads `chart` into the rollout's status thread (its channel when it has no status
    message yet)."""
    with svc.db.reading() as session:
        rollout = queries.get_rollout(session=session, rollout_id=rollout_id)
        status = queries.status_message(session=session, rollout_id=rollout_id)
    if rollout is None:
        return Posted("the rollout does not exist any more")
    thread_ts = status.ts if status is not None else None
    try:
        svc.client.files_upload_v2(
            channel=rollout.channel_id,
            thread_ts=thread_ts,
            file=chart.png,
            filename=chart.filename,
            title=chart.title,
            initial_comment=comment,
        )
    except SlackApiError as exc:
        code = error_code(exc)
        log.warning("chart %s of rollout %s not uploaded: %s", chart.filename, rollout_id, code)
        return Posted(f"Slack refused the upload ({code})", code=code)
    except Exception:  # a chart never costs the answer; the traceback is logged
        log.exception("chart %s of rollout %s not uploaded", chart.filename, rollout_id)
        return Posted("the upload failed", known=False)
    return Posted(None, rollout.channel_id, thread_ts)


def after_check(svc: Services, rollout_id: int) -> str:
    """Draws the gate check just taken and posts it in the status thread; the line the gate
    answer ends with: where the chart is, or that it is missing and why."""
    try:
        drawn = charting.gate_chart(svc, rollout_id, live=True)
    except Exception:  # as above: drawing must not cost the answer
        log.exception("gate chart of rollout %s could not be drawn", rollout_id)
        return ":warning: The chart of this check is missing: it could not be drawn."
    if drawn is None:
        return ""
    view, chart = drawn
    if not view.panels:
        return ""
    if not view.has_data:
        return "_No chart of this check: no metric returned data to draw._"
    posted = post(svc, rollout_id, chart, escape(f"{view.feature}: {view.title}"))
    if posted.problem is not None:
        return f":warning: The chart of this check is missing: {posted.problem}."
    if posted.thread_ts is None:
        return ":chart_with_upwards_trend: The chart of this check follows in the rollout's channel."
    link = status_board.permalink(svc, rollout_id)
    where = f"<{link}|the status thread>" if link else "the status thread"
    return f":chart_with_upwards_trend: The chart of this check follows in {where}."


def run_due(svc: Services, *, limit: int = 10) -> int:
    """Draws and posts the digests' progress charts that are due; how many rows were done."""
    return jobs.run(svc, {Kind.CHART: _digest_chart}, limit=limit)


def _digest_chart(svc: Services, job: jobs.Claimed) -> Due | None:
    day = str(job.data.get("digest") or "")
    tries = int(job.data.get("tries", 0))
    with svc.db.reading() as session:
        row = session.execute(
            select(Rollout.status, Rollout.channel_id).where(Rollout.id == job.rollout_id)
        ).first()
        if row is None or not row.status.is_open:
            return None
        text_pending = _pending(session, job.rollout_id, f"digest:{day}", row.channel_id)
    if job.data.get("uploading"):
        log.warning(
            "progress chart of rollout %s (digest %s): an upload's outcome was never recorded; "
            "not posted again, as Slack may have it",
            job.rollout_id,
            day,
        )
        _tell_owner(svc, job.rollout_id, day, UNKNOWN.format(day=day))
        return None
    queued = datetime.fromisoformat(str(job.data.get("queued") or job.now.isoformat()))
    if text_pending and job.now - queued < CHART_TEXT_WAIT:
        return Due(job.now + CHART_TEXT_RECHECK, job.data)  # the chart follows its digest
    try:
        chart = charting.progress_chart(svc, job.rollout_id)
    except Exception:
        log.exception("progress chart of rollout %s could not be drawn", job.rollout_id)
        return _again(svc, job, day, tries, Posted("it could not be drawn"))
    if chart is None:
        return None
    if not jobs.mark(svc, job, {**job.data, "uploading": True}):
        return None  # the claim ran out: the row is another run's now
    posted = post(svc, job.rollout_id, chart, escape(f"Progress so far, with the digest of {day}"))
    if posted.problem is None:
        return None
    if not posted.known:
        log.warning("progress chart of rollout %s (digest %s) may be missing", job.rollout_id, day)
        _tell_owner(svc, job.rollout_id, day, UNKNOWN.format(day=day))
        return None
    return _again(svc, job, day, tries, posted)


def _pending(session: Session, rollout_id: int, milestone: str, channel_id: str) -> bool:
    key = announcing.dedupe_key(rollout_id, milestone, channel_id)
    state = session.scalar(select(OutboxMessage.state).where(OutboxMessage.dedupe_key == key))
    return state == OutboxState.PENDING


def _again(svc: Services, job: jobs.Claimed, day: str, tries: int, posted: Posted) -> Due | None:
    """The next try, or, after the last (or an error that trying again will not mend), a word
    to the owner in the status thread."""
    tries += 1
    if tries < CHART_ATTEMPTS and posted.code not in PERMANENT_ERRORS:
        data = {k: v for k, v in job.data.items() if k != "uploading"}
        return Due(svc.clock() + chart_retry(tries - 1), {**data, "tries": tries})
    _tell_owner(
        svc, job.rollout_id, day, f"The progress chart of the {day} digest is missing: {posted.problem}."
    )
    return None


# Said when an upload's outcome is unknown: the chart may be in the thread, or may not.
UNKNOWN = (
    "The progress chart of the {day} digest may be missing: its upload did not finish as far as I can tell. "
    "`/rollout export` draws it again."
)


def _tell_owner(svc: Services, rollout_id: int, day: str, words: str) -> None:
    """One note in the status thread per digest's chart (the key holds it to once)."""
    with svc.db.transaction() as session:
        rollout = session.get(Rollout, rollout_id)
        if rollout is not None:
            note = Message(text=":warning: " + words)
            announcing.queue(session, rollout, announcing.Announcement(f"chart:{day}", note), svc.clock())
