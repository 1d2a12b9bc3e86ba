"""What people see of auto-advance, allowed hours and freezes: the answer to an advance
refused in a freeze or outside the hours, with its "Advance anyway…" button."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownTextObject, SectionBlock

from bot.ids import Action
from messages.blocks import Message
from messages.text import truncate


def closed_answer(text: str, token: str) -> Message:
    """`text` is mrkdwn with people's words escaped; `token` is where the rollout stands: the
    override form moves it from there only."""
    line = f":no_entry_sign: {text} Advance anyway with a reason, or wait until then."
    blocks = [
        SectionBlock(text=MarkdownTextObject(text=truncate(line, 3000))).to_dict(),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Advance anyway…", action_id=Action.ADVANCE_ANYWAY, value=token, style="danger"
                )
            ]
        ).to_dict(),
    ]
    return Message(text=truncate(line, 3000), blocks=blocks)
