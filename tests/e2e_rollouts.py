"""Helpers for end-to-end rollout tests against the running bot: one `Scenario` per test
holds the feature, its channel and the bot's database, and reads back what the bot did
(replies, events, snapshots, the status message)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update

from bot.devtools.local_slack import LocalSlack
from storage.db import Database
from storage.enums import EventKind, ItemKind, SnapshotKind
from storage.models import ChecklistItem, Event, MetricSnapshot, Phase, Rollout, SlackMessage
from tests.driver import Response, SlackDriver
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, wait_until

Params = dict[str, Any]


def new_user() -> str:
    """A Slack user id of its own: admins are remembered by the shared Slack fake."""
    return "W" + uuid.uuid4().hex[:10].upper()


def texts(message: Params) -> list[str]:
    """Every mrkdwn/plain text of a message's blocks, in order (sections and context)."""
    out: list[str] = []
    for block in message.get("blocks") or []:
        if block.get("type") in ("section", "header") and block.get("text"):
            out.append(block["text"]["text"])
        elif block.get("type") == "context":
            out += [e.get("text", "") for e in block.get("elements", [])]
    return out


def section(message: Params, heading: str) -> str:
    """The text of the section starting with `heading` (e.g. "*Success metrics*")."""
    found = [t for t in texts(message) if t.startswith(heading)]
    assert len(found) == 1, f"{heading!r} in {texts(message)}"
    return found[0]


def steps_text(message: Params) -> str:
    """The status message's "Now at ..." block."""
    return next(b["text"]["text"] for b in message["blocks"] if b.get("block_id") == "steps")


def buttons(message: Params) -> list[tuple[str, str]]:
    """(action_id, value) of every button in the message."""
    out = []
    for block in message.get("blocks") or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("type") == "button":
                out.append((element["action_id"], element.get("value", "")))
    return out


