"""Modals (views.open payloads)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ConversationMultiSelectElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.domain.names import MAX_FEATURE_LEN
from bot.ids import Block
from bot.ids import View as ViewId
from messages.text import escape, truncate

# action_id inside each input block; the block_id says which field it is.
VALUE = "value"
# Blockers listed in the override form; the rest are counted (a section holds 3,000 characters).
MAX_BULLETS = 8


def start_modal(
    *,
    templates: Sequence[tuple[str, str]],
    default_template: str,
    owner_id: str,
    private_metadata: str,
) -> dict[str, Any]:
    options = [Option(value=name, text=f"{title} ({name})"[:75]) for name, title in templates]
    initial = next((o for o in options if o.value == default_template), options[0])
    view = View(
        type="modal",
        callback_id=ViewId.START,
        title="Start a rollout",
        submit="Start",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=[
            InputBlock(
                block_id=Block.START_FEATURE,
                label="Feature",
                hint="Unique among this workspace's open rollouts, e.g. checkout-v2",
                element=PlainTextInputElement(action_id=VALUE, max_length=MAX_FEATURE_LEN),
            ),
            InputBlock(
                block_id=Block.START_TEMPLATE,
                label="Plan template",
                element=StaticSelectElement(action_id=VALUE, options=options, initial_option=initial),
            ),
            InputBlock(
                block_id=Block.START_OWNER,
                label="Owner",
                element=UserSelectElement(action_id=VALUE, initial_user=owner_id),
            ),
            InputBlock(
                block_id=Block.START_STAKEHOLDERS,
                label="Stakeholder channels",
                optional=True,
                element=ConversationMultiSelectElement(
                    action_id=VALUE, filter={"include": ["public", "private"], "exclude_bot_users": True}
                ),
            ),
            InputBlock(
                block_id=Block.START_FLAG,
                label="Feature flag key",
                optional=True,
                element=PlainTextInputElement(action_id=VALUE, max_length=120),
            ),
        ],
    )
    return view.to_dict()


def reason_modal(
    *,
    callback_id: str,
    title: str,
    submit: str,
    intro: str,
    label: str,
    private_metadata: str,
    required: bool,
) -> dict[str, Any]:
    """A short form that asks why: overriding a blocked gate, rolling back."""
    view = View(
        type="modal",
        callback_id=callback_id,
        title=title[:24],
        submit=submit[:24],
        close="Cancel",
        private_metadata=private_metadata,
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=intro[:3000])),
            InputBlock(
                block_id=Block.REASON,
                label=label,
                optional=not required,
                element=PlainTextInputElement(action_id=VALUE, multiline=True, max_length=500),
            ),
        ],
    )
    return view.to_dict()


def override_intro(
    *,
    feature: str,
    from_step: str,
    to_step: str,
    to_phase: str,
    leaves_phase: str | None,
    blockers: Sequence[str],
) -> str:
    """The override form's words: where the rollout goes, past what, and what it leaves marked
    skipped. The blockers are the last gate check's, one bullet each."""
    target = "the end of its plan" if to_step == "done" else f"*{escape(to_step)}* of *{escape(to_phase)}*"
    lines = [f"Advance *{escape(feature)}* from *{escape(from_step)}* to {target}, past a closed gate."]
    if blockers:
        lines.append("This overrides:")
        shown = list(blockers[:MAX_BULLETS])
        lines += [f"• {escape(truncate(b, 300))}" for b in shown]
        if len(blockers) > len(shown):
            lines.append(f"• …and {len(blockers) - len(shown)} more")
    if leaves_phase:
        lines.append(f"*{escape(leaves_phase)}* will show as skipped by override ⚠, not done.")
    lines.append("Your reason goes into the timeline and the announcement.")
    return "\n".join(lines)


def import_modal(*, private_metadata: str) -> dict[str, Any]:
    view = View(
        type="modal",
        callback_id=ViewId.IMPORT,
        title="Import a plan",
        submit="Import",
        close="Cancel",
        private_metadata=private_metadata,
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text="Paste a rollout plan written in Markdown (the house template, or the back-end "
                    "phased-rollout form). Anything the importer cannot read is listed by line number."
                )
            ),
            InputBlock(
                block_id=Block.IMPORT_NAME,
                label="Template name",
                hint="Use it with /rollout start <feature> <name>",
                element=PlainTextInputElement(action_id=VALUE, max_length=64),
            ),
            InputBlock(
                block_id=Block.IMPORT_TEXT,
                label="Plan document",
                element=PlainTextInputElement(action_id=VALUE, multiline=True, max_length=3000),
            ),
        ],
    )
    return view.to_dict()
