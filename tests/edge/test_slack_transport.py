"""Slack calls over pooled connections (bot/slackweb/transport.py) do what slack_sdk's urllib
path did: the same requests reach Slack, the same answers and errors come back, the retry
handlers still retry; and connections are reused, and replaced when Slack closed them."""

from __future__ import annotations

import os
from typing import Any
from urllib.error import URLError

import pytest
from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.devtools.local_slack import LocalSlack
from bot.edge.listeners.replies import RespondReplier
from bot.slackweb import transport
from bot.slackweb.client import make_client
from bot.slackweb.transport import PooledWebClient, PooledWebhookClient
from messages.blocks import Message, text_message


@pytest.fixture
def slack() -> Any:
    with LocalSlack() as local:
        yield local


def connections_to(url: str) -> int:
    return int(transport._POOL.connection_from_url(url).num_connections)


def bodies(slack: LocalSlack, path: str) -> list[dict[str, Any]]:
    return [call.params for call in slack.calls("response_url") if call.path == path]


MESSAGES = [
    text_message("plain *text* with <!channel> & ünïcode"),
    Message("push text", [{"type": "section", "text": {"type": "mrkdwn", "text": "a block"}}]),
    Message("", []),
]


def test_replies_post_what_bolts_respond_posts(slack: LocalSlack) -> None:
    replier = RespondReplier(Respond(response_url=slack.response_url("ours")))
    theirs = Respond(response_url=slack.response_url("bolt"))
    for message in MESSAGES:
        replier.progress(message)
        theirs(response_type="ephemeral", replace_original=False, **message.as_kwargs())
        replier(message)
        theirs(response_type="ephemeral", replace_original=True, **message.as_kwargs())
    ours, bolts = bodies(slack, "/response/ours"), bodies(slack, "/response/bolt")
    assert len(ours) == 2 * len(MESSAGES)
    assert ours == bolts
    headers = [c.headers["content-type"] for c in slack.calls("response_url")]
    assert set(headers) == {"application/json;charset=utf-8"}


def test_web_api_answers_and_errors_are_urllibs(slack: LocalSlack) -> None:
    pooled = PooledWebClient(token="xoxb-test", base_url=slack.api_url)
    plain = WebClient(token="xoxb-test", base_url=slack.api_url)
    answers = [client.chat_postMessage(channel="C1", text="hello") for client in (pooled, plain)]
    assert [(a.status_code, a.headers["Content-Type"]) for a in answers] == [
        (200, "application/json; charset=utf-8")
    ] * 2
    assert answers[0].data.keys() == answers[1].data.keys() and answers[0]["ok"]
    with pytest.raises(SlackApiError) as ours:
        pooled.chat_update(channel="C1", ts="1.0", text="x")
    with pytest.raises(SlackApiError) as theirs:
        plain.chat_update(channel="C1", ts="1.0", text="x")
    assert ours.value.response.data == theirs.value.response.data
    assert ours.value.response.status_code == theirs.value.response.status_code
    # An HTTP error without retries: the same status and error either way.
    for client in (pooled, plain):
        slack.fail_next("chat.postMessage", status=500)
        with pytest.raises(SlackApiError) as failed:
            client.chat_postMessage(channel="C1", text="x")
        assert failed.value.response.status_code == 500


def test_retry_handlers_still_retry_server_errors_and_rate_limits(slack: LocalSlack) -> None:
    client = make_client("xoxb-test", slack.api_url, max_retries=2)
    assert isinstance(client, PooledWebClient)
    slack.fail_next("chat.postMessage", times=2, status=500)
    assert client.chat_postMessage(channel="C1", text="after two 500s")["ok"]
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    assert client.chat_postMessage(channel="C1", text="after a 429")["ok"]
    assert len(slack.calls("chat.postMessage")) == 5


def test_calls_reuse_one_connection(slack: LocalSlack) -> None:
    client = PooledWebClient(token="xoxb-test", base_url=slack.api_url)
    for i in range(5):
        client.chat_postMessage(channel="C1", text=f"m{i}")
        PooledWebhookClient(url=slack.response_url("r")).send(text=f"r{i}")
    assert connections_to(slack.base_url) == 1


def test_a_connection_slack_closed_is_replaced(slack: LocalSlack) -> None:
    client = PooledWebClient(token="xoxb-test", base_url=slack.api_url)
    client.chat_postMessage(channel="C1", text="before")
    server = slack._server
    assert server is not None
    server.close_connections()  # Slack drops the idle connection
    assert client.chat_postMessage(channel="C1", text="after")["ok"]
    assert PooledWebhookClient(url=slack.response_url("r")).send(text="after").status_code == 200
    assert [c.params["text"] for c in slack.calls("chat.postMessage")] == ["before", "after"]


def test_no_server_fails_as_urllib_does() -> None:
    with LocalSlack() as gone:
        url = gone.api_url
    for client in (PooledWebClient(base_url=url, timeout=2), WebClient(base_url=url, timeout=2)):
        client.retry_handlers = []
        with pytest.raises(URLError):
            client.api_test()
    for hook in (PooledWebhookClient(url=url, timeout=2), WebhookClient(url=url, timeout=2)):
        hook.retry_handlers = []
        with pytest.raises(URLError):
            hook.send(text="x")


def test_a_forked_child_does_not_share_the_parents_connections(slack: LocalSlack) -> None:
    client = PooledWebClient(token="xoxb-test", base_url=slack.api_url)
    client.chat_postMessage(channel="C1", text="parent")
    assert connections_to(slack.base_url) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pool is empty, and its own call works
        ok = connections_to(slack.base_url) == 0 and client.chat_postMessage(channel="C1", text="child")["ok"]
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert client.chat_postMessage(channel="C1", text="parent again")["ok"]
    assert [c.params["text"] for c in slack.calls("chat.postMessage")] == ["parent", "child", "parent again"]