@dataclass
class Scenario:
    driver: SlackDriver
    slack: LocalSlack
    datadog: FakeDatadog
    db: Database
    channel: str
    feature: str = field(default="")
    rollout_id: int = 0

    def __post_init__(self) -> None:
        if not self.feature:
            self.feature = "adv-" + self.channel.lower()
        # The templates' error rate is 100 × errors ÷ hits: 100 hits make it read as the
        # errors' value, so a test sets the error rate it means with `errors_match` alone.
        self.datadog.set_value(self.hits_match, 100.0)

    # -- Datadog ----------------------------------------------------------------------

    @property
    def errors_match(self) -> str:
        """A fragment only this rollout's error-rate query contains."""
        return f"errors{{service:{self.feature},"

    @property
    def hits_match(self) -> str:
        """The requests the error rate (errors ÷ hits, in %) divides by."""
        return f"hits{{service:{self.feature},"

    @property
    def latency_match(self) -> str:
        return f"duration{{service:{self.feature},"

    def datadog_requests(self, endpoint: str = "scalar") -> list[Any]:
        return [r for r in self.datadog.requests_to(endpoint) if f"feature_flag:{self.feature}}}" in r.query]  # type: ignore[arg-type]

    # -- Slack ------------------------------------------------------------------------

    @property
    def owner(self) -> str:
        return self.driver.user_id

    def start(self, template: str) -> None:
        """`/rollout start`, then wait for the status message and the stored baseline."""
        self.driver.command(f"start {self.feature} {template}")
        self.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == self.channel, timeout=10)
        self.rollout_id = wait_until(self._find_id, what=f"rollout {self.feature}")
        wait_until(lambda: self.snapshots(SnapshotKind.BASELINE), what="the baseline snapshot")

    def _find_id(self) -> int | None:
        with self.db.reading() as s:
            return s.scalars(select(Rollout.id).where(Rollout.feature == self.feature)).first()

    def command(self, text: str, *, user: str | None = None, count: int = 1, timeout: float = 15.0) -> Params:
        """Type `/rollout {text}`; the `count`-th answer at its response_url."""
        response = self.driver.command(text, user=user)
        assert response.status == 200, response
        return self.driver.wait_reply(timeout=timeout, count=count)

    def advance(self, *, user: str | None = None, timeout: float = 15.0) -> Params:
        """`/rollout advance feature`: the "Checking…" line, then the answer replacing it."""
        reply = self.command(f"advance {self.feature}", user=user, count=2, timeout=timeout)
        first, second = self.driver.replies()[:2]
        assert first["replace_original"] is False and second["replace_original"] is True
        assert first["response_type"] == second["response_type"] == "ephemeral"
        return reply

    def refused_advance(self, *, user: str | None = None) -> Params:
        """An advance refused before any metric is read: one answer, no "Checking…" line."""
        reply = self.command(f"advance {self.feature}", user=user)
        assert [body(r) for r in self.driver.replies()] == [body(reply)]
        return reply

    def click(self, message: Params, action_id: str, *, user: str | None = None) -> tuple[Response, str]:
        """Click a button; returns the HTTP answer and the path of the click's response_url."""
        urls: list[str] = []
        make = self.driver._response_url

        def recording(kind: str) -> str:
            urls.append(make(kind))
            return urls[-1]

        self.driver._response_url = recording  # type: ignore[method-assign]
        try:
            response = self.driver.click(message, action_id, user=user)
        finally:
            del self.driver._response_url
        return response, urlsplit(urls[-1]).path

    def posts_to(self, path: str, count: int = 1, timeout: float = 15.0) -> list[Params]:
        calls = self.slack.wait_for("response_url", lambda c: c.path == path, timeout, count)
        return [c.params for c in calls]

    def opened_view(self, callback_id: str, timeout: float = 10.0) -> Params:
        def mine(call: Any) -> bool:
            view = call.params.get("view") or {}
            return view.get("callback_id") == callback_id and self.channel in view.get("private_metadata", "")

        return self.slack.wait_for("views.open", mine, timeout)[-1].params["view"]

    def ephemerals(self, user: str, count: int = 1, timeout: float = 15.0) -> list[Params]:
        calls = self.slack.wait_for(
            "chat.postEphemeral",
            lambda c: c.params.get("channel") == self.channel and c.params.get("user") == user,
            timeout,
            count,
        )
        return [c.params for c in calls]

    def status_ts(self) -> str:
        with self.db.reading() as s:
            stmt = select(SlackMessage.ts).where(
                SlackMessage.rollout_id == self.rollout_id, SlackMessage.purpose == "status"
            )
            ts = s.scalars(stmt).one()
        return str(ts)

    def status_message(self) -> Params:
        return self.slack.message(self.channel, self.status_ts())

    def status_updates(self) -> list[Params]:
        ts = self.status_ts()
        return [
            c.params
            for c in self.slack.calls("chat.update")
            if c.params.get("channel") == self.channel and c.params.get("ts") == ts
        ]

    def wait_status(self, fragment: str, timeout: float = 10.0) -> Params:
        """The status message once an update has put `fragment` in its steps block."""
        return wait_until(
            lambda: next((u for u in self.status_updates() if fragment in steps_text(u)), None),
            timeout,
            f"a chat.update with {fragment!r}",
        )

    # -- the bot's database -----------------------------------------------------------

    def rollout(self) -> Rollout:
        with self.db.reading() as s:
            return s.get_one(Rollout, self.rollout_id)

    def where(self) -> tuple[str, int, int]:
        r = self.rollout()
        return r.status.value, r.phase_index, r.step_index

    def events(self, *kinds: EventKind) -> list[tuple[EventKind, str | None, dict[str, Any]]]:
        with self.db.reading() as s:
            stmt = select(Event).where(Event.rollout_id == self.rollout_id).order_by(Event.id)
            rows = s.scalars(stmt).all()
            return [(e.kind, e.actor_id, dict(e.data)) for e in rows if not kinds or e.kind in kinds]

    def event_times(self) -> list[tuple[EventKind, datetime]]:
        with self.db.reading() as s:
            stmt = select(Event).where(Event.rollout_id == self.rollout_id).order_by(Event.id)
            return [(e.kind, e.at) for e in s.scalars(stmt).all()]

    def snapshots(self, kind: SnapshotKind) -> list[MetricSnapshot]:
        with self.db.reading() as s:
            stmt = (
                select(MetricSnapshot)
                .where(MetricSnapshot.rollout_id == self.rollout_id, MetricSnapshot.kind == kind)
                .order_by(MetricSnapshot.id)
            )
            return list(s.scalars(stmt).all())

    def soak(self, days: int = 14) -> None:
        """Moves the current step's start back, so its minimum soak is long met."""
        with self.db.transaction() as s:
            s.execute(
                update(Rollout)
                .where(Rollout.id == self.rollout_id)
                .values(step_started_at=datetime.now(UTC) - timedelta(days=days))
            )

    def tick_exit_criteria(self) -> None:
        """Ticks the current phase's exit criteria, as if the team had."""
        phase_index = self.rollout().phase_index
        with self.db.transaction() as s:
            phase_id = s.scalars(
                select(Phase.id).where(Phase.rollout_id == self.rollout_id, Phase.position == phase_index)
            ).one()
            s.execute(
                update(ChecklistItem)
                .where(ChecklistItem.phase_id == phase_id, ChecklistItem.kind == ItemKind.EXIT)
                .values(checked_at=datetime.now(UTC), checked_by=self.owner)
            )

    def ready(self) -> None:
        """Soak met and exit criteria ticked: only the metrics decide."""
        self.soak()
        self.tick_exit_criteria()
