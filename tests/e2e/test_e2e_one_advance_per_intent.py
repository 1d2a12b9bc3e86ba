"""One advance per intent, end to end (SQLite and Postgres): two advances sent together move
the rollout one step, however the second is timed against the first's commit; an Advance
button means the step it was rendered at, and an old button (its value only the rollout id)
the step current when it was clicked.

The plan ("pairs", stored as an imported template) has 30 steps with no soak time and no
checklists, and one metric the Datadog stand-in answers after 200 ms, always green: only the
binding decides whether the second advance of a pair moves."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bot.devtools.local_slack import LocalSlack
from bot.domain.plans.model import Metric, Phase, Plan, Rule, Step
from bot.usecases import plan_store
from storage.db import Database
from storage.enums import EventKind
from tests.driver import SlackDriver
from tests.e2e_rollouts import Scenario, buttons
from tests.fakes.datadog_api import FakeDatadog
from tests.support import body, make_services, wait_until

pytestmark = pytest.mark.e2e

ROLLOUTS = 5
PAIRS = 20  # per rollout: 100 pairs in all
PLAN = Plan(
    name="pairs",
    title="Thirty quick steps",
    phases=(Phase("Gradual Rollout", steps=tuple(Step(p) for p in range(1, 31))),),
    metrics=(
        Metric("errors", "Error rate", "avg:pairs.errors{service:{service}}", Rule.UPPER, 5.0, unit="%"),
    ),
)


def final_reply(driver: SlackDriver, timeout: float = 30.0) -> dict[str, Any]:
    """The answer that ends an advance: "advanced…", or a refusal ("already moved…"), not
    the "Checking…" line before it."""

    def found() -> dict[str, Any] | None:
        done = [r for r in driver.replies() if not body(r).startswith(":hourglass")]
        return done[-1] if done else None

    reply: dict[str, Any] = wait_until(found, timeout, "the answer to an advance")
    return reply


def drivers_for(sc: Scenario, count: int) -> list[SlackDriver]:
    base_url = sc.driver.url.removesuffix("/slack/events")
    return [
        SlackDriver(
            base_url,
            sc.driver.signing_secret,
            sc.slack,
            team_id=sc.driver.team_id,
            channel_id=sc.channel,
            user_id=sc.driver.user_id,
        )
        for _ in range(count)
    ]


@pytest.fixture
def pairs_plan(bot_db: Database) -> None:
    plan_store.save(make_services(bot_db), None, PLAN, source="")


def test_a_hundred_pairs_of_advances_sent_together_move_a_hundred_steps(
    driver: SlackDriver,
    slack: LocalSlack,
    datadog: FakeDatadog,
    bot_db: Database,
    channel: str,
    pairs_plan: None,
) -> None:
    scenarios = []
    for n in range(ROLLOUTS):
        sc = Scenario(driver, slack, datadog, bot_db, channel, feature=f"pairs-{n}-{uuid.uuid4().hex[:6]}")
        # Green, answered after 200 ms: far longer than the widest lag in a pair (40 ms), so the
        # second of a pair is always sent before the first can commit. Answered at once, a
        # quiet machine could finish the first advance inside the lag, and a second typed
        # after the step moved rightly means the new step.
        datadog.set_value(f"pairs.errors{{service:{sc.feature}}}", 1.0, delay=0.2)
        sc.start("pairs")
        scenarios.append(sc)

    def run_pairs(sc: Scenario) -> list[list[str]]:
        """PAIRS pairs, one after the other; the two of a pair sent together."""
        two = drivers_for(sc, 2)
        barrier = threading.Barrier(2)
        answers = []

        def send(d: SlackDriver, lag: float) -> str:
            barrier.wait()
            time.sleep(lag)
            assert d.command(f"advance {sc.feature}").status == 200
            return str(body(final_reply(d)))

        with ThreadPoolExecutor(2) as pool:
            for n in range(PAIRS):
                # The second of a pair 0-40 ms after the first: at once, both read the rollout
                # before either moves it; a little later, the second is picked up just after
                # the first committed (what moved twice).
                lags = (0.0, (n % 5) * 0.01)
                answers.append(sorted(pool.map(send, two, lags)))
        return answers

    began = time.monotonic()
    with ThreadPoolExecutor(ROLLOUTS) as pool:
        results = list(pool.map(run_pairs, scenarios))
    took = time.monotonic() - began

    moved = sum(len(sc.events(EventKind.ADVANCED)) for sc in scenarios)
    print(f"{ROLLOUTS * PAIRS} pairs sent, {moved} steps moved, {took:.1f} s")
    assert moved == ROLLOUTS * PAIRS
    for sc, answers in zip(scenarios, results, strict=True):
        assert sc.where() == ("active", 0, PAIRS)
        for pair in answers:  # one moved, the other was told it already had
            assert [a.split(" ", 1)[0] for a in pair] == [":arrow_up:", ":no_entry_sign:"], pair
            assert " already moved to " in pair[1] and "nothing else changed" in pair[1], pair


def test_an_advance_button_means_the_step_it_was_rendered_at(
    driver: SlackDriver,
    slack: LocalSlack,
    datadog: FakeDatadog,
    bot_db: Database,
    channel: str,
    pairs_plan: None,
) -> None:
    sc = Scenario(driver, slack, datadog, bot_db, channel, feature=f"button-{uuid.uuid4().hex[:6]}")
    datadog.set_value(f"pairs.errors{{service:{sc.feature}}}", 1.0)
    sc.start("pairs")
    seen = sc.status_message()  # rendered at 1%
    assert (  # the button carries the step it was rendered at
        ("advance", f"{sc.rollout_id}:0:0") in buttons(seen)
    )
    assert body(sc.advance()) == f":arrow_up: *{sc.feature}* advanced from 1% to *2%*: the gate passed."

    old_view: Callable[[], tuple[Any, str]] = lambda: sc.click(seen, "advance")  # noqa: E731
    response, path = old_view()

    assert response.status == 200
    (answer,) = sc.posts_to(path)
    assert body(answer).startswith(
        f":no_entry_sign: *{sc.feature}* already moved to 2% of Gradual Rollout (by <@{sc.owner}>, at "
    )
    assert body(answer).endswith("); nothing else changed.")
    assert sc.where() == ("active", 0, 1)


def test_a_button_from_before_buttons_carried_the_step_means_the_step_current_at_the_click(
    driver: SlackDriver,
    slack: LocalSlack,
    datadog: FakeDatadog,
    bot_db: Database,
    channel: str,
    pairs_plan: None,
) -> None:
    sc = Scenario(driver, slack, datadog, bot_db, channel, feature=f"oldbutton-{uuid.uuid4().hex[:6]}")
    datadog.set_value(f"pairs.errors{{service:{sc.feature}}}", 1.0)
    sc.start("pairs")
    seen = sc.status_message()
    for block in seen["blocks"]:  # as status messages posted by earlier versions carry it
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == "advance":
                element["value"] = str(sc.rollout_id)

    response, path = sc.click(seen, "advance")

    assert response.status == 200
    assert (
        body(sc.posts_to(path, count=2)[-1])
        == f":arrow_up: *{sc.feature}* advanced from 1% to *2%*: the gate passed."
    )
    assert sc.where() == ("active", 0, 1)
    response, path = sc.click(seen, "advance")  # the same old message, clicked again later
    assert (
        body(sc.posts_to(path, count=2)[-1])
        == f":arrow_up: *{sc.feature}* advanced from 2% to *3%*: the gate passed."
    )
    assert len(sc.events(EventKind.ADVANCED)) == 2


def test_a_typed_advance_that_slack_sent_before_the_move_moves_nothing(
    driver: SlackDriver,
    slack: LocalSlack,
    datadog: FakeDatadog,
    bot_db: Database,
    channel: str,
    pairs_plan: None,
) -> None:
    """A request that reached the bot late (Slack's timestamp says it was sent a minute ago)
    meant the step current a minute ago; a header of that name from outside changes nothing."""
    sc = Scenario(driver, slack, datadog, bot_db, channel, feature=f"late-{uuid.uuid4().hex[:6]}")
    datadog.set_value(f"pairs.errors{{service:{sc.feature}}}", 1.0)
    sc.start("pairs")
    assert body(sc.advance()) == f":arrow_up: *{sc.feature}* advanced from 1% to *2%*: the gate passed."
    sent = int(time.time()) - 60
    forged = {"X-Rollout-Sent-At": "2100-01-01T00:00:00+00:00"}
    post_raw = driver.post_raw
    driver.post_raw = lambda body, kind, **_: post_raw(body, kind, timestamp=sent, headers=forged)  # type: ignore[method-assign]
    try:
        assert driver.command(f"advance {sc.feature}").status == 200
    finally:
        del driver.post_raw

    answer = final_reply(driver)
    assert body(answer).startswith(f":no_entry_sign: *{sc.feature}* already moved to 2% of Gradual Rollout")
    assert sc.where() == ("active", 0, 1)
    assert (
        body(sc.advance()) == f":arrow_up: *{sc.feature}* advanced from 2% to *3%*: the gate passed."
    )  # sent now: moves
