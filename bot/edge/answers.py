"""How a failed request is answered: a domain refusal becomes a polite ephemeral message, a
bad command shows its right form, anything unexpected is logged with its traceback and the
user still hears back. Nothing reaches the user as a stack trace or a silent failure."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from slack_sdk.errors import SlackApiError

from bot.domain.plans import UnknownTemplate, template_names
from bot.edge.parsing import USAGES, usage_of
from bot.errors import AdvanceClosed, NeedsChoice, NotAllowed, RolloutError, UsageError
from bot.slackweb.client import error_code
from messages import confirmations as confirm
from messages import render
from messages.access import refusal
from messages.autopilot import closed_answer
from messages.blocks import Message, choose_rollout, text_message
from messages.help import help_message as help_sections
from messages.text import escape
from storage.db import AlreadyHandled

log = logging.getLogger(__name__)

Reply = Callable[[Message], None]


def usage_message(error: UsageError) -> Message:
    return text_message(render("usage_error", problem=error.problem, usage=usage_of(error)))


def help_message(topic: str | None = None) -> Message:
    return help_sections(USAGES, template_names(), topic)


def unknown_template(error: UnknownTemplate) -> Message:
    names = ", ".join(f"`{n}`" for n in template_names())
    return usage_message(UsageError(f"there is no template `{error.name}` (there are {names})", "start"))


def message_for(error: Exception, subcommand: str = "status") -> Message:
    if isinstance(error, UsageError):
        return usage_message(error)
    if isinstance(error, UnknownTemplate):
        return unknown_template(error)
    if isinstance(error, NeedsChoice):
        return choose_rollout(str(error), error.choices, subcommand)
    if isinstance(error, AdvanceClosed):
        values = {k: escape(str(v)) for k, v in error.values.items()}
        return closed_answer(error.text.format(**values), error.token)
    if isinstance(error, RolloutError):
        values = {k: escape(str(v)) for k, v in error.values.items()}
        text = f":no_entry_sign: {error.text.format(**values) if values else error.text}"
        if isinstance(error, NotAllowed) and error.rollout_id is not None:
            return refusal(text, error.rollout_id)  # with a "Request access" button
        return text_message(text)
    if isinstance(error, SlackApiError):
        return confirm.slack_refused(error_code(error))
    ref = uuid.uuid4().hex[:8]
    log.error("unexpected error, ref %s", ref, exc_info=error)
    return confirm.went_wrong(ref)


@contextmanager
def answering(reply: Reply, subcommand: str = "status") -> Iterator[None]:
    """Runs a request's work; whatever goes wrong, the user gets an answer. Work run again
    after its process died, whose change is already committed, ends quietly: the person got
    their answer, or sees the change on the status message."""
    try:
        yield
    except AlreadyHandled as done:
        log.info("%s: already done, nothing changed twice", done.key)
    except Exception as error:  # noqa: BLE001 - every failure is answered; unknown ones logged in message_for
        if isinstance(error, SlackApiError):
            log.warning("Slack call failed: %s", error_code(error))
        try:
            reply(message_for(error, subcommand))
        except Exception:
            log.exception("could not tell the user about an error")


class Replier(Protocol):
    def __call__(self, message: Message) -> None: ...

    def progress(self, message: Message) -> None: ...
