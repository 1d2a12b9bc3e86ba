"""A Slack Web API on localhost, for `rollout-bot shell` and the tests: the bot's own
WebClient talks HTTP to it exactly as to Slack. It answers like Slack, records every call,
keeps the messages the bot left in each channel, lets a test inject failures, delays and
channel memberships, and hands what the bot shows to an optional ``on_post`` callback.

    with LocalSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        client.chat_postMessage(channel="C111", text="hi")
        assert slack.messages("C111")[0]["text"] == "hi"
"""

from bot.devtools.local_slack.identity import (
    APP_ID,
    AUTH_TEST,
    BOT_ID,
    BOT_USER_ID,
    SCOPES,
    TEAM_ID,
    USER_TZ,
)
from bot.devtools.local_slack.posted import Posted
from bot.devtools.local_slack.server import LocalSlack
from bot.devtools.local_slack.state import Call, Params

__all__ = [
    "APP_ID",
    "AUTH_TEST",
    "BOT_ID",
    "BOT_USER_ID",
    "SCOPES",
    "TEAM_ID",
    "USER_TZ",
    "Call",
    "LocalSlack",
    "Params",
    "Posted",
]
