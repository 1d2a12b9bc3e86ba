"""What running deployments and messages already in channels rely on: the ids a posted message
carries and the names under which queued work waits must survive any reshuffle of the code.

A status message posted last week still has its buttons (action_id), its forms their
callback_id, and a request queued in `pending_work` during a deploy names its lazy listener by
function name; the new version must still answer each of them."""

from __future__ import annotations

from bot.app import build_app
from bot.config import load_settings
from bot.ids import Action, Block, View
from bot.services import Services
from bot.slackweb.client import make_client

# As the first released version posted them.
ACTION_IDS = {
    "checklist_toggle", "advance", "advance_anyway", "snapshot", "pause", "resume", "rollback",
    "pick_rollout", "open_rollout",
    # Posted on refusals, access requests and trigger alerts: kept from here on.
    "request_access", "approver_add", "open_datadog",
}  # fmt: skip
CALLBACK_IDS = {"start_rollout", "advance_override", "rollback_confirm", "edit_metrics", "import_plan"}
BLOCK_IDS = {
    "header", "steps", "checklist", "controls", "start_feature", "start_template", "start_owner",
    "start_stakeholders", "start_flag", "reason", "import_name", "import_text",
}  # fmt: skip
# The lazy listeners' function names, as stored in pending_work.function_name.
QUEUED_WORK = {
    "toggle", "open_from_home", "pick", "control", "advance_anyway", "rollback", "work",
    "save_metrics", "start", "import_plan", "override", "mentioned", "home_opened", "stale_button",
    "request_access", "add_approver",
}  # fmt: skip


def test_posted_messages_keep_their_ids() -> None:
    assert {a.value for a in Action} >= ACTION_IDS
    assert {v.value for v in View} >= CALLBACK_IDS
    assert {b.value for b in Block} >= BLOCK_IDS


def test_work_queued_by_an_earlier_version_still_has_its_listener() -> None:
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s"})
    svc = Services(settings=settings, db=None, client=make_client("xoxb-test", settings.slack_api_url))  # type: ignore[arg-type]
    app = build_app(svc, token_verification=False)
    names = {fn.__name__ for listener in app._listeners for fn in listener.lazy_functions}
    assert names >= QUEUED_WORK
