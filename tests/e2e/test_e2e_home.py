"""The App Home tab lists a person's open rollouts with progress and the next gate."""

from __future__ import annotations

import json

from bot.devtools.local_slack import LocalSlack
from tests.driver import SlackDriver


def open_home(driver: SlackDriver, user: str) -> None:
    body = {
        "type": "event_callback",
        "team_id": driver.team_id,
        "api_app_id": "A111",
        "event": {
            "type": "app_home_opened",
            "user": user,
            "channel": "D111",
            "tab": "home",
            "event_ts": "1.0",
        },
        "event_id": "Ev" + user,
        "event_time": 1,
        "authorizations": [{"team_id": driver.team_id, "user_id": "W23456789", "is_bot": True}],
    }
    resp = driver.post_raw(json.dumps(body), "application/json")
    assert resp.status == 200


def test_home_lists_my_rollouts_with_progress(driver: SlackDriver, slack: LocalSlack, channel: str) -> None:
    driver.command("start home-mine backend", user="WHOME1")
    driver.command("start home-theirs", user="WOTHER")
    slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel, count=2)

    open_home(driver, "WHOME1")
    view = slack.wait_for("views.publish", lambda c: c.params.get("user_id") == "WHOME1")[0].params["view"]
    text = json.dumps(view)
    assert view["type"] == "home"
    assert "home-mine" in text and "home-theirs" not in text
    assert "0 of 5 steps done" in text and "now: *Canary*, step *1%*" in text
    assert "Next gate:" in text and "2 exit criteria not ticked" in text
    button = next(b["accessory"] for b in view["blocks"] if b.get("accessory"))
    assert button["action_id"] == "open_rollout"

    driver.click({"ts": "", "blocks": view["blocks"], "channel": channel}, "open_rollout", user="WHOME1")
    modal = slack.wait_for(
        "views.open",
        lambda c: c.params["view"].get("type") == "modal" and "home-mine" in json.dumps(c.params["view"]),
    )[0]
    assert "Canary" in json.dumps(modal.params["view"]["blocks"])


def test_home_without_rollouts_says_how_to_start(driver: SlackDriver, slack: LocalSlack) -> None:
    open_home(driver, "WNOBODY")
    view = slack.wait_for("views.publish", lambda c: c.params.get("user_id") == "WNOBODY")[0].params["view"]
    assert "/rollout start" in json.dumps(view)
