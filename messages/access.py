"""Refusals as a path: the "Request access" button under a refusal, and the request the owner
gets in the status thread with an "Add as approver" button. Data in, messages out."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, MarkdownTextObject, SectionBlock

from bot.ids import Action
from messages.blocks import Message
from messages.text import escape


def refusal(text: str, rollout_id: int) -> Message:
    """A permission refusal (already mrkdwn) with a button that asks the owner for access."""
    button = ButtonElement(text="Request access", action_id=Action.REQUEST_ACCESS, value=str(rollout_id))
    return Message(
        text=text,
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=text)).to_dict(),
            ActionsBlock(elements=[button]).to_dict(),
        ],
    )


def access_request(rollout_id: int, feature: str, owner: str, requester: str, action: str) -> Message:
    """To the owner, in the status thread: who asks, for what they were refused, one click."""
    # Event first (the push text is the first line), the owner's mention after it.
    text = (
        f":key: Access requested: <@{requester}> asks to be an approver of *{escape(feature)}* "
        # The refused action as the refusal named it ("override the gate of"), shortened.
        f"(refused: {escape(action.removesuffix(' of'))}). <@{owner}>, one click adds them."
    )
    button = ButtonElement(
        text="Add as approver",
        action_id=Action.APPROVER_ADD,
        value=f"{rollout_id}:{requester}",
        style="primary",
    )
    return Message(
        text=text,
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=text)).to_dict(),
            ActionsBlock(elements=[button]).to_dict(),
        ],
    )


def access_granted(feature: str, owner: str, requester: str) -> Message:
    """What the request becomes once the owner clicked: the button is gone, the answer stays."""
    text = f":key: Approver added to *{escape(feature)}*: <@{requester}>, by <@{owner}>."
    return Message(
        text=text,
        blocks=[SectionBlock(text=MarkdownTextObject(text=text)).to_dict()],
    )
