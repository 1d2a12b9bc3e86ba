"""The live status message's link, for the copies that point to it (`/rollout status`, the
Home tab, a chart): its permalink never changes, so Slack is asked for it once
(`chat.getPermalink`) and the answer is kept on the message's row for every later one. A
refusal is not kept: the next asks again. The row comes with the rollout's view where both are
needed (`view_reads.load_with_message`), read on a bare connection: a Session costs more than the
statements of a status."""

from __future__ import annotations

import http.client
import logging
from typing import TYPE_CHECKING, cast

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.errors import RolloutNotFound
from bot.services import Services
from bot.slackweb.client import error_code
from bot.usecases import view_reads
from bot.usecases.view_reads import MessageRef
from messages.views import RolloutView
from storage import queries
from storage.models import SlackMessage

if TYPE_CHECKING:
    from sqlalchemy import Table

log = logging.getLogger(__name__)

_messages = cast("Table", SlackMessage.__table__)
_MESSAGE = select(_messages.c.id, _messages.c.channel_id, _messages.c.ts, _messages.c.permalink).where(
    _messages.c.rollout_id == bindparam("of_rollout"), _messages.c.purpose == queries.STATUS_PURPOSE
)
_KEEP = update(_messages).where(_messages.c.id == bindparam("message_id")).values(permalink=bindparam("link"))


def permalink(svc: Services, rollout_id: int) -> str | None:
    """A link to the live status message, or None if there is none (or Slack will not say)."""
    with svc.db.connected() as conn:
        row = conn.execute(_MESSAGE, {"of_rollout": rollout_id}).first()
    return message_link(svc, rollout_id, None if row is None else MessageRef(*row))


def view_and_link(svc: Services, team_id: str, rollout_id: int) -> tuple[RolloutView, str | None]:
    """A workspace's rollout as its status message shows it, and the link to that message (as
    `permalink`), read in one transaction. Refused if the rollout is not there."""
    with svc.db.connected() as conn:
        view, ref = copy_of(conn, team_id, rollout_id)
    return view, message_link(svc, rollout_id, ref)


def copy_of(
    session: Session | Connection, team_id: str, rollout_id: int
) -> tuple[RolloutView, MessageRef | None]:
    """In the caller's read transaction: the rollout's view and its status message's row (for
    `message_link`, after the transaction). Refused if the rollout is not there."""
    found = view_reads.load_with_message(session=session, rollout_id=rollout_id, team_id=team_id)
    if found is None:
        raise RolloutNotFound("That rollout does not exist any more.")
    return found


# The request may not have reached Slack, or its answer may not have come back.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


def message_link(
    svc: Services, rollout_id: int, ref: MessageRef | None, *, client: WebClient | None = None
) -> str | None:
    """The message's permalink: the kept one, else Slack's answer (asked with `client`, the
    outbox's own for a stakeholder post), kept for the next time. None when Slack will not say."""
    if ref is None:
        return None
    if ref.permalink:
        return str(ref.permalink)
    try:
        answer = (client or svc.client).chat_getPermalink(channel=ref.channel_id, message_ts=ref.ts)
        link = str(answer.get("permalink") or "")
    except SlackApiError as exc:
        log.info("no permalink for rollout %s: %s", rollout_id, error_code(exc))
        return None
    except TRANSPORT_ERRORS as exc:
        log.info("no permalink for rollout %s: %s", rollout_id, type(exc).__name__)
        return None
    if not link.startswith("https://"):  # only an answer that looks like a link is worth keeping
        return None
    try:
        with svc.db.writing() as conn:
            conn.execute(_KEEP, {"message_id": ref.id, "link": link})
    except SQLAlchemyError as exc:
        # Keeping it saves the next ask a Slack call; not keeping it costs this one nothing.
        log.warning("permalink of rollout %s not kept: %s", rollout_id, exc)
    return link
