"""What the bot says about the feature flag: a rollback whose flag write failed, the retry that
landed it, and a flag that drifted from the plan. Data in, messages out.

Each opens with the event (the push text is the first line, messages/STYLE.md); the owner's
mention follows it, so a notification reads "checkout-v2 is rolled back, but …", not a name."""

from __future__ import annotations

from typing import Protocol

from slack_sdk.models.blocks import ActionsBlock, ButtonElement

from bot.ids import Action
from messages.blocks import Message, text_message
from messages.text import escape


class Rollout(Protocol):
    """The little of a rollout these messages say: any object with these fields will do."""

    @property
    def id(self) -> int: ...
    @property
    def feature(self) -> str: ...
    @property
    def owner_id(self) -> str: ...
    @property
    def flag_key(self) -> str | None: ...
    @property
    def flag_percent(self) -> float | None: ...


def _flag(rollout: Rollout) -> str:
    return f"`{escape(rollout.flag_key or '')}`"


def rollback_write_failed(rollout: Rollout, *, provider: str, reason: str) -> tuple[Message, Message]:
    """(status thread, top of the channel): the rollback is recorded, the flag is not at 0 %."""
    text = (
        f":rotating_light: *{escape(rollout.feature)}* is rolled back, but "
        f"{escape(provider)} did not take the flag change: {escape(reason)}. "
        f"<@{rollout.owner_id}>: *users may still get the feature.* I keep retrying flag {_flag(rollout)} "
        "every minute until it lands; turn it off by hand if you can."
    )
    return text_message(text), text_message(text)


def write_landed(rollout: Rollout, *, provider: str, after: float) -> Message:
    return text_message(
        f":heavy_check_mark: Flag {_flag(rollout)} of *{escape(rollout.feature)}* is now at "
        f"{after:g}% in {escape(provider)}: the rollback's flag write landed."
    )


def drift_alert(rollout: Rollout, *, provider: str, plan: float, link: str | None) -> Message:
    """To the owner, once per drift, with the two ways out."""
    says = rollout.flag_percent if rollout.flag_percent is not None else 0.0
    where = f"<{link}|{escape(provider)}>" if link else escape(provider)
    message = text_message(
        f":warning: Flag {_flag(rollout)} of *{escape(rollout.feature)}* says "
        f"*{says:g}%* in {where}, but the plan says *{plan:g}%*. <@{rollout.owner_id}>, someone changed "
        "it by hand, or a change of mine did not finish: which one stands?"
    )
    buttons = ActionsBlock(
        elements=[
            ButtonElement(
                text=f"Set the flag to {plan:g}% (the plan)",
                action_id=Action.FLAG_APPLY_PLAN,
                value=str(rollout.id),
                style="primary",
            ),
            ButtonElement(
                text=f"Keep {says:g}% (adopt the flag's)",
                action_id=Action.FLAG_ADOPT,
                value=f"{rollout.id}:{says:g}",
            ),
        ]
    )
    return Message(text=message.text, blocks=[*message.blocks, buttons.to_dict()])
