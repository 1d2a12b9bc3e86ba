"""The status message: one per rollout, posted once and then edited in place."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot.services import Services
from bot.slackweb.client import error_code, post_joining
from bot.usecases import schedule, views
from bot.usecases.announcing import QUEUED
from messages.blocks import status_message
from storage import queries
from storage.models import SlackMessage

log = logging.getLogger(__name__)

# Renders race: a render of revision 5 may reach Slack after one of revision 6. Re-render
# until the message shows the newest revision; three rounds settle any realistic burst.
MAX_REFRESH_ROUNDS = 3


def post(svc: Services, rollout_id: int) -> str:
    """Posts the status message and remembers its ts. Raises NotInChannel when the bot cannot
    get into the channel."""
    with svc.db.reading() as session:
        rollout = views.load_rollout(session=session, rollout_id=rollout_id)
        assert rollout is not None
        existing = queries.status_message(session=session, rollout_id=rollout_id)
    if existing is not None:
        refresh(svc, rollout_id)
        return existing.ts
    message = status_message(rollout, now=svc.clock())
    ts = post_joining(svc.client, channel=rollout.channel_id, **message.as_kwargs())
    with svc.db.transaction() as session:
        # Announcements waiting for this message (its thread) can go now: wake the outbox.
        session.info[QUEUED] = True
        session.add(
            SlackMessage(
                rollout_id=rollout_id,
                purpose=queries.STATUS_PURPOSE,
                channel_id=rollout.channel_id,
                ts=ts,
                rendered_revision=rollout.revision,
            )
        )
    # A tick that landed while the message was on its way found nothing to edit: catch up.
    with svc.db.reading() as session:
        latest = queries.revision_of(session=session, rollout_id=rollout_id)
    if latest is not None and latest != rollout.revision:
        refresh(svc, rollout_id)
    return ts


def refresh(svc: Services, rollout_id: int) -> str | None:
    """Edits the status message to the committed state. Returns None, or Slack's error when
    the edit failed after the client's retries: the change itself is committed either way, and
    a `refresh` due job tries again (backing off) until the message shows it."""
    error = edit(svc, rollout_id)
    if error is not None:
        schedule.retry_refresh(svc, rollout_id, error)
    return error


def edit(svc: Services, rollout_id: int) -> str | None:
    """One try at showing the committed state: None, or Slack's error."""
    for _ in range(MAX_REFRESH_ROUNDS):
        with svc.db.reading() as session:
            rollout = views.load_rollout(session=session, rollout_id=rollout_id)
            ref = queries.status_message(session=session, rollout_id=rollout_id)
        if rollout is None or ref is None:
            return None
        message = status_message(rollout, now=svc.clock())
        try:
            svc.client.chat_update(channel=ref.channel_id, ts=ref.ts, **message.as_kwargs())
        except SlackApiError as exc:
            log.warning("status message of rollout %s not updated: %s", rollout_id, error_code(exc))
            return error_code(exc)
        with svc.db.reading() as session:
            latest = queries.revision_of(session=session, rollout_id=rollout_id)
        if latest is None or latest == rollout.revision:
            return None
    return None


def permalink(svc: Services, rollout_id: int) -> str | None:
    """A link to the live status message, or None if there is none (or Slack will not say)."""
    with svc.db.reading() as session:
        ref = queries.status_message(session=session, rollout_id=rollout_id)
    if ref is None:
        return None
    try:
        return str(svc.client.chat_getPermalink(channel=ref.channel_id, message_ts=ref.ts)["permalink"])
    except SlackApiError as exc:
        log.info("no permalink for rollout %s: %s", rollout_id, error_code(exc))
        return None
