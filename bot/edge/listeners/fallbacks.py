"""Registered last: requests no other listener claimed. A button from a message an older
version of the bot posted, or a form it opened, gets a polite answer, not Bolt's 404."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, Respond

from messages.blocks import text_message

log = logging.getLogger(__name__)

ANYTHING = re.compile(".*")
STALE = "That button belongs to an older message of mine and does nothing now. `/rollout status` shows where things stand."


def register(app: App) -> None:
    def ack_now(ack: Ack) -> None:
        ack()

    def stale_button(respond: Respond) -> None:
        try:
            respond(response_type="ephemeral", replace_original=False, **text_message(STALE).as_kwargs())
        except (ValueError, OSError) as exc:  # no response_url, or it did not answer
            log.info("could not answer a stale button: %s", exc)

    def closed_form(ack: Ack, view: dict[str, Any]) -> None:
        log.info("unknown form %r", view.get("callback_id") if isinstance(view, dict) else view)
        ack()  # closes the form; nothing else can be done with it

    def ignored_event(event: dict[str, Any]) -> None:
        log.debug("event %r not used", event.get("type") if isinstance(event, dict) else event)

    app.action(ANYTHING)(ack=ack_now, lazy=[stale_button])
    app.view(ANYTHING)(closed_form)
    app.event(ANYTHING)(ignored_event)
