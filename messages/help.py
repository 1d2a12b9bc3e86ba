"""`/rollout help`: the subcommands in sections a person scans for what they want to do, each
with an example, and `/rollout help <subcommand>` for one of them in full.

Sections, not one block: a reader looking for "how do I stop this" finds "When something looks
wrong" without reading the rest. The intro line comes from help.j2, which a team may override.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from messages.blocks import Message, _dicts
from messages.render import render
from messages.text import escape

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Start and follow a rollout", ("start", "status", "list", "timeline", "export", "help")),
    ("Move it forward", ("advance", "snapshot", "complete")),
    ("Hands-off: auto-advance, hours and freezes", ("auto", "hours", "freeze", "checkpoints")),
    ("When something looks wrong", ("pause", "resume", "rollback")),
    ("Metrics", ("metrics", "baseline")),
    ("People and updates", ("update", "approvers", "access", "digest")),
    ("Plans", ("templates", "import")),
)


class Usage(Protocol):
    """A subcommand's usage, as bot.edge.parsing writes it."""

    @property
    def form(self) -> str: ...
    @property
    def example(self) -> str: ...
    @property
    def summary(self) -> str: ...


def _entry(name: str, usage: Usage) -> str:
    return f"*{escape(usage.summary)}*: `{escape(usage.form)}`\n      e.g. `{escape(usage.example)}`"


def help_message(usages: Mapping[str, Usage], templates: Sequence[str], topic: str | None = None) -> Message:
    """Every subcommand by section (`topic` None), or the one named `topic`."""
    if topic is not None:
        usage = usages[topic]
        text = f"*/rollout {escape(topic)}*: {escape(usage.summary)}.\nUse: `{escape(usage.form)}`\nFor example: `{escape(usage.example)}`"
        return Message(
            text=f"/rollout {topic}: {usage.summary}",
            blocks=_dicts([SectionBlock(text=MarkdownTextObject(text=text))]),
        )
    blocks: list[Block] = [
        HeaderBlock(text="Rollout Bot: what you can ask"),
        SectionBlock(text=MarkdownTextObject(text=render("help"))),
    ]
    listed: set[str] = set()
    for title, names in SECTIONS:
        entries = [_entry(n, usages[n]) for n in names if n in usages]
        listed.update(names)
        if entries:
            blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*{title}*\n" + "\n".join(entries))))
    rest = [_entry(n, u) for n, u in usages.items() if n not in listed]
    if rest:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="*More*\n" + "\n".join(rest))))
    template_list = ", ".join(f"`{escape(t)}`" for t in templates)
    one = f"`{escape(usages['help'].example)}`" if "help" in usages else "`/rollout help <subcommand>`"
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"Plan templates: {template_list}. {one} shows one subcommand in full."
                )
            ]
        )
    )
    return Message(
        text="Rollout Bot help: the /rollout subcommands, by what you want to do", blocks=_dicts(blocks)
    )
