"""Who the local Slack says the bot is: the workspace, the bot user and the app.

The values are those of the auth.test answer recorded from Bolt's own mock Web API
(tests/fixtures/slack/auth_test_response.bolt-python.json), moved into team T111, the
workspace the tests' signed requests come from; a test checks the two still agree.
"""

from __future__ import annotations

from typing import Any, Final

TEAM_ID: Final = "T111"
BOT_USER_ID: Final = "W23456789"
BOT_ID: Final = "BZYBOTHED"
APP_ID: Final = "A111"
SCOPES: Final = "chat:write,commands,channels:join,users:read,files:write"
USER_TZ: Final = "America/Los_Angeles"

AUTH_TEST: Final[dict[str, Any]] = {
    "ok": True,
    "url": "https://subarachnoid.slack.com/",
    "team": "Subarachnoid Workspace",
    "user": "bot",
    "team_id": TEAM_ID,
    "user_id": BOT_USER_ID,
    "bot_id": BOT_ID,
}
