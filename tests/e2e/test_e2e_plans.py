"""Plan documents in Slack: paste one into /rollout import, get the filled one back with /rollout export."""

from __future__ import annotations

import time
from pathlib import Path

from bot.devtools.local_slack import Call, LocalSlack
from tests.driver import SlackDriver
from tests.support import body

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"


def import_answer(slack: LocalSlack, driver: SlackDriver, channel: str, timeout: float = 30.0) -> Call:
    """The answer to a form: ephemeral in the channel, or a DM where Slack refused that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in slack.calls("chat.postEphemeral") + slack.calls("chat.postMessage"):
            text = body(call.params)
            if "docsvc" in text and call.params.get("channel") in (channel, driver.user_id):
                return call
        time.sleep(0.1)
    seen = [
        (c.method, c.params.get("channel"), body(c.params)[:200])
        for c in slack.calls("chat.postEphemeral") + slack.calls("chat.postMessage")
        if c.params.get("channel") in (channel, driver.user_id)
    ]
    raise AssertionError(f"no answer to the import form; said in that channel or DM: {seen}")


def status_message(slack: LocalSlack, channel: str) -> dict:
    return next(m for m in slack.messages(channel) if "thread_ts" not in m and m.get("blocks"))


def test_import_a_seed_then_run_a_rollout_from_it(
    driver: SlackDriver, slack: LocalSlack, channel: str
) -> None:
    driver.command("import")
    opened = slack.wait_for(
        "views.open",
        lambda c: (
            c.params["view"].get("callback_id") == "import_plan"
            and channel in c.params["view"].get("private_metadata", "")
        ),
    )[-1]
    seed = (SEEDS / "backend-tables-and-doc-service-rollouts.md").read_text()
    resp = driver.submit_view(opened.params["view"], {"import_name": "Bad Name!", "import_text": seed})
    assert resp.status == 200 and resp.json()["response_action"] == "errors"

    driver.submit_view(opened.params["view"], {"import_name": "docsvc", "import_text": seed})
    reply = import_answer(slack, driver, channel)
    text = body(reply.params)
    assert "Imported template `docsvc-1`" in text and "Imported template `docsvc-2`" in text
    assert "1% → 25% → 50% → 75% → 100%" in text
    assert "line 24:" in text and "line 50:" in text  # the DataDog lines it had to interpret

    driver.command("start doc-migration docsvc-2")
    slack.wait_for(
        "chat.postMessage", lambda c: c.params.get("channel") == channel and c.params.get("blocks")
    )
    steps = str(status_message(slack, channel)["blocks"])
    assert "1% (500 users)" in steps and "100% (12,000 users)" in steps


def test_export_posts_the_filled_plan_into_the_thread(
    driver: SlackDriver, slack: LocalSlack, channel: str
) -> None:
    driver.command("start export-me backend")
    slack.wait_for(
        "chat.postMessage", lambda c: c.params.get("channel") == channel and c.params.get("blocks")
    )
    status = status_message(slack, channel)
    first_item = next(
        o["value"]
        for b in status["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "checkboxes"
        for o in e["options"]
    )
    driver.toggle(status, first_item, user="WTICKER")
    slack.wait_for("chat.update", lambda c: c.params.get("channel") == channel)

    driver.command("export export-me")
    done = slack.wait_for("files.completeUploadExternal", lambda c: c.params.get("channel_id") == channel)[0]
    assert done.params.get("thread_ts") == status["ts"]
    uploaded = [c for c in slack.calls("upload_url")]
    document = uploaded[-1].params["data"]
    document = document.decode() if isinstance(document, bytes) else str(document)
    assert document.startswith("# Rollout Plan")
    assert "- [x] Turn the feature toggle on for the canary cohort" in document
    assert "WTICKER" in document
    reply = driver.wait_reply(count=1)
    assert "Exported *export-me*" in body(reply)
