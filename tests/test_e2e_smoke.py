from tests.driver import SlackDriver
from tests.fakes.slack_api import FakeSlack


def test_start_posts_status_message(driver: SlackDriver, slack: FakeSlack, channel: str) -> None:
    resp = driver.command("start checkout-v2")
    assert resp.status == 200, resp.body
    post = slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == channel)[0]
    print(post.params["text"])
    msg = next(m for m in slack.messages(channel) if "thread_ts" not in m)
    item = next(o["value"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"] for o in e["options"])
    driver.toggle(msg, item)
    upd = slack.wait_for("chat.update", lambda c: c.params.get("channel") == channel)[0]
    assert "1/5" in str(upd.params["blocks"])
