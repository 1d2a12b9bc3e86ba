"""Charts into a rollout's status thread (`files_upload_v2`), and what the person who asked
is told about them. Runs in the work process only: drawing imports matplotlib and takes a
tenth of a second or more, neither of which an ack may wait for.

A chart is decoration on a decision already taken: when drawing or uploading fails, the
answer still goes out and says the chart is missing and why; nothing is retried."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

from bot.delivery import status_board
from bot.services import Services
from bot.slackweb.client import error_code
from bot.usecases import charting
from messages.text import escape
from messages.views import Chart
from storage import queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Posted:
    """Where a chart went (`problem` None) or why it did not."""

    problem: str | None = None
    channel: str = ""
    thread_ts: str | None = None


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
        log.warning("chart %s of rollout %s not uploaded: %s", chart.filename, rollout_id, error_code(exc))
        return Posted(f"Slack refused the upload ({error_code(exc)})")
    except Exception:  # a chart never costs the answer; the traceback is logged
        log.exception("chart %s of rollout %s not uploaded", chart.filename, rollout_id)
        return Posted("the upload failed")
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


def for_digest(svc: Services, rollout_id: int) -> str:
    """Posts the progress chart into the status thread; the digest's line about it."""
    try:
        chart = charting.progress_chart(svc, rollout_id)
    except Exception:  # as above
        log.exception("progress chart of rollout %s could not be drawn", rollout_id)
        return ":warning: The progress chart is missing: it could not be drawn."
    if chart is None:
        return ""
    posted = post(svc, rollout_id, chart, "Progress so far")
    if posted.problem is not None:
        return f":warning: The progress chart is missing: {posted.problem}."
    return ":chart_with_upwards_trend: The progress chart (exposure by day, pauses, rollbacks, key metric) is just above."
